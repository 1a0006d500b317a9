"""Helpers shared by the layers: building a score argument, checking inputs, and the one output shape rule."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from qkv.functional.checks import check_positive_int
from qkv.functional.output import AttentionOutput
from qkv.layers import scores as score_modules

ScoreArg = str | nn.Module


def build_score(score: ScoreArg, *, query_dim: int, key_dim: int, hidden_dim: int | None = None) -> ScoreArg:
    """A score name built once as a module (:func:`qkv.layers.scores.make`); callables pass through."""
    if hidden_dim is not None:
        check_positive_int("hidden_dim", hidden_dim)
    if isinstance(score, str):
        return score_modules.make(score, query_dim=query_dim, key_dim=key_dim, hidden_dim=hidden_dim)
    if callable(score):
        return score
    raise TypeError(f"score must be a name or a callable (q, k) -> scores, got {type(score).__name__}")


def check_input(name: str, x: object, *, dims: tuple[int, ...], width: int | None = None) -> Tensor:
    """Check a module input's type, rank and last dim; name them in the error."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() not in dims:
        raise ValueError(f"{name} must have {' or '.join(map(str, dims))} dims, got shape {tuple(x.shape)}")
    if width is not None and x.shape[-1] != width:
        raise ValueError(f"{name} must have last dim {width}, got shape {tuple(x.shape)}")
    return x


def check_inputs(
    query: object, key: object, value: object, *, query_dim: int, key_dim: int, value_dim: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """A layer's ``(query, key, value)``: ``key`` defaults to ``query`` and ``value`` to ``key``; each is checked.

    ``query (B, L, query_dim)``, ``key (B, S, key_dim)``, ``value (B, S, value_dim)`` (any width when
    ``value_dim`` is ``None``); errors name the argument (and say when it was defaulted).
    """
    query = check_input("query", query, dims=(3,), width=query_dim)
    key = check_input("key" if key is not None else "key (defaulted to query)", query if key is None else key,
                      dims=(3,), width=key_dim)
    value = check_input("value" if value is not None else "value (defaulted to key)", key if value is None else value,
                        dims=(3,), width=value_dim)
    if key.shape[0] != query.shape[0] or value.shape[:2] != key.shape[:2]:
        raise ValueError(
            f"query (B, L, Dq), key (B, S, Dk) and value (B, S, Dv) must agree on B and S: got "
            f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        )
    return query, key, value


def with_output(out: AttentionOutput, output: Tensor) -> AttentionOutput:
    """``out`` with a new ``output`` and every other field (weights, scores, log_prob, state) passed through."""
    return dataclasses.replace(out, output=output)


def check_keep(name: str, keep: object, x: Tensor) -> Tensor | None:
    """``None`` or a bool ``(B, L)`` tensor matching ``x (B, L, ·)``; otherwise an error naming ``name``."""
    if keep is None:
        return None
    if not isinstance(keep, Tensor) or keep.dtype != torch.bool:
        got = keep.dtype if isinstance(keep, Tensor) else type(keep).__name__
        raise TypeError(f"{name} must be a bool tensor (B, L), True = a real position, got {got}")
    if tuple(keep.shape) != tuple(x.shape[:2]):
        raise ValueError(f"{name} must have shape (B, L) = {tuple(x.shape[:2])} for an input of shape "
                         f"{tuple(x.shape)}, got {tuple(keep.shape)}")
    return keep
