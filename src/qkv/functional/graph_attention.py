"""GAT's pair score, and its evaluation over a graph's edge list (a scatter softmax, ``O(E)``).

Shape legend: ``...`` leading dims (typically ``(B, H)``), ``L`` query (target) nodes, ``S`` key
(source) nodes, ``C`` value width per head, ``nnz`` the graph's allowed ``(query, key)`` pairs
(edges plus self-loops), ``T`` the per-node score terms (``T = 1``).

Graph Attention Networks (Veličković et al. 2018, eq. 1–4). With :math:`W h` the projected node
features and :math:`a = [a_{dst}; a_{src}]` the attention vector, the pair score

.. math::  e_{ij} = \\mathrm{LeakyReLU}\\big(a^\\top [W h_i \\,\\Vert\\, W h_j]\\big)
                  = \\mathrm{LeakyReLU}\\big(\\underbrace{a_{dst}^\\top W h_i}_{q_i}
                    + \\underbrace{a_{src}^\\top W h_j}_{k_j}\\big)

is a function of one per-query scalar and one per-key scalar (eq. 3 splits the concatenation). So
GAT is :func:`qkv.attend` with ``q = (q_i)`` ``(..., L, 1)``, ``k = (k_j)`` ``(..., S, 1)``,
``v = W h`` ``(..., S, C)``, the score :class:`GATScore` (``LeakyReLU(q_i + k_j)``) and the graph's
lazy mask (:class:`qkv.functional.graph.Graph`, neighbours plus self-loops: eq. 2's
:math:`j \\in \\mathcal{N}_i`); softmax over the neighbourhood is eq. 2.

:func:`edge_attention` computes the same thing over the edge list only: one score per allowed pair,
the softmax of each query's row by scatter (segment max, exponent, segment sum), and the read by an
index-add. Its memory and time are ``O(nnz · C)``, where any kernel of :func:`qkv.attend` visits the
``(L, S)`` plane (the tiled kernel in tiles, never holding it whole, but still ``O(L · S)`` time for a
graph whose nodes are not numbered in bands).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.functional.graph import Graph

__all__ = ["GATScore", "edge_attention", "edge_scores"]


class GATScore(nn.Module):
    """GAT's pair score :math:`e_{ij} = \\mathrm{LeakyReLU}(q_i + k_j)` (Veličković et al. 2018, eq. 3).

    ``q (..., L, 1)`` holds :math:`a_{dst}^\\top W h_i`, ``k (..., S, 1)`` holds :math:`a_{src}^\\top W h_j`;
    the result is ``(..., L, S)``. A pairwise score (no ``kind``): the naive and tiled kernels take it.

    Args:
        negative_slope: LeakyReLU's slope for negative inputs (0.2 in the paper).
    """

    name = "gat"

    def __init__(self, *, negative_slope: float = 0.2) -> None:
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)) or negative_slope < 0:
            raise ValueError(f"negative_slope must be a non-negative float, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        if q.shape[-1] != 1 or k.shape[-1] != 1:
            raise ValueError(
                f"GATScore: q (..., L, 1) and k (..., S, 1) hold one scalar per node, got q {tuple(q.shape)} "
                f"and k {tuple(k.shape)}"
            )
        return F.leaky_relu(q + k.transpose(-1, -2), self.negative_slope)  # (..., L, 1) + (..., 1, S)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


def edge_scores(q: Tensor, k: Tensor, graph: Graph, *, negative_slope: float = 0.2) -> Tensor:
    """``(..., nnz)``: :math:`e_{ij}` for each allowed pair ``(graph.rows[e], graph.cols[e])``.

    Args:
        q: ``(..., L, 1)`` per-query terms.
        k: ``(..., S, 1)`` per-key terms.
        graph: the mask; its pairs are sorted by query, then key.
    """
    rows, cols = graph.rows.to(q.device), graph.cols.to(q.device)
    return F.leaky_relu(q[..., 0][..., rows] + k[..., 0][..., cols], negative_slope)  # (..., nnz)


def edge_attention(
    q: Tensor, k: Tensor, v: Tensor, graph: Graph, *, negative_slope: float = 0.2, dropout: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """GAT's attention over the edge list: ``attend(q, k, v, score=GATScore(), mask=graph)`` in ``O(nnz · C)``.

    The softmax of eq. 2 runs per query over its allowed keys by scatter operations: the row maximum
    (``scatter_reduce amax``, subtracted for stability), the exponent, the row sum (``index_add``).
    The read :math:`\\sum_j \\alpha_{ij} W h_j` (eq. 4) is an ``index_add`` of the edge messages. A
    query with no allowed key gets a zero output (and zero gradients), as in :func:`qkv.attend`.

    Args:
        q: ``(..., L, 1)`` per-query terms :math:`a_{dst}^\\top W h_i`.
        k: ``(..., S, 1)`` per-key terms :math:`a_{src}^\\top W h_j`.
        v: ``(..., S, C)`` values :math:`W h_j`; leading dims of q, k, v are equal.
        graph: a :class:`~qkv.functional.graph.Graph` of shape ``(L, S)``.
        negative_slope: LeakyReLU's slope.
        dropout: probability of zeroing an attention coefficient (applied whenever > 0; modules
            pass 0 in eval mode), as ``attend``'s ``dropout``.

    Returns:
        ``(output (..., L, C), weights (..., nnz))``: the weights of the pairs ``(graph.rows, graph.cols)``.
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"edge_attention: graph must be a qkv Graph mask (qkv.masks.graph), got {type(graph).__name__}")
    L, S = q.shape[-2], k.shape[-2]
    if (graph.num_queries, graph.num_keys) != (L, S) or v.shape[-2] != S:
        raise ValueError(
            f"edge_attention: graph of shape {(graph.num_queries, graph.num_keys)} for q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}: expected (L, S) = {(L, S)} and v (..., S, C)"
        )
    rows, cols = graph.rows.to(q.device), graph.cols.to(q.device)
    e = edge_scores(q, k, graph, negative_slope=negative_slope)  # (..., nnz)
    index = rows.expand_as(e)  # (..., nnz)
    peak = e.new_full((*e.shape[:-1], L), float("-inf")).scatter_reduce(-1, index, e.detach(), "amax")  # (..., L)
    p = torch.exp(e - peak[..., rows])  # (..., nnz): every pair's row has a finite peak
    total = e.new_zeros((*e.shape[:-1], L)).index_add(-1, rows, p)  # (..., L)
    alpha = p / total[..., rows]  # (..., nnz)
    read = F.dropout(alpha, dropout) if dropout > 0 else alpha
    messages = read.unsqueeze(-1) * v[..., cols, :]  # (..., nnz, C)
    out = v.new_zeros((*messages.shape[:-2], L, v.shape[-1])).index_add(-2, rows, messages)  # (..., L, C)
    return out, alpha
