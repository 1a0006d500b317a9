"""qkv: attention mechanisms and external memory on PyTorch.

The core is :func:`attend` — score, mask, normalise, read — and the layers built on it.
"""

from qkv import biases, masks, scores
from qkv.functional import AttentionOutput, attend
from qkv.layers import Attention, LocalAttention, MultiHeadAttention

__all__ = [
    "Attention",
    "AttentionOutput",
    "LocalAttention",
    "MultiHeadAttention",
    "attend",
    "biases",
    "masks",
    "scores",
]
__version__ = "0.1.0"
