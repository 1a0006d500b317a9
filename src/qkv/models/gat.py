"""The two-layer Graph Attention Network for transductive node classification (Veličković et al. 2018, §3.3).

Shape legend: ``N`` nodes, ``F`` input features, ``H`` heads of the hidden layer, ``C`` hidden units per
head, ``K`` classes, ``nnz`` allowed pairs of the graph mask.

The paper's Cora/Citeseer model: dropout (p = 0.6) on the input, a :class:`~qkv.layers.GraphAttention`
layer of ``H = 8`` heads × ``C = 8`` units concatenated (eq. 5), an ELU, dropout again, and an output
:class:`~qkv.layers.GraphAttention` layer of ``K`` units whose heads (1 for Cora) are averaged (eq. 6);
dropout 0.6 also on both layers' attention coefficients. Its logits go to a softmax cross-entropy.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from qkv.functional.checks import check_dropout, check_positive_int
from qkv.functional.graph import Graph
from qkv.layers.graph_attention import GraphAttention

__all__ = ["GAT"]


class GAT(nn.Module):
    """GAT for node classification: ``GraphAttention(H×C, concat) -> ELU -> GraphAttention(K, mean)``.

    Args:
        in_dim: ``F``.
        num_classes: ``K``.
        hidden: ``C``, units per head of the hidden layer (8).
        heads: ``H``, heads of the hidden layer (8).
        out_heads: heads of the output layer, averaged (1 for Cora/Citeseer, 8 for PubMed).
        dropout: on the inputs of both layers and on their attention coefficients (0.6).
        negative_slope: LeakyReLU's slope in the score (0.2).
        backend: the layers' ``backend`` (:data:`qkv.layers.graph_attention.BACKENDS`).
    """

    def __init__(
        self, in_dim: int, num_classes: int, *, hidden: int = 8, heads: int = 8, out_heads: int = 1,
        dropout: float = 0.6, negative_slope: float = 0.2, backend: str = "auto",
    ) -> None:
        super().__init__()
        check_positive_int("in_dim", in_dim)
        check_positive_int("num_classes", num_classes)
        p = check_dropout(dropout)
        kw = {"negative_slope": negative_slope, "dropout": p, "input_dropout": p, "backend": backend}
        self.hidden = GraphAttention(in_dim, hidden, heads, concat=True, **kw)
        self.out = GraphAttention(heads * hidden, num_classes, out_heads, concat=False, **kw)

    def forward(self, x: Tensor, graph: Graph) -> Tensor:
        """Logits ``(N, K)`` for node features ``x (N, F)`` over the graph mask ``graph`` (self-loops included)."""
        h = F.elu(self.hidden(x.unsqueeze(0), mask=graph).output)  # (1, N, H·C)
        return self.out(h, mask=graph).output.squeeze(0)  # (N, K)

    def attention(self, x: Tensor, graph: Graph) -> tuple[Tensor, Tensor]:
        """Each layer's coefficients over the graph's pairs, ``(H, nnz)`` and ``(out_heads, nnz)`` (eval mode)."""
        h = F.elu(self.hidden(x.unsqueeze(0), mask=graph).output)  # (1, N, H·C)
        first = self.hidden.edge_weights(x.unsqueeze(0), mask=graph)[0]  # (H, nnz)
        second = self.out.edge_weights(h, mask=graph)[0]  # (out_heads, nnz)
        return first, second
