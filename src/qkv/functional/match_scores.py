"""Distance-based match score: :math:`1 / (1 + \\lVert x - q \\rVert)` (ABCNN's attention matrix).

Shape legend: ``...`` leading (broadcast) dims; ``L`` queries, ``S`` keys, ``D`` width.

Yin et al. 2016 (ABCNN, §4.1, eq. 1) score a unit of sentence 0 against a unit of sentence 1 with
``match-score(x, y) = 1 / (1 + |x - y|)``, ``|·|`` the Euclidean distance. It is a score of this
library's one signature ``(q, k) -> (..., L, S)``; it is not a dot product of transformed features,
so it declares no ``kind`` and runs as a ``"pairwise"`` score (naive and tiled kernels). Pass the
object to :func:`qkv.attend` (``attend(q, k, v, score=EuclideanMatch(), return_scores=True).scores``
is the ABCNN attention matrix). The cosine score MPCNN uses is the built-in ``"cosine"``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.functional.scores import check_same_width

__all__ = ["EuclideanMatch", "euclidean_distance", "euclidean_match"]


def euclidean_distance(q: Tensor, k: Tensor) -> Tensor:
    """:math:`\\lVert q_i - k_j \\rVert_2`: ``q (..., L, D)``, ``k (..., S, D)`` -> ``(..., L, S)``.

    Computed from the explicit differences (not ``cdist``'s matrix-product form, which loses precision
    for nearby points), with a zero gradient at zero distance (identical vectors) instead of NaN.
    """
    check_same_width("euclidean_match", q, k)
    diff = q.unsqueeze(-2) - k.unsqueeze(-3)  # (..., L, S, D)
    sq = diff.pow(2).sum(-1)  # (..., L, S)
    positive = sq > 0
    safe = torch.where(positive, sq, torch.ones_like(sq))  # sqrt'(0) is infinite: keep it out of the graph
    return torch.where(positive, safe.sqrt(), torch.zeros_like(sq))


def euclidean_match(q: Tensor, k: Tensor) -> Tensor:
    """ABCNN's match score :math:`1 / (1 + \\lVert q_i - k_j \\rVert)` (Yin et al. 2016, eq. 1), in (0, 1]."""
    return 1.0 / (1.0 + euclidean_distance(q, k))


class EuclideanMatch(nn.Module):
    """The match score :math:`1 / (1 + \\lVert x - q \\rVert)` as a score object for :func:`qkv.attend`.

    Parameter-free and ``"pairwise"`` (no ``kind``): the naive and tiled kernels evaluate it.
    """

    name = "euclidean_match"

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return euclidean_match(q, k)
