"""Luong's local attention window as lazy pieces a kernel can evaluate tile by tile.

Shape legend: ``...`` broadcast batch dims (typically ``(B, H)`` or ``(B,)``), ``L`` queries,
``S`` keys, ``D`` the window half-width (Luong's D, an int).

Luong, Pham & Manning 2015, §3.2 (seed 004): local attention reads only the keys
:math:`s \\in [p_t - D, p_t + D]`; local-p further multiplies the softmax weights by
:math:`\\exp(-(s - p_t)^2 / (2\\sigma^2))`, :math:`\\sigma = D/2` (eq. 10), *after* the softmax
and without renormalising. :class:`GaussianWindow` describes both parts lazily, so the tiled
kernel computes local-p without an ``(L, S)`` tensor and skips the key tiles outside every
window of a query block. :mod:`qkv.functional.local` is the materialising reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from qkv.masks import Mask

__all__ = ["Around", "GaussianWindow", "around"]


def _check_position(position: object, window: object) -> None:
    if not isinstance(position, Tensor) or not position.dtype.is_floating_point or position.dim() < 1:
        got = (position.dtype, tuple(position.shape)) if isinstance(position, Tensor) else type(position).__name__
        raise TypeError(f"position must be a float tensor (..., L) of window centres, got {got}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")


class Around(Mask):
    """Mask ``|s - p_i| <= D``: query ``i`` attends to keys within ``D`` of its centre ``p_i``.

    ``position`` is ``(..., L)`` (broadcast against the batch dims); tiles are
    ``(..., Lt, St)`` and :meth:`kv_bounds` reads the block's smallest and largest centre.
    """

    def __init__(self, position: Tensor, window: int) -> None:
        _check_position(position, window)
        self.position = position
        self.window = window

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        p = self.position.detach().to(device)[..., q0:q1, None]  # (..., Lt, 1)
        j = torch.arange(k0, k1, device=device, dtype=p.dtype)  # (St,)
        return (j - p).abs() <= self.window  # (..., Lt, St)

    def kv_bounds(self, q0, q1, *, L, S):
        p = self.position.detach()[..., q0:q1]
        if p.numel() == 0:
            return 0, 0
        lo = math.ceil(float(p.min()) - self.window)
        hi = math.floor(float(p.max()) + self.window) + 1
        lo = min(S, max(0, lo))
        return lo, max(lo, min(S, hi))

    def __repr__(self) -> str:
        return f"around(position={tuple(self.position.shape)}, window={self.window})"


def around(position: Tensor, window: int) -> Around:
    """Luong's local window ``[p - D, p + D]`` as a lazy mask (local-m: ``p_t = t``)."""
    return Around(position, window)


@dataclass(frozen=True)
class GaussianWindow:
    """Luong's local-p: the window ``|s - p| <= D`` and the Gaussian factor of eq. 10.

    Attributes:
        position: ``(..., L)`` float window centres :math:`p_t` (differentiable: eq. 9 predicts
            them, and their gradient flows through the Gaussian).
        window: the half-width ``D``; :math:`\\sigma = D / 2`.
    """

    position: Tensor
    window: int

    def __post_init__(self) -> None:
        _check_position(self.position, self.window)

    @property
    def sigma(self) -> float:
        return self.window / 2

    def mask(self) -> Around:
        return Around(self.position, self.window)

    def gaussian(self, position: Tensor, k0: int, k1: int) -> Tensor:
        """:math:`\\exp(-(s - p)^2 / (2\\sigma^2))` for ``position (..., Lt)``, keys ``[k0, k1)``: ``(..., Lt, St)``."""
        j = torch.arange(k0, k1, device=position.device, dtype=position.dtype)  # (St,)
        return torch.exp(-((j - position.unsqueeze(-1)) ** 2) / (2 * self.sigma**2))  # (..., Lt, St)

    def materialize(self, S: int) -> Tensor:
        """The Gaussian factor for all keys, ``(..., L, S)``."""
        return self.gaussian(self.position, 0, S)
