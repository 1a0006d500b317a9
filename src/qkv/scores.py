"""Score functions as modules: parametric scores own their parameters.

Each module has the one score signature ``forward(q, k) -> scores`` with
``q (..., L, Dq)``, ``k (..., S, Dk)``, ``scores (..., L, S)``, and calls the maths in
:mod:`qkv.functional.scores`. Pass any of them as ``score=`` to :func:`qkv.attend` or to a
layer. :func:`make` builds one by name.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from qkv.functional import scores as F

__all__ = ["KINDS", "Additive", "Bilinear", "Cosine", "Dot", "ScaledDot", "make"]


class Dot(nn.Module):
    """:math:`x^\\top q` (Luong "dot")."""

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return F.dot(q, k)


class ScaledDot(nn.Module):
    """:math:`x^\\top q / \\sqrt{D}` (Vaswani et al. 2017), or with an explicit ``scale``."""

    def __init__(self, *, scale: float | None = None) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return F.scaled_dot(q, k, scale=self.scale)


class Cosine(nn.Module):
    """Cosine similarity (MPCNN, He et al. 2015; NTM content addressing, Graves et al. 2014)."""

    def __init__(self, *, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return F.cosine(q, k, eps=self.eps)


class Bilinear(nn.Module):
    """Luong's "general" score :math:`x^\\top W q` with a learned ``W (key_dim, query_dim)``."""

    def __init__(self, query_dim: int, key_dim: int | None = None) -> None:
        super().__init__()
        key_dim = query_dim if key_dim is None else key_dim
        _check_dims(query_dim=query_dim, key_dim=key_dim)
        self.weight = nn.Parameter(torch.empty(key_dim, query_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return F.bilinear(q, k, weight=self.weight)


class Additive(nn.Module):
    """Bahdanau's additive score :math:`v^\\top \\tanh(W x + U q)` (also Luong's "concat", an MLP score).

    Args:
        query_dim: width of q.
        key_dim: width of k (default ``query_dim``).
        hidden_dim: width ``A`` of the tanh layer (default ``key_dim``).
        bias: learn a bias inside the tanh.
    """

    def __init__(
        self, query_dim: int, key_dim: int | None = None, *, hidden_dim: int | None = None, bias: bool = False
    ) -> None:
        super().__init__()
        key_dim = query_dim if key_dim is None else key_dim
        hidden_dim = key_dim if hidden_dim is None else hidden_dim
        _check_dims(query_dim=query_dim, key_dim=key_dim, hidden_dim=hidden_dim)
        self.w_q = nn.Parameter(torch.empty(hidden_dim, query_dim))
        self.w_k = nn.Parameter(torch.empty(hidden_dim, key_dim))
        self.v = nn.Parameter(torch.empty(hidden_dim))
        self.bias = nn.Parameter(torch.zeros(hidden_dim)) if bias else None
        nn.init.xavier_uniform_(self.w_q)
        nn.init.xavier_uniform_(self.w_k)
        nn.init.uniform_(self.v, -1 / math.sqrt(hidden_dim), 1 / math.sqrt(hidden_dim))

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return F.additive(q, k, w_q=self.w_q, w_k=self.w_k, v=self.v, bias=self.bias)


def _check_dims(**dims: int) -> None:
    for name, d in dims.items():
        if isinstance(d, bool) or not isinstance(d, int) or d <= 0:
            raise ValueError(f"{name} must be a positive int, got {d!r}")


#: Every score name :func:`make` accepts, mapped to the kind of score it builds.
KINDS: dict[str, str] = {
    "dot": "dot",
    "scaled_dot": "scaled_dot",
    "cosine": "cosine",
    "bilinear": "bilinear",
    "general": "bilinear",
    "additive": "additive",
    "concat": "additive",
    "mlp": "additive",
}


def make(name: str, *, query_dim: int, key_dim: int | None = None, hidden_dim: int | None = None) -> nn.Module:
    """Build a score module by name.

    ``"general"`` is ``"bilinear"``; ``"concat"`` and ``"mlp"`` are ``"additive"`` (Luong's
    :math:`v^\\top \\tanh(W_a[q; x])` splits into :math:`W x + U q`).
    """
    if name not in KINDS:
        raise ValueError(f"score must be one of {sorted(KINDS)}, got {name!r}")
    kind = KINDS[name]
    if kind == "dot":
        return Dot()
    if kind == "scaled_dot":
        return ScaledDot()
    if kind == "cosine":
        return Cosine()
    if kind == "bilinear":
        return Bilinear(query_dim, key_dim)
    return Additive(query_dim, key_dim, hidden_dim=hidden_dim)
