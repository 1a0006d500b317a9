"""Corrupting ±1 patterns for associative recall: flip or mask a fraction of the components.

Shape legend: ``B`` patterns, ``N`` components.

The probes of a content-addressable memory (Hopfield 1982; Ramsauer et al. 2020 §4 show masked
images): a stored pattern with a fraction of its bits flipped (``-x``) or masked (set to 0, "unknown").
Exactly ``round(fraction * N)`` components are corrupted in every pattern, chosen by a seeded generator.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["corrupt", "random_patterns"]


def corrupt(patterns: Tensor, fraction: float, *, kind: Literal["flip", "mask"] = "flip",
            generator: torch.Generator | None = None) -> Tensor:
    """A copy of ``patterns (B, N)`` with ``round(fraction * N)`` components of each flipped or zeroed.

    Args:
        patterns: ``(B, N)`` ±1 patterns.
        fraction: in [0, 1].
        kind: ``"flip"`` (``x -> -x``) or ``"mask"`` (``x -> 0``).
        generator: which components (seed it).
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be a number in [0, 1], got {fraction!r}")
    if kind not in ("flip", "mask"):
        raise ValueError(f"kind must be 'flip' or 'mask', got {kind!r}")
    B, N = patterns.shape
    k = round(fraction * N)
    chosen = torch.rand(B, N, generator=generator).argsort(-1)[:, :k].to(patterns.device)  # (B, k)
    hit = torch.zeros(B, N, dtype=torch.bool, device=patterns.device).scatter_(1, chosen, True)  # (B, N)
    return torch.where(hit, -patterns if kind == "flip" else torch.zeros_like(patterns), patterns)


def random_patterns(count: int, dim: int, *, generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """``(count, dim)`` patterns of independent, equiprobable ±1 components."""
    return (torch.randint(0, 2, (count, dim), generator=generator) * 2 - 1).to(dtype)
