"""Small helpers shared by the layers."""

from __future__ import annotations

from torch import Tensor, nn

from qkv import scores as score_modules
from qkv.functional.scores import PARAMETER_FREE

ScoreArg = str | nn.Module


def build_score(score: ScoreArg, *, query_dim: int, key_dim: int, hidden_dim: int | None = None) -> ScoreArg:
    """Keep parameter-free names as strings (so ``attend`` can dispatch to fast kernels); build modules."""
    if isinstance(score, str):
        if score in PARAMETER_FREE:
            return score
        return score_modules.make(score, query_dim=query_dim, key_dim=key_dim, hidden_dim=hidden_dim)
    if callable(score):
        return score
    raise TypeError(f"score must be a name or a callable (q, k) -> scores, got {type(score).__name__}")


def check_input(name: str, x: object, *, dims: tuple[int, ...], width: int | None = None) -> Tensor:
    """Check a module input's type, rank and last dim; name them in the error."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in dims:
        raise ValueError(f"{name} must have {' or '.join(map(str, dims))} dims, got shape {tuple(x.shape)}")
    if width is not None and x.shape[-1] != width:
        raise ValueError(f"{name} must have last dim {width}, got shape {tuple(x.shape)}")
    return x
