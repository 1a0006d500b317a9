"""ALiBi: attention with linear biases (Press, Smith & Lewis 2022, "Train short, test long", §3).

Shape legend: ``H`` heads, ``L`` queries, ``S`` keys, ``Tq``/``Tk`` a tile.

The score of query ``i`` and key ``j`` in head ``h`` gets :math:`-m_h\\,|j - (i + \\text{offset})|`
with geometric slopes :math:`m_h = 2^{-8h/H}`; with a causal mask this is the paper's
:math:`m_h (j - i)` for :math:`j \\le i`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qkv.functional.biases import Bias
from qkv.functional.masks import align_offset, check_align, relative_position

__all__ = ["Alibi", "alibi", "alibi_slopes"]


def alibi_slopes(num_heads: int) -> Tensor:
    """ALiBi's head slopes :math:`m_h = 2^{-8h/H}`, ``h = 1..H`` (Press et al. 2022, §3)."""
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"alibi_slopes: num_heads must be a positive int, got {num_heads!r}")
    h = torch.arange(1, num_heads + 1, dtype=torch.float64)
    return torch.pow(2.0, -8.0 * h / num_heads).float()  # (H,)


class Alibi(Bias):
    """:math:`b_{h,ij} = -m_h\\,|j - (i + \\text{offset})|`, shape ``(H, L, S)``."""

    def __init__(self, slopes: Tensor, align: str) -> None:
        if not isinstance(slopes, Tensor) or slopes.dim() != 1 or not slopes.dtype.is_floating_point:
            got = (slopes.dtype, tuple(slopes.shape)) if isinstance(slopes, Tensor) else type(slopes).__name__
            raise ValueError(f"alibi: slopes must be a 1-D float tensor of shape (H,), got {got}")
        self.slopes = slopes
        self.align = check_align("alibi", align)

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        dist = relative_position(q0, q1, k0, k1, align_offset(self.align, L, S), device).abs()  # (Tq, Tk)
        slopes = self.slopes.to(device)[:, None, None]  # (H, 1, 1)
        return -slopes * dist.to(slopes.dtype)  # (H, Tq, Tk)

    def depends(self) -> tuple[bool, bool]:
        return False, self.slopes.numel() > 1

    def flex(self, *, B, H, L, S, device):
        off = align_offset(self.align, L, S)
        slopes = self.slopes.to(device).expand(H).contiguous()  # (H,): one slope broadcasts over the heads
        return lambda b, h, q, kv: -slopes[h] * (kv - (q + off)).abs()

    def parameters(self) -> list[Tensor]:
        return [self.slopes] if self.slopes.requires_grad else []

    def shape(self, L, S, *, device):
        return (self.slopes.shape[0], L, S)

    def __repr__(self) -> str:
        return f"alibi(H={self.slopes.numel()}, align={self.align!r})"


def alibi(num_heads_or_slopes: int | Tensor, *, align: str = "bottom_right") -> Alibi:
    """ALiBi (Press et al. 2022) as a lazy bias of shape ``(H, L, S)``.

    Args:
        num_heads_or_slopes: ``H`` (geometric slopes, :func:`alibi_slopes`) or a ``(H,)`` tensor.
        align: ``"bottom_right"`` (default, offset ``S - L``) or ``"top_left"``, as in
            :func:`qkv.masks.causal`.
    """
    slopes = num_heads_or_slopes
    if not isinstance(slopes, Tensor):
        slopes = alibi_slopes(slopes)
    return Alibi(slopes, align)
