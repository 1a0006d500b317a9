"""Rotary position embedding, RoPE (Su et al. 2021, "RoFormer", §3.2, eq. 13–16 and 34).

Shape legend: ``...`` leading dims (typically ``(B, H)``), ``L`` positions, ``d`` head width,
``R`` rotated width (``R <= d``, even), ``R/2`` frequencies.

Queries and keys are rotated by an angle proportional to their position before the score:
feature pair ``i`` of a vector at position ``p`` is rotated by :math:`p\\,\\theta_i`,
:math:`\\theta_i = \\mathrm{base}^{-2i/R}`,

.. math:: f(x, p) = R_{\\Theta, p}\\, x, \\qquad
          \\langle f(q, m), f(k, n)\\rangle = \\langle q, R_{\\Theta, n - m}\\, k\\rangle,

so the dot-product score depends on the positions only through their difference ``n - m``
(eq. 16). Nothing of shape ``(L, S)`` is built: any dot-product kernel (SDPA, tiled, flex) takes
the rotated ``q`` and ``k``.

**Which features form a pair.** The paper and GPT-J/Mesh-TF pair adjacent features
``(x_{2i}, x_{2i+1})`` (``interleaved=True``). GPT-NeoX, LLaMA and Hugging Face's ``rotate_half``
pair ``(x_i, x_{i + R/2})`` (``interleaved=False``, the default). Both are the same rotation up
to a fixed permutation of the features; weights trained with one need that convention.
``dim < d`` rotates only the first ``dim`` features of each head (GPT-NeoX's ``rotary_pct``,
GPT-J's ``rotary_dim``); the rest pass through.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.functional.checks import check_flag, check_positive_int

__all__ = ["Rotary", "apply_rotary", "rotary_frequencies"]


def rotary_frequencies(dim: int, *, base: float = 10000.0) -> Tensor:
    """:math:`\\theta_i = \\mathrm{base}^{-2i/R}`, ``i = 0..R/2-1``: ``(R/2,)`` float64."""
    R = check_positive_int("dim", dim)
    if R % 2:
        raise ValueError(f"dim must be even (features rotate in pairs), got {R}")
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 1 or base == float("inf"):
        raise ValueError(f"base must be a finite number > 1, got {base!r}")
    return torch.pow(float(base), -torch.arange(0, R, 2, dtype=torch.float64) / R)  # (R/2,)


def apply_rotary(
    x: Tensor, positions: Tensor, *, dim: int | None = None, base: float = 10000.0, interleaved: bool = False
) -> Tensor:
    """Rotate ``x (..., L, d)`` at ``positions`` (broadcastable to ``(..., L)``) by RoPE.

    Args:
        dim: ``R``, the rotated width (default ``d``); features ``R..d-1`` pass through.
        interleaved: pair ``(x_{2i}, x_{2i+1})`` (paper, GPT-J) instead of ``(x_i, x_{i+R/2})`` (GPT-NeoX, LLaMA).
    """
    d = x.shape[-1]
    R = d if dim is None else dim
    if d < R:
        raise ValueError(f"dim ({R}) must not exceed x's last dim, got x of shape {tuple(x.shape)}")
    theta = rotary_frequencies(R, base=base)
    cdt = torch.promote_types(x.dtype, torch.float32)
    angles = positions.to(device=x.device, dtype=cdt)[..., None] * theta.to(device=x.device, dtype=cdt)  # (..., L, R/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    rot, rest = x[..., :R], x[..., R:]
    if interleaved:
        a, b = rot[..., 0::2], rot[..., 1::2]  # (..., L, R/2) each
        out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)  # (..., L, R)
    else:
        a, b = rot[..., : R // 2], rot[..., R // 2 :]  # (..., L, R/2) each
        out = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)  # (..., L, R)
    return out if d == R else torch.cat((out, rest), dim=-1)  # (..., L, d)


class Rotary(nn.Module):
    """RoPE as a module for :class:`qkv.MultiHeadAttention` (``rotary=Rotary(head_dim)``).

    Args:
        dim: ``R``, the rotated width of each head (even; ``<=`` the head width).
        base: 10000 in the paper.
        interleaved: the feature-pairing convention (see the module docstring); default ``False`` (rotate-half).

    ``rotary(x (..., L, d), offset=p0)`` rotates the ``L`` vectors as positions ``p0..p0+L-1``:
    with a key/value cache ``p0`` is the number of positions already decoded (``cache.position``).
    No parameters.
    """

    def __init__(self, dim: int, *, base: float = 10000.0, interleaved: bool = False) -> None:
        super().__init__()
        rotary_frequencies(dim, base=base)  # validates dim and base
        self.dim, self.base = dim, float(base)
        self.interleaved = check_flag("interleaved", interleaved)

    def forward(self, x: Tensor, *, offset: int = 0, positions: Tensor | None = None) -> Tensor:
        """``x (..., L, d)`` rotated at ``offset..offset+L-1`` (or at ``positions``, broadcast to ``(..., L)``)."""
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[-1] < self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be (..., L, d) with d >= dim = {self.dim}, got {got}")
        if positions is None:
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValueError(f"offset must be an int >= 0, got {offset!r}")
            positions = torch.arange(offset, offset + x.shape[-2], device=x.device)  # (L,)
        return apply_rotary(x, positions, dim=self.dim, base=self.base, interleaved=self.interleaved)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base:g}, interleaved={self.interleaved}"
