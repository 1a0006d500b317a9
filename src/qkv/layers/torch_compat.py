"""Adapters between ``torch.nn.MultiheadAttention``'s conventions and qkv's.

Shape legend: ``B`` batch, ``H`` heads, ``L`` queries, ``S`` keys.

torch's masks mean the opposite of qkv's: a ``key_padding_mask`` or bool ``attn_mask`` is
**True = ignore**, a float ``attn_mask`` is added to the scores, and a 3-D ``attn_mask`` is
``(B·H, L, S)``; torch also averages the weights over heads by default. qkv's layers take
``mask`` (True = may attend), ``bias`` and return per-head weights; these helpers are the only
place where torch's conventions are translated.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qkv.functional.masks import Mask, and_, causal, key_padding

__all__ = ["average_heads", "from_torch_masks"]


def from_torch_masks(
    *,
    num_heads: int,
    key_padding_mask: Tensor | None = None,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
) -> tuple[Mask | None, Tensor | None]:
    """torch's ``key_padding_mask`` / ``attn_mask`` / ``is_causal`` as qkv's ``(mask, bias)``.

    Args:
        num_heads: ``H``, to unflatten a 3-D ``(B·H, L, S)`` ``attn_mask``.
        key_padding_mask: ``(B, S)``, bool (True = padding) or float (added).
        attn_mask: ``(L, S)`` or ``(B·H, L, S)``, bool (True = forbidden) or float (added).
        is_causal: torch's top-left causal mask.
    """
    masks: list[Mask] = []
    biases: list[Tensor] = []
    if key_padding_mask is not None:
        if key_padding_mask.dtype == torch.bool:
            masks.append(key_padding(~key_padding_mask))
        else:
            biases.append(key_padding_mask[:, None, None, :])  # (B, 1, 1, S)
    if attn_mask is not None:
        if attn_mask.dim() == 3:
            attn_mask = attn_mask.unflatten(0, (-1, num_heads))  # (B·H, L, S) -> (B, H, L, S)
        if attn_mask.dtype == torch.bool:
            masks.append(and_(~attn_mask))
        else:
            biases.append(attn_mask)
    if is_causal:
        masks.append(causal(align="top_left"))
    mask = None if not masks else and_(*masks)
    bias = None if not biases else sum(biases[1:], biases[0])
    return mask, bias


def average_heads(weights: Tensor) -> Tensor:
    """Per-head weights ``(B, H, L, S)`` averaged over heads ``(B, L, S)``, as torch returns by default."""
    return weights.mean(dim=1)
