"""The value every attention call returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["AttentionOutput"]


@dataclass(frozen=True)
class AttentionOutput:
    """Result of :func:`qkv.attend` and of the attention layers.

    Attributes:
        output: ``(..., L, Dv)`` the read-out :math:`\\sum_j \\alpha_{ij} v_j`.
        weights: ``(..., L, S)`` the normalised attention weights :math:`\\alpha`, when requested.
        scores: ``(..., L, S)`` the raw scores (after ``bias``, before masking and
            normalisation), when requested.
        log_prob: ``(..., L)`` log-probability of the sampled key, for ``normalize="sample"``.
        state: layer state a layer returns alongside its read (e.g. a key/value cache for
            decoding, a memory after a write); ``None`` for :func:`qkv.attend` and stateless layers.
    """

    output: Tensor
    weights: Tensor | None = None
    scores: Tensor | None = None
    log_prob: Tensor | None = None
    state: object | None = None
