"""qkv: attention mechanisms and external memory on PyTorch.

The core is :func:`attend` — score, mask, normalise, read — and the layers built on it.
"""

from qkv import memory, positional
from qkv.functional import AttentionOutput, attend, masks
from qkv.layers import Attention, LocalAttention, MultiHeadAttention, scores

__all__ = [
    "Attention",
    "AttentionOutput",
    "LocalAttention",
    "MultiHeadAttention",
    "attend",
    "masks",
    "memory",
    "positional",
    "scores",
]
__version__ = "0.1.0"
