"""Learned clipped relative-position bias (Shaw, Uszkoreit & Vaswani 2018).

Shape legend: ``H`` heads, ``L`` queries, ``S`` keys, ``R`` the clipping distance.

Shaw et al. 2018 (eq. 3–4) as one learned scalar per head and clipped distance, the form T5
uses without buckets: :math:`b_{h,ij} = w_{h,\\,\\mathrm{clip}(j - i, -R, R) + R}` with a table
``w (H, 2R + 1)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.functional.biases import Bias
from qkv.functional.checks import check_positive_int
from qkv.functional.masks import align_offset, check_align, relative_position

__all__ = ["RelativeBias", "relative"]


class RelativeBias(Bias):
    """Clipped relative-position bias :math:`b_{h,ij} = w_{h,\\mathrm{clip}(j-i,-R,R)+R}`, ``(H, L, S)``.

    ``table`` is ``(H, 2R + 1)``; it may be an ``nn.Parameter`` (gradients reach it through every kernel).
    """

    def __init__(self, table: Tensor, *, max_distance: int, align: str = "bottom_right") -> None:
        if isinstance(max_distance, bool) or not isinstance(max_distance, int) or max_distance < 0:
            raise ValueError(f"relative: max_distance must be an int >= 0, got {max_distance!r}")
        if not isinstance(table, Tensor) or table.dim() != 2 or table.shape[-1] != 2 * max_distance + 1:
            got = tuple(table.shape) if isinstance(table, Tensor) else type(table).__name__
            raise ValueError(
                f"relative: table must have shape (H, 2 * max_distance + 1) = (H, {2 * max_distance + 1}), got {got}"
            )
        self.table = table
        self.max_distance = max_distance
        self.align = check_align("relative", align)

    def _index(self, q0, q1, k0, k1, L, S, device) -> Tensor:
        R = self.max_distance
        return relative_position(q0, q1, k0, k1, align_offset(self.align, L, S), device).clamp(-R, R) + R

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        return self.table.to(device)[:, self._index(q0, q1, k0, k1, L, S, device)]  # (H, Tq, Tk)

    def depends(self) -> tuple[bool, bool]:
        return False, self.table.shape[0] > 1

    def flex(self, *, B, H, L, S, device):
        off, R = align_offset(self.align, L, S), self.max_distance
        table = self.table.to(device).expand(H, -1).contiguous()  # (H, 2R + 1): one row broadcasts over the heads
        return lambda b, h, q, kv: table[h, (kv - (q + off)).clamp(-R, R) + R]

    def parameters(self) -> list[Tensor]:
        return [self.table] if self.table.requires_grad else []

    def shape(self, L, S, *, device):
        return (self.table.shape[0], L, S)

    def __repr__(self) -> str:
        return f"relative(H={self.table.shape[0]}, max_distance={self.max_distance})"


def relative(table: Tensor | int, *, max_distance: int, align: str = "bottom_right") -> RelativeBias:
    """A clipped relative-position bias; ``table`` is ``(H, 2R+1)`` or ``H`` (a zero-initialised Parameter).

    A table built here is an ``nn.Parameter`` that no module owns: register it on your module (or pass
    a table you registered) so that your optimiser updates it.
    """
    if isinstance(max_distance, bool) or not isinstance(max_distance, int) or max_distance < 0:
        raise ValueError(f"relative: max_distance must be an int >= 0, got {max_distance!r}")
    if not isinstance(table, Tensor):
        check_positive_int("relative: num_heads (table)", table)
        table = nn.Parameter(torch.zeros(table, 2 * max_distance + 1))
    return RelativeBias(table, max_distance=max_distance, align=align)
