"""Luong's local attention: attend to a window ``[p - D, p + D]`` around a position ``p``.

Shape legend: ``...`` broadcast dims (typically ``(B, H)``), ``L`` queries, ``S`` source
positions, ``D`` the window's half-width (Luong's D, an int), ``Tq``/``Tk`` a tile.

Luong, Pham & Manning 2015, §3.2 (seed 004): global attention reads every source position;
local attention reads only a window around an aligned position :math:`p_t`.

* local-m (monotonic): :math:`p_t = t`; the window is a mask (:func:`around`).
* local-p (predictive): :math:`p_t = S \\cdot \\sigma(v_p^\\top \\tanh(W_p h_t))` (eq. 9), and the
  softmax weights inside the window are multiplied by a Gaussian centred at :math:`p_t`,

  .. math:: a_t(s) = \\mathrm{align}(h_t, \\bar h_s) \\exp\\Big(-\\frac{(s - p_t)^2}{2\\sigma^2}\\Big),
            \\qquad \\sigma = D/2 \\quad\\text{(eq. 10)},

  *after* the softmax and without renormalising, exactly as in the paper: a
  :class:`~qkv.functional.modifiers.WeightModifier` (:class:`GaussianWindow`) whose support is
  the window.

Both are lazy, so a large problem runs on the tiled kernel in linear memory, skipping the key
tiles outside every window of a query block; ``backend="naive"`` materialises them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from qkv.functional.attention import attend
from qkv.functional.biases import BiasLike
from qkv.functional.lazy import index_4d
from qkv.functional.masks import Mask, MaskLike
from qkv.functional.modifiers import WeightModifier
from qkv.functional.output import AttentionOutput

__all__ = ["MODES", "Around", "GaussianWindow", "around", "local_attention"]

MODES = ("local-m", "local-p")


def _check_position(position: object, window: object) -> None:
    if not isinstance(position, Tensor) or not position.dtype.is_floating_point or position.dim() < 1:
        got = (position.dtype, tuple(position.shape)) if isinstance(position, Tensor) else type(position).__name__
        raise TypeError(f"position must be a float tensor (..., L) of window centres, got {got}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    if not torch.isfinite(position.detach()).all():
        raise ValueError(f"position must hold finite window centres, got non-finite values in shape "
                         f"{tuple(position.shape)}")


def _batch_dims(position: Tensor) -> tuple[bool, bool]:
    shape = (1,) * max(0, 3 - position.dim()) + tuple(position.shape)  # (B|1, H|1, L)
    return shape[-3] > 1, shape[-2] > 1


class Around(Mask):
    """Mask ``|s - p_i| <= D``: query ``i`` attends to keys within ``D`` of its centre ``p_i``.

    ``position`` is ``(..., L)``; tiles are ``(..., Tq, Tk)`` and :meth:`kv_bounds` reads the
    block's smallest and largest centre.
    """

    def __init__(self, position: Tensor, window: int) -> None:
        _check_position(position, window)
        self.position = position
        self.window = window

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        p = self.position.detach().to(device)[..., q0:q1, None]  # (..., Tq, 1)
        j = torch.arange(k0, k1, device=device, dtype=p.dtype)  # (Tk,)
        return (j - p).abs() <= self.window  # (..., Tq, Tk)

    def kv_bounds(self, q0, q1, *, L, S):
        p = self.position.detach()[..., q0:q1]
        if p.numel() == 0:
            return 0, 0
        lo = min(S, max(0, math.ceil(float(p.min()) - self.window)))
        return lo, max(lo, min(S, math.floor(float(p.max()) + self.window) + 1))

    def depends(self) -> tuple[bool, bool]:
        return _batch_dims(self.position)

    def flex(self, *, B, H, L, S, device):
        if self.position.dim() > 3:
            return None
        pos, w = self.position.detach().to(device).unsqueeze(-1), self.window  # (..., L, 1)
        return lambda b, h, q, kv: (kv - index_4d(pos, b, h, q, torch.zeros_like(kv))).abs() <= w

    def shape(self, L, S, *, device):
        return (*self.position.shape, S)

    def __repr__(self) -> str:
        return f"around(position of shape {tuple(self.position.shape)}, window={self.window})"


def around(position: Tensor, window: int) -> Around:
    """Luong's local window ``[p - D, p + D]`` as a lazy mask (local-m: ``p_t = t``)."""
    return Around(position, window)


class GaussianWindow(WeightModifier):
    """Luong's local-p (eq. 10): weights times :math:`\\exp(-(s - p)^2 / (2\\sigma^2))`, :math:`\\sigma = D/2`,
    on the window ``|s - p| <= D``.

    Attributes:
        position: ``(..., L)`` float window centres :math:`p_t` (differentiable: eq. 9 predicts
            them, and their gradient flows through the Gaussian).
        window: the half-width ``D``.
    """

    def __init__(self, position: Tensor, window: int) -> None:
        _check_position(position, window)
        self.position = position
        self.window = window

    @property
    def sigma(self) -> float:
        return self.window / 2

    def support(self) -> Around:
        return Around(self.position, self.window)

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        p = self.position.to(device)[..., q0:q1, None]  # (..., Tq, 1)
        j = torch.arange(k0, k1, device=device, dtype=p.dtype)  # (Tk,)
        return torch.exp(-((j - p) ** 2) / (2 * self.sigma**2))  # (..., Tq, Tk)

    def depends(self) -> tuple[bool, bool]:
        return _batch_dims(self.position)

    def parameters(self) -> list[Tensor]:
        return [self.position] if self.position.requires_grad else []

    def shape(self, L, S, *, device):
        return (*self.position.shape, S)

    def __repr__(self) -> str:
        return f"GaussianWindow(position of shape {tuple(self.position.shape)}, window={self.window})"


def local_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    position: Tensor,
    window: int,
    mode: str = "local-p",
    score: str | Callable[[Tensor, Tensor], Tensor] = "dot",
    mask: MaskLike | None = None,
    bias: BiasLike | None = None,
    return_weights: bool = False,
    backend: str = "auto",
) -> AttentionOutput:
    """Local attention (Luong et al. 2015 §3.2) over keys within ``window`` of ``position``.

    Args:
        q: ``(..., L, D)`` queries (decoder states :math:`h_t`).
        k: ``(..., S, D)`` keys (encoder states :math:`\\bar h_s`).
        v: ``(..., S, Dv)`` values.
        position: ``(..., L)`` float window centres :math:`p_t` (for local-m, the step index);
            differentiable for local-p, whose eq. 9 predicts them.
        window: the half-width ``D`` (int >= 1).
        mode: ``"local-m"`` (window only) or ``"local-p"`` (window and Gaussian, eq. 10).
        score: as in :func:`qkv.attend`.
        mask: an extra mask (e.g. source padding), True = may attend.
        bias: additive scores, as in :func:`qkv.attend`.
        return_weights: also return the weights ``(..., L, S)``.
        backend: as in :func:`qkv.attend`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(position, Tensor) or position.shape != q.shape[:-1]:
        got = tuple(position.shape) if isinstance(position, Tensor) else type(position).__name__
        raise ValueError(f"position must have shape q.shape[:-1] = {tuple(q.shape[:-1])}, got {got}")
    position = position.to(torch.promote_types(q.dtype, torch.float32))  # bf16 cannot hold 301 exactly
    if mode == "local-m":
        in_window = around(position, window)
        return attend(q, k, v, score=score, mask=in_window if mask is None else in_window & mask, bias=bias,
                      return_weights=return_weights, backend=backend)
    # local-p: the Gaussian's support (the window) joins the mask; it multiplies the weights (eq. 10)
    return attend(q, k, v, score=score, mask=mask, modifier=GaussianWindow(position, window), bias=bias,
                  return_weights=return_weights, backend=backend)
