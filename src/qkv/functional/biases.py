"""Additive score biases, lazily described.

Shape legend: ``B`` batch, ``H`` heads, ``L`` queries, ``S`` keys; a bias is broadcastable to
``(B, H, L, S)`` and is *added* to the scores before masking and normalisation (``-inf``
forbids a key, like a mask).

A :class:`Bias` is a :class:`~qkv.functional.lazy.Lazy` description, like a mask: kernels
evaluate it tile by tile (the tiled kernel never builds an ``(L, S)`` bias), ask for its
FlexAttention form, and pass its :meth:`~qkv.functional.lazy.Lazy.parameters` to autograd.
Plain float tensors of any rank that broadcasts are accepted wherever a bias is
(:class:`TensorBias`); biases add with ``+``. Positional biases (ALiBi, learned relative
positions) live in :mod:`qkv.positional`.
"""

from __future__ import annotations

import operator

from torch import Tensor

from qkv.functional.lazy import Combination, Lazy, TensorLazy

__all__ = ["Bias", "BiasLike", "Sum", "TensorBias", "as_bias"]


class Bias(Lazy):
    """A lazily evaluated additive bias (float), broadcastable to ``(B, H, L, S)``."""

    def __add__(self, other: BiasLike) -> Bias:
        return Sum(self, as_bias(other))

    def __radd__(self, other: BiasLike) -> Bias:
        return Sum(as_bias(other), self)


BiasLike = Bias | Tensor


class TensorBias(TensorLazy, Bias):
    """A float tensor broadcastable to ``(B, H, L, S)`` (any rank from 0), seen as a :class:`Bias`."""

    def __init__(self, tensor: Tensor) -> None:
        if not isinstance(tensor, Tensor) or not tensor.dtype.is_floating_point:
            got = tensor.dtype if isinstance(tensor, Tensor) else type(tensor).__name__
            raise TypeError(f"bias must be a floating-point tensor (additive scores) or a qkv Bias, got {got}")
        super().__init__(tensor)


class Sum(Combination, Bias):
    """The sum of biases."""

    op, symbol = operator.add, "+"


def as_bias(bias: BiasLike) -> Bias:
    """Wrap a float tensor as a :class:`Bias`; return a :class:`Bias` unchanged."""
    return bias if isinstance(bias, Bias) else TensorBias(bias)
