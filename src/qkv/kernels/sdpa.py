"""Dispatch to ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient / math).

Shape legend: ``(B, H, L, D)`` queries, ``(B, H, S, D)`` keys, ``(B, H, S, Dv)`` values.

SDPA returns NaN for a query row whose keys are all masked; qkv's convention is zeros. We let
such rows attend everywhere (so nothing in forward or backward is NaN) and zero their output
afterwards, which also zeroes their gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qkv.functional.output import AttentionOutput
from qkv.kernels.call import AttentionCall
from qkv.masks import _Causal

__all__ = ["sdpa", "sdpa_supports"]


def sdpa_supports(call: AttentionCall) -> bool:
    """SDPA computes softmax attention over dot-product scores, without returning weights."""
    return (
        call.is_dot_product
        and call.normalize == "softmax"
        and not call.return_weights
        and not call.return_scores
        and call.local_p is None
    )


def sdpa(call: AttentionCall) -> AttentionOutput:
    q, k, v = call.q, call.k, call.v
    shape = call.batch_shape
    q = q.expand(*shape, *q.shape[-2:])
    k = k.expand(*shape, *k.shape[-2:])
    v = v.expand(*shape, *v.shape[-2:])
    scale = call.sdpa_scale()
    bias = None if call.bias is None else call.lazy_bias.materialize(call.L, call.S, device=q.device)

    if bias is None and isinstance(call.mask, _Causal) and call.mask.align == "top_left" and call.L <= call.S:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=call.dropout, is_causal=True, scale=scale)
        return AttentionOutput(output=out)
    if call.mask is None and bias is None:
        return AttentionOutput(output=F.scaled_dot_product_attention(q, k, v, dropout_p=call.dropout, scale=scale))

    allowed = None if call.mask is None else call.mask.materialize(call.L, call.S, device=q.device)
    if bias is not None:
        finite = bias > float("-inf")
        allowed = finite if allowed is None else allowed & finite
    any_allowed = allowed.any(dim=-1, keepdim=True)  # (..., L, 1)
    attendable = allowed | ~any_allowed  # empty rows attend everywhere, zeroed below
    if bias is None:
        attn_mask = attendable
    else:
        bias = torch.where(attendable & any_allowed, bias, torch.zeros_like(bias))
        attn_mask = bias.to(q.dtype).masked_fill(~attendable, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=call.dropout, scale=scale)
    return AttentionOutput(output=out * any_allowed.to(out.dtype))
