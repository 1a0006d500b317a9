"""The reference kernel: materialise the scores, mask, normalise, read.

Shape legend: ``...`` broadcast batch dims (typically ``(B, H)``), ``L`` queries, ``S`` keys,
``Dv`` value width. Holds the full ``(..., L, S)`` scores (and, for the additive score, the
``(..., L, S, A)`` hidden tensor): simple, general, and the baseline every faster kernel is
checked against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qkv.functional import normalize as norm
from qkv.functional.output import AttentionOutput
from qkv.kernels.call import AttentionCall

__all__ = ["naive"]


def naive(call: AttentionCall) -> AttentionOutput:
    """Compute attention by the three steps of seed 001 §8.2: score, normalise, read."""
    q, k, v = call.q, call.k, call.v
    scores = call.score(q, k)  # (..., L, S)
    expected = (call.L, call.S)
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape[-2:]) != expected:
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"score must return scores of shape (..., L, S) = (..., {call.L}, {call.S}), got {got}")
    if call.bias is not None:
        scores = scores + call.lazy_bias.materialize(call.L, call.S, device=q.device).to(scores.dtype)
    full_mask = call.full_mask()
    mask = None if full_mask is None else full_mask.materialize(call.L, call.S, device=q.device)

    log_prob = None
    if call.normalize == "sample":
        weights, log_prob = norm.sample(scores, mask, generator=call.generator)
    elif call.normalize == "hard":
        weights = norm.hard(scores, mask, straight_through=call.straight_through)
    elif isinstance(call.normalize, str):
        weights = norm.NORMALIZERS[call.normalize](scores, mask)
    else:
        weights = call.normalize(scores, mask)
        if mask is not None:  # a user normalizer must not leak weight onto masked keys
            weights = weights.masked_fill(~mask, 0.0)
    if call.local_p is not None:  # Luong eq. 10: the Gaussian multiplies the weights, no renormalising
        weights = weights * call.local_p.materialize(call.S).to(weights.dtype)
    read = F.dropout(weights, call.dropout) if call.dropout > 0 else weights
    output = torch.einsum("...ls,...sv->...lv", read.to(v.dtype), v)  # (..., L, Dv)
    return AttentionOutput(
        output=output,
        weights=weights if call.return_weights else None,
        scores=scores if call.return_scores else None,
        log_prob=log_prob,
    )
