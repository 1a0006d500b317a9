"""Score functions: how well each key matches each query.

Shape legend: ``...`` leading (broadcast) dims, typically ``(B, H)``; ``L`` queries,
``S`` keys, ``D`` query/key width, ``A`` hidden width of the additive score.

Every score has the one signature of this library, ``(q, k) -> scores``, with
``q (..., L, Dq)``, ``k (..., S, Dk)`` and ``scores (..., L, S)``; a parametric score takes
its parameters as keyword arguments here, and :mod:`qkv.layers.scores` wraps it as an
``nn.Module`` with the ``(q, k)`` signature.

**A score describes its own structure** to the kernels (:func:`structure`), through a ``kind``
attribute and one method for that kind:

* ``kind = "dot"`` — a dot product of transformed features: ``dot_features(q, k) -> (q', k', c)``
  with :math:`s = c\\, q'^\\top k'`. SDPA, FlexAttention and the tiled kernel's matmul tiles can
  take it (dot, scaled dot, cosine, bilinear; NTM's β-sharpened cosine; Hopfield's β-scaled dot).
* ``kind = "additive"`` — ``additive_features(q, k) -> (h_q, h_k, v)`` with
  :math:`s_{ij} = v^\\top \\tanh(h_{q,i} + h_{k,j})`; the tiled kernel projects once and tiles the tanh;
  a ``hidden_dim`` attribute (A) lets ``auto`` size the ``(L, S, A)`` tensor.
* anything else (no ``kind``) — a general pairwise function, evaluated by the naive and tiled
  kernels through its ``(q, k)`` call.

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
from torch import Tensor, nn

__all__ = [
    "PARAMETER_FREE",
    "PARAMETRIC",
    "STRUCTURES",
    "Cosine",
    "Dot",
    "ScaleArg",
    "Scaled",
    "ScaledDot",
    "ScoreFn",
    "additive",
    "additive_projections",
    "bilinear",
    "bilinear_query",
    "captures_grad",
    "check_bilinear",
    "check_same_width",
    "check_scale",
    "cosine",
    "default_scale",
    "dot",
    "is_opaque",
    "resolve",
    "scaled_dot",
    "structure",
    "unit",
]

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def check_same_width(name: str, q: Tensor, k: Tensor) -> None:
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"score {name!r} needs queries and keys of the same width: got q {tuple(q.shape)} "
            f"(D={q.shape[-1]}) and k {tuple(k.shape)} (D={k.shape[-1]}); use a 'bilinear' or "
            "'additive' score (qkv.layers.scores) for different widths"
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
    q: Tensor, k: Tensor, *, w_q: Tensor, w_k: Tensor, hidden_bias: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """:math:`U q + b` ``(..., L, A)`` and :math:`W k` ``(..., S, A)``: the additive score's per-token parts."""
    hq = torch.einsum("ad,...ld->...la", w_q, q)  # (..., L, A)
    hk = torch.einsum("ad,...sd->...sa", w_k, k)  # (..., S, A)
    return (hq if hidden_bias is None else hq + hidden_bias), hk


def check_bilinear(q: Tensor, k: Tensor, weight: Tensor) -> None:
    """Raise ``ValueError`` unless ``weight`` is ``(Dk, Dq)`` for these queries and keys."""
    if weight.shape != (k.shape[-1], q.shape[-1]):
        raise ValueError(
            f"bilinear: weight must have shape (Dk, Dq) = ({k.shape[-1]}, {q.shape[-1]}) for "
            f"q {tuple(q.shape)} and k {tuple(k.shape)}, got weight {tuple(weight.shape)}"
        )


def bilinear(q: Tensor, k: Tensor, *, weight: Tensor) -> Tensor:
    """Bilinear ("general") score :math:`x^\\top W q` (Luong et al. 2015, eq. 8).

    Args:
        q: ``(..., L, Dq)``.
        k: ``(..., S, Dk)``.
        weight: ``(Dk, Dq)``, the matrix :math:`W`.
    """
    check_bilinear(q, k, weight)
    return torch.einsum("...le,...se->...ls", bilinear_query(q, weight), k)


def additive(
    q: Tensor, k: Tensor, *, w_q: Tensor, w_k: Tensor, v: Tensor, hidden_bias: Tensor | None = None
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
        hidden_bias: optional ``(A,)``, the bias :math:`b` inside the tanh.
    """
    A = v.shape[0] if v.dim() == 1 else -1
    if A < 0 or w_q.shape != (A, q.shape[-1]) or w_k.shape != (A, k.shape[-1]):
        raise ValueError(
            f"additive: for q {tuple(q.shape)} and k {tuple(k.shape)} expected w_q (A, Dq) = (A, {q.shape[-1]}), "
            f"w_k (A, Dk) = (A, {k.shape[-1]}) and v (A,) with one A; got w_q {tuple(w_q.shape)}, "
            f"w_k {tuple(w_k.shape)}, v {tuple(v.shape)}"
        )
    hq, hk = additive_projections(q, k, w_q=w_q, w_k=w_k, hidden_bias=hidden_bias)  # (..., L, A), (..., S, A)
    h = torch.tanh(hq.unsqueeze(-2) + hk.unsqueeze(-3))  # (..., L, S, A)
    return torch.einsum("...lsa,a->...ls", h, v)


def cosine(q: Tensor, k: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Cosine similarity :math:`x^\\top q / (\\lVert x \\rVert \\lVert q \\rVert)` (MPCNN; NTM content addressing).

    Norms are clamped below by ``eps`` so a zero vector scores 0, not NaN.
    """
    check_same_width("cosine", q, k)
    return torch.einsum("...ld,...sd->...ls", unit(q, eps), unit(k, eps))


#: The structures a score can declare (``score.kind``); see the module docstring.
STRUCTURES = ("dot", "additive", "pairwise")

ScaleArg = float | int | None


def structure(score: object) -> str:
    """The score's structural kind: ``"dot"``, ``"additive"`` or ``"pairwise"`` (the default)."""
    kind = getattr(score, "kind", "pairwise")
    return kind if kind in STRUCTURES else "pairwise"


def check_scale(scale: object, *, name: str = "scale") -> float | None:
    """``None`` or a finite real number as a float; anything else is a ``TypeError``/``ValueError``."""
    if scale is None:
        return None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"{name} must be a finite real number or None, got {type(scale).__name__} {scale!r}")
    try:
        finite = math.isfinite(scale)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise ValueError(f"{name} must be a finite real number or None, got {scale!r}")
    return float(scale)


class Dot(nn.Module):
    """Dot-product score :math:`c\\, x^\\top q` (Luong "dot"; ``c = scale``, default 1)."""

    kind = "dot"
    name = "dot"

    def __init__(self, *, scale: ScaleArg = None) -> None:
        super().__init__()
        self.scale = check_scale(scale)

    def multiplier(self, width: int) -> float:
        return 1.0 if self.scale is None else self.scale

    def dot_features(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, float]:
        check_same_width(self.name, q, k)
        return q, k, self.multiplier(q.shape[-1])

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        qf, kf, c = self.dot_features(q, k)
        return scaled_dot(qf, kf, scale=c)

    def extra_repr(self) -> str:
        return "" if self.scale is None else f"scale={self.scale}"


class ScaledDot(Dot):
    """Scaled dot-product score :math:`x^\\top q / \\sqrt{D}` (Vaswani et al. 2017), or with an explicit ``scale``."""

    name = "scaled_dot"

    def multiplier(self, width: int) -> float:
        return default_scale(width) if self.scale is None else self.scale


class Cosine(Dot):
    """Cosine similarity :math:`c\\, x^\\top q / (\\lVert x \\rVert \\lVert q \\rVert)` (MPCNN; NTM content addressing).

    A dot product of unit vectors; norms are clamped below by ``eps``.
    """

    name = "cosine"

    def __init__(self, *, scale: ScaleArg = None, eps: float = 1e-8) -> None:
        super().__init__(scale=scale)
        self.eps = eps

    def dot_features(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, float]:
        check_same_width(self.name, q, k)
        return unit(q, self.eps), unit(k, self.eps), self.multiplier(q.shape[-1])


class Scaled(nn.Module):
    """``scale * score(q, k)``, keeping the wrapped score's structure (what ``attend(..., scale=)`` builds)."""

    def __init__(self, score: Callable[[Tensor, Tensor], Tensor], scale: float) -> None:
        super().__init__()
        self.inner = score  # registered as a submodule when it is one (its parameters stay visible)
        self.scale = scale
        self.kind = structure(score)

    def dot_features(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, float]:
        qf, kf, c = self.inner.dot_features(q, k)
        return qf, kf, c * self.scale

    def additive_features(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        hq, hk, v = self.inner.additive_features(q, k)
        return hq, hk, v * self.scale

    @property
    def hidden_dim(self) -> int:
        return self.inner.hidden_dim

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return self.inner(q, k) * self.scale


def is_opaque(score: object) -> bool:
    """Whether the score is a plain function, whose captured tensors (and their gradients) no kernel can see."""
    return is_opaque(score.inner) if isinstance(score, Scaled) else not isinstance(score, nn.Module)


def captures_grad(score: ScoreFn, q: Tensor, k: Tensor) -> bool:
    """Whether ``score`` depends differentiably on tensors other than its inputs (a closure's weights).

    Probed on one query and one key: the autograd graph of the probe's score is walked for leaves
    that require grad and are neither input.
    """
    with torch.enable_grad():
        qp = q[..., :1, :].detach().requires_grad_()  # (..., 1, D)
        kp = k[..., :1, :].detach().requires_grad_()  # (..., 1, D)
        out = score(qp, kp)
    inputs = {id(qp), id(kp)}
    stack, seen = [getattr(out, "grad_fn", None)], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        leaf = getattr(node, "variable", None)  # an AccumulateGrad node holds its leaf tensor
        if leaf is not None and id(leaf) not in inputs:
            return True
        stack.extend(fn for fn, _ in node.next_functions)
    return False


#: Scores that need no parameters, by name: the classes :func:`resolve` builds.
PARAMETER_FREE: dict[str, type[Dot]] = {"dot": Dot, "scaled_dot": ScaledDot, "cosine": Cosine}

#: Names of parametric scores; build them with :func:`qkv.layers.scores.make`.
PARAMETRIC = ("additive", "bilinear", "concat", "general", "mlp")


def resolve(score: str | ScoreFn, scale: object = None) -> ScoreFn:
    """The ``score`` argument of :func:`qkv.attend` as one score object, ``scale`` folded in.

    Names become :class:`Dot`/:class:`ScaledDot`/:class:`Cosine`; a callable with a ``scale`` is
    wrapped in :class:`Scaled` (its structure kept); a callable without one is returned as is.
    """
    scale = check_scale(scale)
    if isinstance(score, str):
        if score in PARAMETER_FREE:
            return PARAMETER_FREE[score](scale=scale)
        if score in PARAMETRIC:
            raise ValueError(
                f"score {score!r} has parameters: pass a module, e.g. qkv.layers.scores.make({score!r}, "
                "query_dim=..., key_dim=...), or use a layer such as qkv.Attention(score=...)"
            )
        raise ValueError(
            f"score must be one of {sorted(PARAMETER_FREE)} or a callable (q, k) -> scores, got {score!r}"
        )
    if not callable(score):
        raise TypeError(f"score must be a name or a callable (q, k) -> scores, got {type(score).__name__}")
    return score if scale is None else Scaled(score, scale)
