"""The Neural Turing Machine (Graves, Wayne and Danihelka 2014, arXiv:1410.5401).

Shape legend (as in :mod:`~qkv.memory.ntm.machine`): ``B`` batch, ``T`` time steps, ``X``/``Y`` input/output width,
``N`` memory slots, ``M`` slot width, ``R``/``W`` read/write heads, ``H = R + W`` heads, ``K = 2k + 1`` shifts.

* :mod:`~qkv.memory.ntm.addressing` — eq. 5-9 as small functions; a head's addressing and read are one call of
  :func:`qkv.attend` (β-cosine score, location addressing as the normaliser); the numerical safeguards;
* :mod:`~qkv.memory.ntm.readwrite` — eq. 2-4: read as a weighted sum, write by erase and add;
* :mod:`~qkv.memory.ntm.controller` — feed-forward and LSTM controllers;
* :mod:`~qkv.memory.ntm.gradclip` — the per-step bound of the gradient through the state (the NaN safeguard);
* :mod:`~qkv.memory.ntm.machine` — :class:`NTM`, any number of read and write heads, per-sequence memory.
"""

from qkv.memory.ntm.addressing import (
    KeyStrengthCosine,
    LocationAddressing,
    address,
    content_weights,
    interpolate,
    sharpen,
    shift,
)
from qkv.memory.ntm.controller import FeedforwardController, LSTMController
from qkv.memory.ntm.machine import NTM, NTMOutput, NTMState, NTMTrace
from qkv.memory.ntm.readwrite import read, write

__all__ = [
    "NTM",
    "FeedforwardController",
    "KeyStrengthCosine",
    "LSTMController",
    "LocationAddressing",
    "NTMOutput",
    "NTMState",
    "NTMTrace",
    "address",
    "content_weights",
    "interpolate",
    "read",
    "sharpen",
    "shift",
    "write",
]
