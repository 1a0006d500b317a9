"""The reference kernel: materialise the scores, mask, normalise, read.

Shape legend: ``...`` broadcast batch dims (typically ``(B, H)``), ``L`` queries, ``S`` keys,
``Dv`` value width. Holds the full ``(..., L, S)`` scores (and, for the additive score, the
``(..., L, S, A)`` hidden tensor): simple, general, and the baseline every faster kernel is
checked against. Half-precision dot-product scores are accumulated in float32 (as SDPA does), so
large logits do not overflow; the weights and output come back in the inputs' dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qkv.functional.output import AttentionOutput
from qkv.kernels.call import AttentionCall

__all__ = ["naive", "naive_scores"]

_HALF = (torch.float16, torch.bfloat16)


def naive_scores(call: AttentionCall) -> torch.Tensor:
    """The raw scores ``(..., L, S)``: float32 for half-precision dot products, else the inputs' dtype."""
    q, k = call.q, call.k
    if call.kind == "dot" and q.dtype in _HALF:
        qf, kf, c = call.score.dot_features(q, k)
        return torch.einsum("...ld,...sd->...ls", qf.float() * c, kf.float())  # (..., L, S)
    scores = call.score(q, k)  # (..., L, S)
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape[-2:]) != (call.L, call.S):
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"score must return scores of shape (..., L, S) = (..., {call.L}, {call.S}), got {got}")
    return scores


def naive(call: AttentionCall) -> AttentionOutput:
    """Compute attention by the three steps of seed 001 §8.2: score, normalise, read."""
    v = call.v
    scores = naive_scores(call)
    if call.bias is not None:
        scores = scores + call.bias.materialize(call.L, call.S, device=v.device).to(scores.dtype)
    mask = None if call.mask is None else call.mask.materialize(call.L, call.S, device=v.device)
    weights, log_prob = call.normalize.normalize(scores, mask)
    if call.modifier is not None:  # e.g. Luong eq. 10: the Gaussian multiplies the weights, no renormalising
        weights = weights * call.modifier.materialize(call.L, call.S, device=v.device).to(weights.dtype)
    weights = weights.to(v.dtype)
    read = F.dropout(weights, call.dropout) if call.dropout > 0 else weights
    output = torch.einsum("...ls,...sv->...lv", read, v)  # (..., L, Dv)
    return AttentionOutput(
        output=output,
        weights=weights if call.return_weights else None,
        scores=scores.to(v.dtype) if call.return_scores else None,
        log_prob=None if log_prob is None else log_prob.to(v.dtype),
    )
