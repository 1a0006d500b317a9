"""External and associative memory built on :func:`qkv.attend`.

Hopfield networks (:mod:`qkv.memory.hopfield`): the classical binary network and the modern
continuous one (Ramsauer et al. 2020), whose update is one call of ``attend``.

:data:`ATTENTION_LAYERS` lists the memory layers that follow the layer contract exactly,
``forward(query, key=None, value=None, *, mask=None, bias=None, return_weights=False)``
(``tests/layers/test_contract.py`` and the fuzzer run over it); :data:`LEARNED_MEMORY_LAYERS` lists
those whose query (pooling) or keys and values (lookup) are learned parameters: they take the
contract's remaining arguments, with the same ``mask``/``bias``/``return_weights`` meaning and
per-head weights (``tests/memory/test_hopfield_layers.py`` checks them the same way).
:data:`MEMORY_MODELS` lists the memory models that are not attention layers (pointer networks, memory
networks, the NTM, stacks and queues): each says in its docstring which call of ``attend`` its read is,
and its tests check that identity.
"""

from qkv.memory import hopfield
from qkv.memory.content_set import NeuralSet
from qkv.memory.hopfield import ClassicalHopfield, Hopfield, HopfieldLayer, HopfieldPooling
from qkv.memory.memn2n import MemN2N
from qkv.memory.ntm import NTM
from qkv.memory.pointer import PointerDecoding, PointerNetwork
from qkv.memory.queue import NeuralQueue
from qkv.memory.stack import NeuralStack

#: Memory layers following the layer contract exactly (like ``qkv.layers.ATTENTION_LAYERS``).
ATTENTION_LAYERS = (Hopfield,)

#: Memory layers whose query (``HopfieldPooling``) or keys and values (``HopfieldLayer``) are learned.
LEARNED_MEMORY_LAYERS = (HopfieldPooling, HopfieldLayer)

#: Memory models that are not attention layers (their reads are calls of ``attend``, tested as such).
MEMORY_MODELS: tuple[type, ...] = (NeuralStack, NeuralQueue, NeuralSet, MemN2N, PointerNetwork, NTM)

__all__ = [
    "ATTENTION_LAYERS",
    "LEARNED_MEMORY_LAYERS",
    "MEMORY_MODELS",
    "NTM",
    "ClassicalHopfield",
    "Hopfield",
    "HopfieldLayer",
    "HopfieldPooling",
    "MemN2N",
    "NeuralQueue",
    "NeuralSet",
    "NeuralStack",
    "PointerDecoding",
    "PointerNetwork",
    "hopfield",
]
