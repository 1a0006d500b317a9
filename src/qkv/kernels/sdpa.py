"""Dispatch to ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient / math).

Shape legend: ``(B, H, L, D)`` queries, ``(B, H, S, D)`` keys, ``(B, H, S, Dv)`` values.

SDPA computes softmax over a dot product; any score of kind ``"dot"`` qualifies once its
features are computed (dot, scaled dot, cosine, bilinear, and user scores declaring
``dot_features``). SDPA returns NaN for a query row whose keys are all masked; qkv's convention
is zeros. Such rows attend everywhere (so nothing in forward or backward is NaN) and their
output is zeroed afterwards, which also zeroes their gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qkv.functional.output import AttentionOutput
from qkv.kernels.call import AttentionCall

__all__ = ["sdpa", "sdpa_unsupported"]


def sdpa_unsupported(call: AttentionCall) -> str | None:
    """Why SDPA cannot compute ``call`` (``None`` when it can)."""
    if call.kind != "dot":
        return f"it computes dot-product scores only, and score {call.score!r} is of kind {call.kind!r}"
    if not call.is_softmax:
        return f"it computes softmax only, got normalize={call.normalize!r}"
    if call.return_weights or call.return_scores:
        return "it returns no weights or scores (return_weights/return_scores need backend='naive')"
    if call.modifier is not None:
        return f"it applies no weight modifier, got modifier={call.modifier!r}"
    return None


def sdpa(call: AttentionCall) -> AttentionOutput:
    qf, kf, scale = call.score.dot_features(call.q, call.k)
    shape = call.batch_shape
    q = qf.expand(*shape, *qf.shape[-2:])  # (..., L, D)
    k = kf.expand(*shape, *kf.shape[-2:])  # (..., S, D)
    v = call.v.expand(*shape, *call.v.shape[-2:])  # (..., S, Dv)
    bias = None if call.bias is None else call.bias.materialize(call.L, call.S, device=q.device)

    # torch's is_causal path returns NaN when scale == 0: take it only for a non-zero scale
    if bias is None and call.mask is not None and call.mask.is_causal(call.L, call.S) and scale != 0:
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
