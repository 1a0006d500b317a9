"""QANet's output layer: start and end distributions and the best valid span (Yu et al. 2018, §2.2, eq. 4-5).

Shape legend: ``B`` batch, ``n`` context positions, ``D`` width of the model encoder's outputs.

With the three model-encoder outputs :math:`M_0, M_1, M_2` ``(B, n, D)``,

.. math:: p^1 = \\mathrm{softmax}(W_1 [M_0; M_1]), \\qquad p^2 = \\mathrm{softmax}(W_2 [M_0; M_2]),

softmaxes over the context positions (padding masked). The predicted span maximises
:math:`p^1_s\\, p^2_e` over valid spans, :math:`s \\le e` and :math:`e - s < \\text{max\\_len}`
(:func:`best_span`: the upper-triangular band of the outer product :math:`p^1 {p^2}^\\top`, exact and
batched). Training minimises :math:`-\\log p^1_{y^1} - \\log p^2_{y^2}` (:func:`span_nll`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.functional.checks import check_positive_int, check_tensor
from qkv.layers.common import check_keep

__all__ = ["SpanLogits", "SpanPointer", "best_span", "span_nll"]


@dataclass
class SpanLogits:
    """Start and end log-probabilities ``(B, n)`` each (``-inf`` at padding)."""

    start: Tensor
    end: Tensor


class SpanPointer(nn.Module):
    """:math:`p^1 = \\mathrm{softmax}(W_1[M_0; M_1])`, :math:`p^2 = \\mathrm{softmax}(W_2[M_0; M_2])`
    (log-probabilities).

    Args:
        dim: ``D``, the width of each :math:`M_i`.

    Call: ``pointer(m0, m1, m2, *, keep=None (B, n) bool) -> SpanLogits`` (log-softmax over positions).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.w1 = nn.Linear(2 * self.dim, 1)
        self.w2 = nn.Linear(2 * self.dim, 1)

    def forward(self, m0: Tensor, m1: Tensor, m2: Tensor, *, keep: Tensor | None = None) -> SpanLogits:
        for name, t in (("m0", m0), ("m1", m1), ("m2", m2)):
            check_tensor(name, t, min_dim=3)
            if t.dim() != 3 or t.shape != m0.shape or t.shape[-1] != self.dim:
                raise ValueError(f"m0, m1, m2 must share the shape (B, n, dim={self.dim}), got m0 {tuple(m0.shape)}, "
                                 f"m1 {tuple(m1.shape)}, m2 {tuple(m2.shape)}")
        keep = check_keep("keep", keep, m0)
        s1 = self.w1(torch.cat((m0, m1), dim=-1)).squeeze(-1)  # (B, n)
        s2 = self.w2(torch.cat((m0, m2), dim=-1)).squeeze(-1)  # (B, n)
        if keep is not None:
            s1 = s1.masked_fill(~keep, float("-inf"))
            s2 = s2.masked_fill(~keep, float("-inf"))
        return SpanLogits(F.log_softmax(s1, dim=-1), F.log_softmax(s2, dim=-1))


def span_nll(logits: SpanLogits, start: Tensor, end: Tensor) -> Tensor:
    """Mean over the batch of :math:`-\\log p^1_{y^1} - \\log p^2_{y^2}`; ``start``, ``end`` ``(B,)`` gold indices."""
    return -(logits.start.gather(1, start[:, None]) + logits.end.gather(1, end[:, None])).mean()


def best_span(p_start: Tensor, p_end: Tensor, *, max_len: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The span maximising :math:`p^1_s p^2_e` with :math:`s \\le e`, :math:`e - s <` ``max_len``, per batch row.

    Args:
        p_start: ``(B, n)`` start probabilities (or any non-negative scores; log-probabilities work too,
            since the band is filled with ``-inf``, but pass probabilities: the product is what is maximised).
        p_end: ``(B, n)`` end probabilities.
        max_len: longest span in tokens (``None``: no limit).

    Returns:
        ``(start (B,), end (B,), p (B,))``: the indices and the product :math:`p^1_s p^2_e`. Ties go to the
        smallest start, then the smallest end.
    """
    check_tensor("p_start", p_start, min_dim=2)
    check_tensor("p_end", p_end, min_dim=2)
    if p_start.dim() != 2 or p_start.shape != p_end.shape:
        raise ValueError(f"p_start and p_end must both be (B, n), got {tuple(p_start.shape)} and {tuple(p_end.shape)}")
    n = p_start.shape[1]
    band = min(n, n if max_len is None else check_positive_int("max_len", max_len))
    joint = p_start[:, :, None] * p_end[:, None, :]  # (B, n, n): row s, column e
    i = torch.arange(n, device=p_start.device)
    valid = (i[None, :] >= i[:, None]) & (i[None, :] - i[:, None] < band)  # (n, n): the upper band
    joint = joint.masked_fill(~valid, float("-inf"))
    p, flat = joint.flatten(1).max(dim=-1)  # (B,)
    return flat // n, flat % n, p
