"""The validated description of one attention problem, handed from :func:`qkv.attend` to a kernel.

Shape legend: ``...`` leading dims that broadcast (typically ``(B, H)``); ``L`` queries, ``S`` keys,
``D`` query/key width, ``Dv`` value width.

:meth:`AttentionCall.build` is the one place where ``attend``'s arguments are checked and
resolved: the score becomes one object (its ``scale`` folded in), the normaliser a
:class:`~qkv.functional.normalize.Normalizer`, masks and biases lazy objects (tensors wrapped,
the modifier's support joined to the mask). Kernels read the call and never re-derive it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from qkv.functional import normalize as norm
from qkv.functional import scores as sc
from qkv.functional.biases import Bias, BiasLike, as_bias
from qkv.functional.checks import check_dropout, check_flag, check_tensor
from qkv.functional.masks import Mask, MaskLike, as_mask
from qkv.functional.modifiers import WeightModifier

__all__ = ["AttentionCall"]

#: Score classes whose ``dot_features`` requires only that queries and keys have one width (no probe needed).
_SAME_WIDTH = frozenset(sc.PARAMETER_FREE.values())


@dataclass(frozen=True)
class AttentionCall:
    """Everything a kernel needs; built and checked by :meth:`build`.

    Attributes:
        q, k, v: ``(..., L, D)``, ``(..., S, D)``, ``(..., S, Dv)``; leading dims broadcast.
        score: ``(q, k) -> (..., L, S)``, ``scale`` included; its structure is :attr:`kind`.
        mask: a lazy :class:`~qkv.functional.masks.Mask` (the modifier's support included), or ``None``.
        bias: a lazy :class:`~qkv.functional.biases.Bias` (tensors wrapped), or ``None``.
        normalize: the :class:`~qkv.functional.normalize.Normalizer`.
        dropout: probability of zeroing a weight.
        modifier: a :class:`~qkv.functional.modifiers.WeightModifier` applied after normalisation, or ``None``.
        return_weights, return_scores: what the caller asked for besides the output.
        batch_shape: the broadcast leading dims of q, k and v.
        group: backend ``"ring"`` only: the :class:`~qkv.kernels.ring.SequenceParallel` sharding; q, k and
            v are then this rank's shards and masks and biases describe the whole ``(N·L, N·S)`` plane.
    """

    q: Tensor
    k: Tensor
    v: Tensor
    score: sc.ScoreFn
    mask: Mask | None
    bias: Bias | None
    normalize: norm.Normalizer
    dropout: float
    modifier: WeightModifier | None
    return_weights: bool
    return_scores: bool
    batch_shape: tuple[int, ...]
    group: Any = None

    @classmethod
    def build(
        cls,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        score: str | sc.ScoreFn = "scaled_dot",
        mask: MaskLike | None = None,
        bias: BiasLike | None = None,
        normalize: norm.NormalizeArg = "softmax",
        scale: float | None = None,
        dropout: float = 0.0,
        modifier: WeightModifier | None = None,
        return_weights: bool = False,
        return_scores: bool = False,
        group: Any = None,
    ) -> AttentionCall:
        """Check and resolve the arguments of :func:`qkv.attend` (see there); errors name the argument."""
        q, k, v = check_tensor("q", q), check_tensor("k", k), check_tensor("v", v)
        if not (q.dtype == k.dtype == v.dtype):
            raise TypeError(f"q, k and v must share a dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
        if not (q.device == k.device == v.device):
            raise ValueError(f"q, k and v must be on one device, got q {q.device}, k {k.device}, v {v.device}")
        if k.shape[-2] != v.shape[-2]:
            raise ValueError(
                f"k and v must have the same length S: got k {tuple(k.shape)} (S={k.shape[-2]}) "
                f"and v {tuple(v.shape)} (S={v.shape[-2]})"
            )
        batch_shape = tuple(q.shape[:-2])
        if not (batch_shape == k.shape[:-2] == v.shape[:-2]):  # equal leading dims (the usual case) broadcast
            try:
                batch_shape = tuple(torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
            except RuntimeError:
                raise ValueError(
                    f"leading dims of q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} do not broadcast"
                ) from None
        L, S = q.shape[-2], k.shape[-2]
        if group is not None:  # sequence-parallel shards: masks and biases describe the whole plane
            group.check_length("q", L)
            group.check_length("k", S)
            L, S = group.global_length(L), group.global_length(S)
        target = (*batch_shape, L, S)

        score_fn = sc.resolve(score, scale)
        # fast kernels may never call the score: check widths here (the built-in dot scores need equal widths only)
        if sc.structure(score_fn) == "dot" and not (type(score_fn) in _SAME_WIDTH and q.shape[-1] == k.shape[-1]):
            try:
                score_fn.dot_features(q[..., :0, :], k[..., :0, :])  # cheap: no query or key rows
            except ValueError:
                with torch.no_grad():
                    score_fn.dot_features(q, k)  # raises again, naming the real shapes
                raise
        normalizer = norm.resolve(normalize)
        dropout = check_dropout(dropout)
        lazy_mask = None
        if mask is not None:
            if not isinstance(mask, (Tensor, Mask)):
                raise TypeError(f"mask must be a bool tensor or a qkv.masks.Mask, got {type(mask).__name__}")
            lazy_mask = as_mask(mask)
            lazy_mask.check("mask", target, L=L, S=S, device=q.device)
        lazy_bias = None
        if bias is not None:
            if not isinstance(bias, (Tensor, Bias)):
                raise TypeError(
                    f"bias must be a floating-point tensor (additive scores) or a qkv Bias, got {type(bias).__name__}"
                )
            lazy_bias = as_bias(bias)
            lazy_bias.check("bias", target, L=L, S=S, device=q.device)
        if modifier is not None:
            if not isinstance(modifier, WeightModifier):
                raise TypeError(
                    f"modifier must be a qkv.functional.modifiers.WeightModifier, got {type(modifier).__name__}"
                )
            modifier.check("modifier", target, L=L, S=S, device=q.device)
            support = modifier.support()
            if support is not None:
                lazy_mask = support if lazy_mask is None else lazy_mask & support
        return cls(
            q=q, k=k, v=v, score=score_fn, mask=lazy_mask, bias=lazy_bias, normalize=normalizer,
            dropout=dropout, modifier=modifier, return_weights=check_flag("return_weights", return_weights),
            return_scores=check_flag("return_scores", return_scores), batch_shape=batch_shape, group=group,
        )

    @property
    def L(self) -> int:
        return self.q.shape[-2]

    @property
    def S(self) -> int:
        return self.k.shape[-2]

    @property
    def kind(self) -> str:
        """The score's structure: ``"dot"``, ``"additive"`` or ``"pairwise"`` (see ``scores.structure``)."""
        return sc.structure(self.score)

    @property
    def is_softmax(self) -> bool:
        return isinstance(self.normalize, norm.Softmax)
