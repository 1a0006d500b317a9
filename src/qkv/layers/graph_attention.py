"""The graph attention layer of Graph Attention Networks (GAT), as one call of :func:`qkv.attend`.

Shape legend: ``B`` batch (graphs sharing one edge list; 1 for a single graph), ``L`` query (target)
nodes, ``S`` key (source) nodes (``L = S = N`` for a graph's self-attention), ``F``/``Fk`` input
widths, ``H`` heads, ``C`` width per head, ``nnz`` allowed pairs (edges plus self-loops).

Veličković et al. 2018, "Graph Attention Networks", §2.1: project the nodes, :math:`W h`; score each
neighbour with :math:`e_{ij} = \\mathrm{LeakyReLU}(a^\\top [W h_i \\Vert W h_j])` (eq. 1, 3); softmax
over the neighbourhood :math:`\\mathcal{N}_i` (self included; eq. 2); read
:math:`h'_i = \\sum_j \\alpha_{ij} W h_j` (eq. 4); ``H`` independent heads are concatenated (eq. 5)
or, in the output layer, averaged (eq. 6). Dropout (p = 0.6 in the paper) applies to the layer's
inputs and to the normalised coefficients :math:`\\alpha` (§3.3).

**Which call of attend it is.** With :math:`q_i = a_{dst}^\\top W h_i` and :math:`k_j = a_{src}^\\top W
h_j` per head, the layer's read is ``attend(q (B, H, L, 1), k (B, H, S, 1), W h (B, H, S, C),
score=GATScore(negative_slope), mask=mask, bias=bias)`` (:mod:`qkv.functional.graph_attention`); the
graph is the lazy mask ``qkv.masks.graph(edge_index, num_nodes=N)``, so the tiled kernel never builds
``(N, N)``. The same read over the edge list only (:func:`~qkv.functional.graph_attention.edge_attention`,
a scatter softmax, ``O(nnz · C)`` time and memory) is the default whenever the mask is a graph and no
bias or weights are asked for; all paths give the same result (tested), and their weights equal
``attend(..., return_weights=True).weights``.

Parameters follow PyTorch Geometric's ``GATConv`` (``lin``, ``att_src``, ``att_dst``, ``bias``; Glorot
initialisation), so its weights copy over one to one (tested against it).
"""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.biases import BiasLike
from qkv.functional.checks import check_dropout, check_flag, check_positive_int
from qkv.functional.graph import Graph
from qkv.functional.graph_attention import GATScore, edge_attention
from qkv.functional.masks import MaskLike
from qkv.functional.output import AttentionOutput
from qkv.layers.common import check_inputs

__all__ = ["BACKENDS", "GraphAttention"]

#: How the layer computes its read: ``"auto"`` (``"edges"`` when the mask is a graph and neither a bias
#: nor the weights are asked for, else ``attend``'s own choice), ``"edges"`` (the scatter softmax over the
#: edge list), or a backend of :func:`qkv.attend` (``"naive"``, ``"tiled"``).
BACKENDS = ("auto", "edges", "naive", "tiled")


class GraphAttention(nn.Module):
    """A GAT layer (Veličković et al. 2018, eq. 1–6): multi-head attention over each node's neighbourhood.

    Args:
        query_dim: width ``F`` of the (target) node features.
        head_dim: width ``C`` of each head's output (the paper's F').
        num_heads: ``H`` (K in the paper).
        key_dim: width ``Fk`` of the source node features for a bipartite graph; ``None`` (default) shares
            one projection ``W`` between queries and keys (the paper's layer).
        concat: concatenate the heads (``(B, L, H·C)``, eq. 5) or average them (``(B, L, C)``, eq. 6).
        negative_slope: LeakyReLU's slope (0.2).
        dropout: dropout on the attention coefficients, in training mode only.
        input_dropout: dropout on the input features, in training mode only.
        bias: add a learned bias to the output.
        backend: one of :data:`BACKENDS`; ``"tiled"`` takes no attention dropout (``attend``'s tiled kernel).
    """

    def __init__(
        self,
        query_dim: int,
        head_dim: int,
        num_heads: int = 1,
        *,
        key_dim: int | None = None,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        bias: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.query_dim = check_positive_int("query_dim", query_dim)
        self.key_dim = check_positive_int("key_dim", query_dim if key_dim is None else key_dim)
        self.head_dim = check_positive_int("head_dim", head_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.concat = check_flag("concat", concat)
        self.score = GATScore(negative_slope=negative_slope)
        self.dropout = check_dropout(dropout)
        self.input_dropout = check_dropout(input_dropout, name="input_dropout")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        width = self.num_heads * self.head_dim
        self.lin = nn.Linear(self.query_dim, width, bias=False)  # W (shared, or the targets' W)
        self.lin_src = None if key_dim is None else nn.Linear(self.key_dim, width, bias=False)
        self.att_src = nn.Parameter(torch.empty(self.num_heads, self.head_dim))  # a_src (H, C)
        self.att_dst = nn.Parameter(torch.empty(self.num_heads, self.head_dim))  # a_dst (H, C)
        out_width = width if self.concat else self.head_dim
        self.bias = nn.Parameter(torch.zeros(out_width)) if check_flag("bias", bias) else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot (Xavier) uniform weights, zero bias (the paper's and PyTorch Geometric's initialisation)."""
        for lin in (self.lin, self.lin_src):
            if lin is not None:
                nn.init.xavier_uniform_(lin.weight)
        for att in (self.att_src, self.att_dst):
            nn.init.xavier_uniform_(att.unsqueeze(0))  # PyG's (1, H, C) fan
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _heads(self, x: Tensor, lin: nn.Linear) -> Tensor:
        return einops.rearrange(lin(x), "b n (h c) -> b h n c", h=self.num_heads)  # (B, H, N, C)

    def project(
        self, query: Tensor, key: Tensor | None = None, value: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The arguments of the layer's ``attend`` call: ``q (B, H, L, 1)``, ``k (B, H, S, 1)``, ``v (B, H, S, C)``.

        Input dropout (training mode) is applied here; ``key`` defaults to ``query`` and ``value`` to ``key``.
        """
        shared = key is None
        query, key, value = check_inputs(
            query, key, value, query_dim=self.query_dim, key_dim=self.key_dim, value_dim=self.key_dim
        )
        same_value = value is key
        p = self.input_dropout if self.training else 0.0
        if p > 0:
            query = F.dropout(query, p)
            key = query if shared else F.dropout(key, p)
            value = key if same_value else F.dropout(value, p)
        lin_src = self.lin if self.lin_src is None else self.lin_src
        wq = self._heads(query, self.lin)  # (B, H, L, C)
        wk = wq if shared and self.lin_src is None else self._heads(key, lin_src)  # (B, H, S, C)
        wv = wk if same_value else self._heads(value, lin_src)  # (B, H, S, C)
        q = torch.einsum("bhlc,hc->bhl", wq, self.att_dst).unsqueeze(-1)  # (B, H, L, 1)
        k = torch.einsum("bhsc,hc->bhs", wk, self.att_src).unsqueeze(-1)  # (B, H, S, 1)
        return q, k, wv

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        mask: MaskLike | None = None,
        bias: BiasLike | None = None,
        return_weights: bool = False,
    ) -> AttentionOutput:
        """Attend from each (target) node over its neighbours.

        Args:
            query: ``(B, L, F)`` node features.
            key: ``(B, S, Fk)`` source node features; defaults to ``query`` (a graph's self-attention).
            value: ``(B, S, Fk)``, projected by the keys' ``W``; defaults to ``key``.
            mask: the graph, ``qkv.masks.graph(edge_index, num_nodes=N)`` (``self_loops=True`` is GAT's
                :math:`i \\in \\mathcal{N}_i`), or any mask of :func:`qkv.attend`; ``None`` attends to all nodes.
            bias: as in :func:`qkv.attend`, broadcast to ``(B, H, L, S)``, added to :math:`e_{ij}`.
            return_weights: also return :math:`\\alpha` ``(B, H, L, S)`` (computed by ``attend``'s naive kernel).

        Returns:
            :class:`AttentionOutput` with ``output (B, L, H·C)`` (``concat``) or ``(B, L, C)``.
        """
        q, k, v = self.project(query, key, value)
        if isinstance(mask, Graph) and (mask.num_queries, mask.num_keys) != (q.shape[-2], k.shape[-2]):
            raise ValueError(f"mask: a graph over (Nq, Nk) = {(mask.num_queries, mask.num_keys)} nodes, but query has "
                             f"{q.shape[-2]} nodes and key {k.shape[-2]} (query {tuple(query.shape)})")
        p = self.dropout if self.training else 0.0
        backend = self.backend
        use_edges = backend == "edges" or (
            backend == "auto" and isinstance(mask, Graph) and bias is None and not return_weights
        )
        if use_edges:
            if not isinstance(mask, Graph) or bias is not None or return_weights:
                raise ValueError(
                    "backend 'edges' needs mask=qkv.masks.graph(...) and takes no bias or return_weights; got "
                    f"mask {type(mask).__name__}, bias {type(bias).__name__}, return_weights={return_weights}"
                )
            read, _ = edge_attention(q, k, v, mask, negative_slope=self.score.negative_slope, dropout=p)
            out = AttentionOutput(output=read)
        else:
            out = attend(q, k, v, score=self.score, mask=mask, bias=bias, dropout=p,
                         return_weights=return_weights, backend=backend)
        read = out.output  # (B, H, L, C)
        # (B, L, H·C) concatenated (eq. 5), or (B, L, C) averaged (eq. 6)
        read = einops.rearrange(read, "b h l c -> b l (h c)") if self.concat else read.mean(1)
        if self.bias is not None:
            read = read + self.bias
        return AttentionOutput(output=read, weights=out.weights, scores=out.scores, log_prob=out.log_prob)

    def edge_weights(self, query: Tensor, key: Tensor | None = None, *, mask: Graph) -> Tensor:
        """``(B, H, nnz)``: :math:`\\alpha_{ij}` of the pairs ``(mask.rows, mask.cols)`` (no dropout), ``O(nnz)``."""
        if not isinstance(mask, Graph):
            raise TypeError(f"edge_weights: mask must be a qkv Graph (qkv.masks.graph), got {type(mask).__name__}")
        q, k, v = self.project(query, key)
        return edge_attention(q, k, v, mask, negative_slope=self.score.negative_slope)[1]

    def extra_repr(self) -> str:
        return (f"query_dim={self.query_dim}, key_dim={self.key_dim}, head_dim={self.head_dim}, "
                f"num_heads={self.num_heads}, concat={self.concat}, dropout={self.dropout}, "
                f"input_dropout={self.input_dropout}, backend={self.backend!r}")
