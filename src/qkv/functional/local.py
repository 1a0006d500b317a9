"""Luong's local attention: attend to a window ``[p - D, p + D]`` around a position ``p``.

Shape legend: ``...`` broadcast dims (typically ``(B, H)`` or ``(B,)``), ``L`` queries,
``S`` source positions, ``D`` the window's half-width (Luong's D, an int).

Luong, Pham & Manning 2015, §3.2 (seed 004): global attention reads every source position;
local attention reads only a window around an aligned position :math:`p_t`.

* local-m (monotonic): :math:`p_t = t`.
* local-p (predictive): :math:`p_t = S \\cdot \\sigma(v_p^\\top \\tanh(W_p h_t))` (eq. 9), and the
  softmax weights inside the window are multiplied by a Gaussian centred at :math:`p_t`,

  .. math:: a_t(s) = \\mathrm{align}(h_t, \\bar h_s) \\exp\\Big(-\\frac{(s - p_t)^2}{2\\sigma^2}\\Big),
            \\qquad \\sigma = D/2 \\quad\\text{(eq. 10)},

  *after* the softmax and without renormalising, exactly as in the paper.

The window is a lazy mask (:func:`qkv.kernels.local.around`) and local-p's Gaussian a
:class:`qkv.kernels.local.GaussianWindow` handed to :func:`qkv.attend`, so a large problem runs
on the tiled kernel in linear memory; ``backend="naive"`` materialises both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from qkv.functional.attention import attend
from qkv.functional.output import AttentionOutput
from qkv.kernels.local import GaussianWindow, around
from qkv.masks import MaskLike

__all__ = ["MODES", "local_attention"]

MODES = ("local-m", "local-p")


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
        return attend(q, k, v, score=score, mask=in_window if mask is None else in_window & mask,
                      return_weights=return_weights, backend=backend)
    # local-p: attend adds the window to the mask and multiplies the weights by the Gaussian (eq. 10)
    return attend(q, k, v, score=score, mask=mask, local_p=GaussianWindow(position, window),
                  return_weights=return_weights, backend=backend)
