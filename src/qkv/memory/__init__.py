"""External and associative memory built on :func:`qkv.attend`.

Hopfield networks (:mod:`qkv.memory.hopfield`): the classical binary network and the modern
continuous one (Ramsauer et al. 2020), whose update is one call of ``attend``.

:data:`ATTENTION_LAYERS` lists the memory layers that follow the layer contract exactly,
``forward(query, key=None, value=None, *, mask=None, bias=None, return_weights=False)``
(``tests/layers/test_contract.py`` and the fuzzer run over it); :data:`LEARNED_MEMORY_LAYERS` lists
those whose query (pooling) or keys and values (lookup) are learned parameters: they take the
contract's remaining arguments, with the same ``mask``/``bias``/``return_weights`` meaning and
per-head weights (``tests/memory/test_hopfield_layers.py`` checks them the same way).
"""

from qkv.memory import hopfield
from qkv.memory.hopfield import ClassicalHopfield, Hopfield, HopfieldLayer, HopfieldPooling

#: Memory layers following the layer contract exactly (like ``qkv.layers.ATTENTION_LAYERS``).
ATTENTION_LAYERS = (Hopfield,)

#: Memory layers whose query (``HopfieldPooling``) or keys and values (``HopfieldLayer``) are learned.
LEARNED_MEMORY_LAYERS = (HopfieldPooling, HopfieldLayer)

__all__ = [
    "ATTENTION_LAYERS",
    "LEARNED_MEMORY_LAYERS",
    "ClassicalHopfield",
    "Hopfield",
    "HopfieldLayer",
    "HopfieldPooling",
    "hopfield",
]
