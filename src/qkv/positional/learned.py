"""Learned absolute position embeddings (Gehring et al. 2017; GPT, GPT-2 ``wpe``, BERT ``position_embeddings``).

Shape legend: ``B`` batch, ``L`` positions, ``D`` model width, ``P`` the maximum length.

One learned vector per position :math:`p < P`, added to the token embedding:
:math:`h_p = x_p + W_p`. Unlike :mod:`qkv.positional.sinusoidal` there is nothing past ``P``:
asking for a position ``>= P`` raises an error naming the positions asked for.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.functional.checks import check_positive_int

__all__ = ["LearnedPositions"]


class LearnedPositions(nn.Module):
    """A table ``weight (P, D)`` of learned positions, added to the input.

    Args:
        max_length: ``P``, the number of positions.
        dim: ``D``.
        init_std: the initial weights are ``N(0, init_std²)`` (GPT-2 and BERT use 0.02).

    Call ``positions(x, offset=...)`` as ``x + weight[offset : offset + L]``; with a key/value cache
    ``offset`` is the number of positions already decoded.
    """

    def __init__(
        self,
        max_length: int,
        dim: int,
        *,
        init_std: float = 0.02,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.max_length = check_positive_int("max_length", max_length)
        self.dim = check_positive_int("dim", dim)
        if isinstance(init_std, bool) or not isinstance(init_std, (int, float)) or not init_std >= 0:
            raise ValueError(f"init_std must be a number >= 0, got {init_std!r}")
        self.init_std = float(init_std)
        self.weight = nn.Parameter(torch.empty(self.max_length, self.dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=self.init_std)

    def table(self, length: int, *, offset: int = 0) -> Tensor:
        """The embeddings of positions ``offset..offset+length-1``: ``(length, D)``."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be an int >= 0, got {offset!r}")
        if offset + length > self.max_length:
            raise ValueError(
                f"positions {offset}..{offset + length - 1} go past max_length={self.max_length} "
                f"(learned positions exist only for 0..{self.max_length - 1})"
            )
        return self.weight[offset : offset + length]  # (length, D)

    def forward(self, x: Tensor, *, offset: int = 0, positions: Tensor | None = None) -> Tensor:
        """``x (B, L, D)`` plus the embeddings of positions ``offset..offset+L-1`` (or of ``positions (B|1, L)``)."""
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[-1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be (..., L, {self.dim}), got {got}")
        if positions is None:
            return x + self.table(x.shape[-2], offset=offset)
        if positions.dtype.is_floating_point or positions.dtype == torch.bool:
            raise TypeError(f"positions must be an integer tensor, got dtype {positions.dtype}")
        if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= self.max_length):
            raise ValueError(
                f"positions must lie in 0..{self.max_length - 1} (max_length={self.max_length}), "
                f"got values {int(positions.min())}..{int(positions.max())}"
            )
        return x + self.weight[positions]  # (B|1, L, D)

    def extra_repr(self) -> str:
        return f"max_length={self.max_length}, dim={self.dim}"
