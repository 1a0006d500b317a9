"""Thin ``nn.Module`` s over :mod:`qkv.functional`, all with one calling convention.

Every attention layer is called as
``layer(query, key=None, value=None, *, mask=None, bias=None, return_weights=False, ...)`` and
returns an :class:`qkv.AttentionOutput` whose weights are per head ``(B, H, L, S)`` (see
ARCHITECTURE.md). :data:`ATTENTION_LAYERS` lists them; the contract test runs over that list.
"""

from qkv.layers import (  # context_query ... trilinear: QANet's parts (modules, not attention layers)
    context_query,
    depthwise_conv,
    scores,
    span_pointer,
    stochastic_depth,
    torch_compat,
    trilinear,
)
from qkv.layers.attention import Attention
from qkv.layers.graph_attention import GraphAttention
from qkv.layers.local import LocalAttention
from qkv.layers.multi_representation import MultiRepresentationalAttention
from qkv.layers.multidimensional import MultiDimensionalAttention
from qkv.layers.multihead import MultiHeadAttention
from qkv.layers.pooling import AttentionPooling
from qkv.layers.structured import StructuredAttention

#: Every public attention layer; each follows the calling convention above.
ATTENTION_LAYERS = (Attention, GraphAttention, LocalAttention, MultiHeadAttention, StructuredAttention)

#: Pooling layers whose query is learned: the contract with ``query`` taken by the learned queries,
#: ``forward(key, value=None, *, mask=None, bias=None, return_weights=False)``, weights ``(B, H, Q, S)``;
#: ``tests/layers/test_pooling.py`` runs the contract's checks on them.
POOLING_LAYERS = (AttentionPooling, MultiDimensionalAttention)

#: Attention across several representations of each token (the survey's multi-representational attention):
#: ``forward(representations, *, keep=None, return_weights=False)``, weights ``(B, L, R)``;
#: ``tests/layers/test_multi_representation.py`` checks it.
REPRESENTATION_LAYERS = (MultiRepresentationalAttention,)

__all__ = [
    "ATTENTION_LAYERS",
    "POOLING_LAYERS",
    "REPRESENTATION_LAYERS",
    "Attention",
    "AttentionPooling",
    "GraphAttention",
    "LocalAttention",
    "MultiDimensionalAttention",
    "MultiHeadAttention",
    "MultiRepresentationalAttention",
    "StructuredAttention",
    "context_query",
    "depthwise_conv",
    "scores",
    "span_pointer",
    "stochastic_depth",
    "torch_compat",
    "trilinear",
]
