"""Hopfield networks: the classical binary network and the modern continuous one, whose update is attention.

* :mod:`~qkv.memory.hopfield.classical` — binary states, Hebbian / pseudo-inverse storage, energy,
  synchronous and asynchronous updates (seed 001 §8.6.1; Hopfield 1982).
* :mod:`~qkv.memory.hopfield.modern` — the update :math:`\\xi \\leftarrow X \\operatorname{softmax}(\\beta X^\\top\\xi)`
  as one call of :func:`qkv.attend`, the energy, separation (Ramsauer et al. 2020).
* layers following the layer contract: :class:`Hopfield` (association of two sets),
  :class:`HopfieldPooling` (learned state patterns pool a set), :class:`HopfieldLayer` (learned stored
  patterns: a lookup).
"""

from qkv.memory.hopfield import classical, modern
from qkv.memory.hopfield.association import Hopfield
from qkv.memory.hopfield.classical import ClassicalHopfield
from qkv.memory.hopfield.lookup import HopfieldLayer
from qkv.memory.hopfield.pooling import HopfieldPooling

__all__ = ["ClassicalHopfield", "Hopfield", "HopfieldLayer", "HopfieldPooling", "classical", "modern"]
