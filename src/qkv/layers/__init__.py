"""Thin ``nn.Module`` s over :mod:`qkv.functional`, all with one calling convention.

Every attention layer is called as
``layer(query, key=None, value=None, *, mask=None, bias=None, return_weights=False, ...)`` and
returns an :class:`qkv.AttentionOutput` whose weights are per head ``(B, H, L, S)`` (see
ARCHITECTURE.md). :data:`ATTENTION_LAYERS` lists them; the contract test runs over that list.
"""

from qkv.layers import scores, torch_compat
from qkv.layers.attention import Attention
from qkv.layers.local import LocalAttention
from qkv.layers.multihead import MultiHeadAttention

#: Every public attention layer; each follows the calling convention above.
ATTENTION_LAYERS = (Attention, LocalAttention, MultiHeadAttention)

__all__ = ["ATTENTION_LAYERS", "Attention", "LocalAttention", "MultiHeadAttention", "scores", "torch_compat"]
