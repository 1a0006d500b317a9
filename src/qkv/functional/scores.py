"""Score functions: how well each key matches each query.

Shape legend: ``...`` leading (broadcast) dims, typically ``(B, H)``; ``L`` queries,
``S`` keys, ``D`` query/key width, ``A`` hidden width of the additive score.

Every score has the one signature of this library, ``(q, k) -> scores``, with
``q (..., L, Dq)``, ``k (..., S, Dk)`` and ``scores (..., L, S)``; a parametric score takes
its parameters as keyword arguments here, and :mod:`qkv.scores` wraps it as an
``nn.Module`` with the ``(q, k)`` signature.

The forms (Qiu, *Neural Networks and Deep Learning* §8.2, seed 001; Luong et al. 2015 §3.1,
seed 004), writing ``x`` for a key and ``q`` for a query:

* additive (Bahdanau et al. 2015; Luong's "concat"): :math:`s(x, q) = v^\\top \\tanh(W x + U q)`
* dot: :math:`s(x, q) = x^\\top q`
* scaled dot (Vaswani et al. 2017): :math:`s(x, q) = x^\\top q / \\sqrt{D}`
* bilinear (Luong's "general"): :math:`s(x, q) = x^\\top W q`
* cosine (MPCNN, He et al. 2015): :math:`s(x, q) = x^\\top q / (\\lVert x \\rVert \\lVert q \\rVert)`
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "PARAMETER_FREE",
    "ScoreFn",
    "additive",
    "additive_projections",
    "bilinear",
    "bilinear_query",
    "check_same_width",
    "cosine",
    "default_scale",
    "dot",
    "scaled_dot",
    "unit",
]

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def check_same_width(name: str, q: Tensor, k: Tensor) -> None:
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"score {name!r} needs queries and keys of the same width: got q {tuple(q.shape)} "
            f"(D={q.shape[-1]}) and k {tuple(k.shape)} (D={k.shape[-1]}); use a 'bilinear' or "
            "'additive' score (qkv.scores) for different widths"
        )


def dot(q: Tensor, k: Tensor) -> Tensor:
    """Dot-product score :math:`x^\\top q`. ``q (..., L, D)``, ``k (..., S, D)`` -> ``(..., L, S)``."""
    check_same_width("dot", q, k)
    return torch.einsum("...ld,...sd->...ls", q, k)


def scaled_dot(q: Tensor, k: Tensor, *, scale: float | None = None) -> Tensor:
    """Scaled dot-product score :math:`x^\\top q / \\sqrt{D}` (Vaswani et al. 2017, eq. 1).

    Args:
        scale: the multiplier; ``None`` means :math:`1/\\sqrt{D}`. Exercise 8-2 (seed 001): for
            unit-variance entries, :math:`\\mathrm{Var}(x^\\top q) = D`, and the scaling restores unit
            variance so the softmax does not saturate.
    """
    check_same_width("scaled_dot", q, k)
    if scale is None:
        scale = default_scale(q.shape[-1])
    return torch.einsum("...ld,...sd->...ls", q * scale, k)


def default_scale(width: int) -> float:
    """:math:`1/\\sqrt{D}`, the scaled dot product's multiplier for width ``D``."""
    return 1.0 / math.sqrt(width)


def unit(x: Tensor, eps: float = 1e-8) -> Tensor:
    """``x`` divided by its norm over the last dim, clamped below by ``eps`` (cosine's normalisation)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def bilinear_query(q: Tensor, weight: Tensor) -> Tensor:
    """:math:`W q`: ``q (..., L, Dq)``, ``weight (Dk, Dq)`` -> ``(..., L, Dk)`` (bilinear = its dot with k)."""
    return torch.einsum("ed,...ld->...le", weight, q)


def additive_projections(
    q: Tensor, k: Tensor, *, w_q: Tensor, w_k: Tensor, bias: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """:math:`U q + b` ``(..., L, A)`` and :math:`W k` ``(..., S, A)``: the additive score's per-token parts."""
    hq = torch.einsum("ad,...ld->...la", w_q, q)  # (..., L, A)
    hk = torch.einsum("ad,...sd->...sa", w_k, k)  # (..., S, A)
    return (hq if bias is None else hq + bias), hk


def bilinear(q: Tensor, k: Tensor, *, weight: Tensor) -> Tensor:
    """Bilinear ("general") score :math:`x^\\top W q` (Luong et al. 2015, eq. 8).

    Args:
        q: ``(..., L, Dq)``.
        k: ``(..., S, Dk)``.
        weight: ``(Dk, Dq)``, the matrix :math:`W`.
    """
    if weight.shape != (k.shape[-1], q.shape[-1]):
        raise ValueError(
            f"bilinear: weight must have shape (Dk, Dq) = ({k.shape[-1]}, {q.shape[-1]}) for "
            f"q {tuple(q.shape)} and k {tuple(k.shape)}, got weight {tuple(weight.shape)}"
        )
    return torch.einsum("...le,...se->...ls", bilinear_query(q, weight), k)


def additive(
    q: Tensor, k: Tensor, *, w_q: Tensor, w_k: Tensor, v: Tensor, bias: Tensor | None = None
) -> Tensor:
    """Additive score :math:`v^\\top \\tanh(W x + U q + b)` (Bahdanau et al. 2015, eq. 6; Luong "concat").

    Luong's concat form :math:`v^\\top \\tanh(W_a [q; x])` is the same function with
    :math:`W_a = [U, W]`. This reference form holds an ``(..., L, S, A)`` tensor; the tiled
    kernel in :mod:`qkv.kernels` bounds it to one tile.

    Args:
        q: ``(..., L, Dq)``.
        k: ``(..., S, Dk)``.
        w_q: ``(A, Dq)``, the matrix :math:`U`.
        w_k: ``(A, Dk)``, the matrix :math:`W`.
        v: ``(A,)``.
        bias: optional ``(A,)``.
    """
    A = v.shape[0] if v.dim() == 1 else -1
    if A < 0 or w_q.shape != (A, q.shape[-1]) or w_k.shape != (A, k.shape[-1]):
        raise ValueError(
            f"additive: for q {tuple(q.shape)} and k {tuple(k.shape)} expected w_q (A, Dq) = (A, {q.shape[-1]}), "
            f"w_k (A, Dk) = (A, {k.shape[-1]}) and v (A,) with one A; got w_q {tuple(w_q.shape)}, "
            f"w_k {tuple(w_k.shape)}, v {tuple(v.shape)}"
        )
    hq, hk = additive_projections(q, k, w_q=w_q, w_k=w_k, bias=bias)  # (..., L, A), (..., S, A)
    h = torch.tanh(hq.unsqueeze(-2) + hk.unsqueeze(-3))  # (..., L, S, A)
    return torch.einsum("...lsa,a->...ls", h, v)


def cosine(q: Tensor, k: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Cosine similarity :math:`x^\\top q / (\\lVert x \\rVert \\lVert q \\rVert)` (MPCNN; NTM content addressing).

    Norms are clamped below by ``eps`` so a zero vector scores 0, not NaN.
    """
    check_same_width("cosine", q, k)
    return torch.einsum("...ld,...sd->...ls", unit(q, eps), unit(k, eps))


#: Scores that need no parameters, by name. Parametric ones live in :mod:`qkv.scores`.
PARAMETER_FREE: dict[str, ScoreFn] = {"dot": dot, "scaled_dot": scaled_dot, "cosine": cosine}
