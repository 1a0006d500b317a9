"""Argument checks shared by :func:`qkv.attend` and the layers: each error names the argument and what it got."""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_dropout", "check_flag", "check_positive_int", "check_tensor"]


def check_tensor(name: str, t: object, *, min_dim: int = 2) -> Tensor:
    """A floating-point tensor with at least ``min_dim`` dims, or a ``TypeError``/``ValueError`` naming ``name``."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dims (..., length, width), got shape {tuple(t.shape)}")
    return t


def check_flag(name: str, value: object) -> bool:
    """A bool, or a ``TypeError`` naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_dropout(dropout: object, *, name: str = "dropout") -> float:
    """A probability in ``[0, 1)`` as a float, or a ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(dropout).__name__} {dropout!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {dropout!r}")
    return float(dropout)


def check_positive_int(name: str, value: object) -> int:
    """A positive int (not a bool), or a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value
