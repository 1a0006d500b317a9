"""Sinusoidal absolute positions (Vaswani et al. 2017, §3.5) and their relative-position property.

Shape legend: ``B`` batch, ``L`` positions, ``D`` model width (even), ``D/2`` frequencies.

.. math:: PE_{(p, 2i)} = \\sin(p\\,\\omega_i),\\qquad PE_{(p, 2i+1)} = \\cos(p\\,\\omega_i),
          \\qquad \\omega_i = \\mathrm{base}^{-2i/D}\\ (\\mathrm{base} = 10000).

The paper chose sinusoids because "for any fixed offset k, :math:`PE_{p+k}` can be represented as
a linear function of :math:`PE_p`" (§3.5; the survey, seed 004): each pair
:math:`(\\sin p\\omega_i, \\cos p\\omega_i)` is rotated by the angle :math:`k\\omega_i`, so
:math:`PE_{p+k} = M_k\\,PE_p` with the block-diagonal matrix :func:`sinusoidal_shift` ``(D, D)``,
which does not depend on ``p``. The encoding is added to the token embeddings (the paper also
multiplies the embeddings by :math:`\\sqrt{D}`, §3.4 — that is the embedding's business).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.functional.checks import check_positive_int

__all__ = ["SinusoidalPositions", "sinusoidal", "sinusoidal_frequencies", "sinusoidal_shift"]


def _check_dim(dim: object) -> int:
    d = check_positive_int("dim", dim)
    if d % 2:
        raise ValueError(f"dim must be even (sin/cos pairs), got {d}")
    return d


def _check_base(base: object) -> float:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 1 or base == float("inf"):
        raise ValueError(f"base must be a finite number > 1, got {base!r}")
    return float(base)


def sinusoidal_frequencies(dim: int, *, base: float = 10000.0) -> Tensor:
    """The angular frequencies :math:`\\omega_i = \\mathrm{base}^{-2i/D}`, ``(D/2,)`` float64."""
    d, b = _check_dim(dim), _check_base(base)
    return torch.pow(b, -torch.arange(0, d, 2, dtype=torch.float64) / d)  # (D/2,)


def sinusoidal(
    positions: Tensor | int,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The encodings :math:`PE_p` (Vaswani et al. 2017, §3.5), interleaved ``sin, cos, sin, cos, ...``.

    Args:
        positions: a length ``L`` (positions ``0..L-1``) or a tensor of positions of any shape ``(...)``
            (integers or reals).
        dim: ``D``, even.
        base: the wavelength base (10000 in the paper).
        dtype: result dtype (default float32; the angles are computed in float64).

    Returns:
        ``(..., D)``: ``(L, D)`` for a length.
    """
    omega = sinusoidal_frequencies(dim, base=base)
    if isinstance(positions, Tensor):
        p = positions.to(device=device or positions.device, dtype=torch.float64)
    else:
        p = torch.arange(check_positive_int("positions", positions) if positions else 0, dtype=torch.float64,
                         device=device)
    angles = p[..., None] * omega.to(p.device)  # (..., D/2)
    pe = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # (..., D/2, 2) -> (..., D)
    return pe.to(dtype or torch.float32)


def sinusoidal_shift(k: float, dim: int, *, base: float = 10000.0, dtype: torch.dtype | None = None) -> Tensor:
    """The fixed linear map :math:`M_k` ``(D, D)`` with :math:`PE_{p+k} = M_k PE_p` for every ``p``.

    Block diagonal, one ``2 x 2`` rotation per frequency (from :math:`\\sin(a+b)` and :math:`\\cos(a+b)`):

    .. math:: \\begin{pmatrix}\\sin (p+k)\\omega \\\\ \\cos (p+k)\\omega\\end{pmatrix} =
              \\begin{pmatrix}\\cos k\\omega & \\sin k\\omega \\\\ -\\sin k\\omega & \\cos k\\omega\\end{pmatrix}
              \\begin{pmatrix}\\sin p\\omega \\\\ \\cos p\\omega\\end{pmatrix}.

    For row vectors (``pe (L, D)``), ``pe_shifted = pe @ M_k.T``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise TypeError(f"k must be a number (the position offset), got {type(k).__name__}")
    omega = sinusoidal_frequencies(dim, base=base)
    c, s = torch.cos(k * omega), torch.sin(k * omega)  # (D/2,)
    blocks = torch.stack((torch.stack((c, s), -1), torch.stack((-s, c), -1)), -2)  # (D/2, 2, 2)
    return torch.block_diag(*blocks).to(dtype or torch.float32)  # (D, D)


class SinusoidalPositions(nn.Module):
    """Adds :func:`sinusoidal` encodings to its input: ``x + PE[offset : offset + L]``.

    Args:
        dim: model width ``D`` (even).
        base: the wavelength base (10000).

    No parameters, no maximum length. With a key/value cache, pass ``offset`` = the number of
    positions already decoded (``cache.position``).
    """

    def __init__(self, dim: int, *, base: float = 10000.0) -> None:
        super().__init__()
        self.dim = _check_dim(dim)
        self.base = _check_base(base)

    def forward(self, x: Tensor, *, offset: int = 0, positions: Tensor | None = None) -> Tensor:
        """``x (B, L, D)`` plus the encodings of positions ``offset..offset+L-1`` (or of ``positions (B|1, L)``)."""
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[-1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be (..., L, {self.dim}), got {got}")
        if positions is None:
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValueError(f"offset must be an int >= 0, got {offset!r}")
            positions = torch.arange(offset, offset + x.shape[-2], device=x.device)  # (L,)
        return x + sinusoidal(positions, self.dim, base=self.base, dtype=x.dtype, device=x.device)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base:g}"
