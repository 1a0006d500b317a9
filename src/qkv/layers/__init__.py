"""Thin ``nn.Module`` s over :mod:`qkv.functional`."""

from qkv.layers.attention import Attention
from qkv.layers.local import LocalAttention
from qkv.layers.multihead import MultiHeadAttention

__all__ = ["Attention", "LocalAttention", "MultiHeadAttention"]
