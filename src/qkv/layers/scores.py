"""Score functions as modules: parametric scores own their parameters.

Each module has the one score signature ``forward(q, k) -> scores`` with ``q (..., L, Dq)``,
``k (..., S, Dk)``, ``scores (..., L, S)``, calls the maths in :mod:`qkv.functional.scores`, and
declares its structure (``kind``) so kernels can take the fast path without knowing its class.
Pass any of them as ``score=`` to :func:`qkv.attend` or to a layer; :func:`make` builds one by name.
The parameter-free :class:`Dot`, :class:`ScaledDot` and :class:`Cosine` are those of
:mod:`qkv.functional.scores`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from qkv.functional import scores as F
from qkv.functional.checks import check_positive_int
from qkv.functional.scores import Cosine, Dot, ScaledDot

__all__ = ["NAMES", "Additive", "Bilinear", "Cosine", "Dot", "ScaledDot", "make"]


class Bilinear(nn.Module):
    """Luong's "general" score :math:`x^\\top W q`, learned ``W (key_dim, query_dim)``: a dot of ``W q`` and ``x``."""

    kind = "dot"

    def __init__(self, query_dim: int, key_dim: int | None = None) -> None:
        super().__init__()
        query_dim = check_positive_int("query_dim", query_dim)
        key_dim = check_positive_int("key_dim", query_dim if key_dim is None else key_dim)
        self.weight = nn.Parameter(torch.empty(key_dim, query_dim))
        nn.init.xavier_uniform_(self.weight)

    def dot_features(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, float]:
        F.check_bilinear(q, k, self.weight)
        return F.bilinear_query(q, self.weight), k, 1.0

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return F.bilinear(q, k, weight=self.weight)


class Additive(nn.Module):
    """Bahdanau's additive score :math:`v^\\top \\tanh(W x + U q)` (also Luong's "concat", an MLP score).

    Args:
        query_dim: width of q.
        key_dim: width of k (default ``query_dim``).
        hidden_dim: width ``A`` of the tanh layer (default ``key_dim``).
        hidden_bias: learn a bias :math:`b` inside the tanh, :math:`v^\\top \\tanh(W x + U q + b)`.
    """

    kind = "additive"

    def __init__(
        self, query_dim: int, key_dim: int | None = None, *, hidden_dim: int | None = None,
        hidden_bias: bool = False,
    ) -> None:
        super().__init__()
        query_dim = check_positive_int("query_dim", query_dim)
        key_dim = check_positive_int("key_dim", query_dim if key_dim is None else key_dim)
        hidden_dim = check_positive_int("hidden_dim", key_dim if hidden_dim is None else hidden_dim)
        self.w_q = nn.Parameter(torch.empty(hidden_dim, query_dim))
        self.w_k = nn.Parameter(torch.empty(hidden_dim, key_dim))
        self.v = nn.Parameter(torch.empty(hidden_dim))
        self.hidden_bias = nn.Parameter(torch.zeros(hidden_dim)) if hidden_bias else None
        nn.init.xavier_uniform_(self.w_q)
        nn.init.xavier_uniform_(self.w_k)
        nn.init.uniform_(self.v, -1 / math.sqrt(hidden_dim), 1 / math.sqrt(hidden_dim))

    @property
    def hidden_dim(self) -> int:
        return self.v.shape[0]

    def additive_features(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        hq, hk = F.additive_projections(q, k, w_q=self.w_q, w_k=self.w_k, hidden_bias=self.hidden_bias)  # (..., L|S, A)
        return hq, hk, self.v

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return F.additive(q, k, w_q=self.w_q, w_k=self.w_k, v=self.v, hidden_bias=self.hidden_bias)


#: Every score name :func:`make` accepts, mapped to the kind of score it builds.
NAMES: dict[str, str] = {
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
    if name not in NAMES:
        raise ValueError(f"score must be one of {sorted(NAMES)}, got {name!r}")
    kind = NAMES[name]
    if kind in F.PARAMETER_FREE:
        return F.PARAMETER_FREE[kind]()
    if kind == "bilinear":
        return Bilinear(query_dim, key_dim)
    return Additive(query_dim, key_dim, hidden_dim=hidden_dim)
