"""The general form of attention: score, mask, normalise, read.

Shape legend: ``...`` leading dims that broadcast (typically ``(B, H)``); ``L`` queries
(target length), ``S`` keys (source length), ``D`` query/key width, ``Dv`` value width.

Seed 001 §8.2 and the survey (seed 004): every attention mechanism scores each key
against the query, normalises the scores into a distribution over keys, and reads the
values with it,

.. math::  \\alpha_{ij} = \\mathrm{normalize}_j\\big(s(k_j, q_i) + b_{ij}\\big)\\;[\\text{mask}_{ij}],
           \\qquad o_i = \\sum_j \\alpha_{ij} v_j = \\mathbb{E}_{z \\sim \\alpha_i}[v_z].

Soft attention is that expectation; hard attention replaces it with one sampled (or argmax)
key. :func:`attend` is the one entry point; a backend (:mod:`qkv.kernels`) computes it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from qkv import kernels
from qkv.biases import Bias
from qkv.functional import normalize as norm
from qkv.functional import scores as sc
from qkv.functional.output import AttentionOutput
from qkv.kernels.local import GaussianWindow
from qkv.masks import Mask, MaskLike, as_mask

__all__ = ["attend"]



def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_tensor(name: str, t: object, *, min_dim: int) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dims (..., length, width), got shape {_shape(t)}")
    return t


def _resolve_score(score: str | Callable[[Tensor, Tensor], Tensor], scale: float | None):
    """Return ``(fn, name)``: the score as a ``(q, k)`` callable (scale applied) and its built-in name."""
    if isinstance(score, str):
        if score in sc.PARAMETER_FREE:
            if score == "scaled_dot":
                return functools.partial(sc.scaled_dot, scale=scale), score
            fn = sc.PARAMETER_FREE[score]
            if scale is None:
                return fn, score
            return (lambda q, k: fn(q, k) * scale), score
        from qkv.scores import KINDS  # deferred: qkv.scores imports this package

        if score in KINDS:  # a name qkv.scores.make knows, but not parameter-free
            raise ValueError(
                f"score {score!r} has parameters: pass a module, e.g. qkv.scores.make({score!r}, "
                "query_dim=..., key_dim=...), or use a layer such as qkv.Attention(score=...)"
            )
        raise ValueError(
            f"score must be one of {sorted(sc.PARAMETER_FREE)} or a callable (q, k) -> scores, got {score!r}"
        )
    if not callable(score):
        raise TypeError(f"score must be a name or a callable (q, k) -> scores, got {type(score).__name__}")
    if scale is None:
        return score, None
    return (lambda q, k: score(q, k) * scale), None


def _check_lazy(name: str, lazy: Mask | Bias, L: int, S: int, q: Tensor, target: tuple[int, ...]) -> None:
    """Check that a lazy mask or bias broadcasts to ``target``, tensors nested in ``&``/``|``/``+`` included."""
    tensor = getattr(lazy, "tensor", None)  # TensorMask / TensorBias: report the tensor's own shape
    if isinstance(tensor, Tensor):
        _check_broadcast(name, _shape(tensor), target)
    probe = lazy.tile(0, min(L, 1), 0, min(S, 1), L=L, S=S, device=q.device)
    _check_broadcast(name, (*probe.shape[:-2], L, S), target)
    for part in getattr(lazy, "parts", ()):  # combinations
        _check_lazy(name, part, L, S, q, target)


def _check_broadcast(name: str, shape: tuple[int, ...], target: tuple[int, ...]) -> None:
    try:
        ok = torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} of shape {shape} does not broadcast to the scores' shape {target} (..., L, S)")


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    score: str | Callable[[Tensor, Tensor], Tensor] = "scaled_dot",
    mask: MaskLike | None = None,
    bias: Tensor | Bias | None = None,
    normalize: str | Callable[[Tensor, Tensor | None], Tensor] = "softmax",
    scale: float | None = None,
    dropout: float = 0.0,
    straight_through: bool = False,
    generator: torch.Generator | None = None,
    return_weights: bool = False,
    return_scores: bool = False,
    backend: str = "auto",
    local_p: GaussianWindow | None = None,
) -> AttentionOutput:
    """Attention in its general form: score each key, mask, normalise, read the values.

    Args:
        q: queries ``(..., L, D)``.
        k: keys ``(..., S, D)`` (``D`` may differ from q's for parametric scores).
        v: values ``(..., S, Dv)``. Leading dims of q, k, v broadcast.
        score: ``"dot"``, ``"scaled_dot"``, ``"cosine"``, or any callable ``(q, k) -> (..., L, S)``,
            including the parametric modules of :mod:`qkv.scores` (bilinear/"general",
            additive/"concat"/"mlp").
        mask: bool tensor broadcastable to ``(..., L, S)``, **True = may attend**, or a lazy
            :class:`qkv.masks.Mask` (:func:`~qkv.masks.causal`, :func:`~qkv.masks.window`,
            :func:`~qkv.masks.padding`, combined with ``&``/``|``).
        bias: additive float scores broadcastable to ``(..., L, S)`` (relative positions, ALiBi,
            ``-inf`` to forbid a key).
        normalize: ``"softmax"``, ``"relu"`` (``ReLU(s) / n_allowed``, not summing to 1),
            ``"sparsemax"``, ``"hard"`` (argmax one-hot), ``"sample"`` (one key drawn per query;
            its log-probability is returned for REINFORCE), or a callable ``(scores, mask) -> weights``.
            See :mod:`qkv.functional.normalize`.
        scale: multiplier of the scores; ``None`` is the score's own (``1/sqrt(D)`` for
            ``scaled_dot``, 1 otherwise).
        dropout: probability of zeroing a weight (applied whenever > 0, as in
            ``scaled_dot_product_attention``; modules pass 0 in eval mode).
        straight_through: for ``normalize="hard"``: one-hot forward, softmax gradient backward.
        generator: random source for ``normalize="sample"``.
        return_weights: also return the weights ``(..., L, S)``.
        return_scores: also return the raw scores ``(..., L, S)`` (after bias, before masking).
        backend: ``"auto"`` (fastest that supports the call), ``"naive"`` (reference),
            ``"sdpa"``, ``"tiled"`` (online softmax, linear memory, any score) or ``"flex"``;
            see :mod:`qkv.kernels`. ``return_weights``/``return_scores`` need ``"naive"``.
        local_p: Luong's local-p (:class:`qkv.kernels.local.GaussianWindow`, eq. 10): keys
            outside ``|s - p| <= D`` are masked and the softmax weights are multiplied by
            ``exp(-(s - p)^2 / (2 (D/2)^2))`` without renormalising.

    Returns:
        :class:`AttentionOutput` with ``output (..., L, Dv)`` and, as requested, ``weights``,
        ``scores`` and ``log_prob``. A query with no allowed key gets zero weights and a zero
        output (and zero gradient), never NaN.
    """
    q = _check_tensor("q", q, min_dim=2)
    k = _check_tensor("k", k, min_dim=2)
    v = _check_tensor("v", v, min_dim=2)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share a dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k and v must be on one device, got q {q.device}, k {k.device}, v {v.device}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same length S: got k {_shape(k)} (S={k.shape[-2]}) "
            f"and v {_shape(v)} (S={v.shape[-2]})"
        )
    try:
        batch_shape = tuple(torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
    except RuntimeError:
        raise ValueError(
            f"leading dims of q {_shape(q)}, k {_shape(k)} and v {_shape(v)} do not broadcast"
        ) from None
    L, S = q.shape[-2], k.shape[-2]
    scores_shape = (*batch_shape, L, S)

    score_fn, score_name = _resolve_score(score, scale)
    if score_name is not None:  # fast kernels may never call the score function: check here
        sc.check_same_width(score_name, q, k)
    if isinstance(normalize, str):
        if normalize not in norm.NORMALIZERS:
            raise ValueError(f"normalize must be one of {sorted(norm.NORMALIZERS)} or a callable, got {normalize!r}")
    elif not callable(normalize):
        raise TypeError(f"normalize must be a name or a callable, got {type(normalize).__name__}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")
    if backend != "auto" and backend not in kernels.BACKENDS:
        raise ValueError(f"backend must be one of {['auto', *kernels.BACKENDS]}, got {backend!r}")

    lazy: Mask | None = None
    if mask is not None:
        if not isinstance(mask, (Tensor, Mask)):
            raise TypeError(f"mask must be a bool tensor or a qkv.masks.Mask, got {type(mask).__name__}")
        lazy = as_mask(mask)
        _check_lazy("mask", lazy, L, S, q, scores_shape)
    if bias is not None:
        if isinstance(bias, Bias):
            _check_lazy("bias", bias, L, S, q, scores_shape)
        else:
            if not isinstance(bias, Tensor) or not bias.dtype.is_floating_point:
                got = bias.dtype if isinstance(bias, Tensor) else type(bias).__name__
                raise TypeError(
                    f"bias must be a floating-point tensor (additive scores) or a qkv.biases.Bias, got {got}"
                )
            _check_broadcast("bias", _shape(bias), scores_shape)
            bias = bias.to(q.dtype)  # scores, weights and output keep q's dtype
    if local_p is not None:
        if not isinstance(local_p, GaussianWindow):
            raise TypeError(f"local_p must be a qkv.kernels.local.GaussianWindow, got {type(local_p).__name__}")
        _check_broadcast("local_p.position", (*local_p.position.shape, S), scores_shape)

    call = kernels.AttentionCall(
        q=q, k=k, v=v, score=score_fn, score_name=score_name, scale=scale, mask=lazy, bias=bias,
        normalize=normalize, dropout=float(dropout), straight_through=straight_through, generator=generator,
        return_weights=return_weights, return_scores=return_scores, batch_shape=batch_shape,
        score_spec=score, local_p=local_p,
    )
    if S == 0:  # no keys at all: every row is fully masked
        zeros = q.new_zeros(scores_shape)
        connected = (q.sum() + k.sum() + v.sum()) * 0  # zero output, but still part of the graph
        return AttentionOutput(
            output=v.new_zeros((*batch_shape, L, v.shape[-1])) + connected,
            weights=zeros if return_weights else None,
            scores=zeros if return_scores else None,
            log_prob=q.new_zeros((*batch_shape, L)) if normalize == "sample" else None,
        )
    return kernels.run(call, backend)
