"""How :func:`qkv.attend` is computed: a registry of backends and the ``auto`` choice.

A backend is a function ``(AttentionCall) -> AttentionOutput`` together with a predicate
saying which calls it supports. ``naive`` supports everything and is the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qkv.functional.output import AttentionOutput
from qkv.kernels.call import AttentionCall
from qkv.kernels.naive import naive
from qkv.kernels.sdpa import sdpa, sdpa_supports

__all__ = ["BACKENDS", "AttentionCall", "Backend", "choose", "run"]


@dataclass(frozen=True)
class Backend:
    run: Callable[[AttentionCall], AttentionOutput]
    supports: Callable[[AttentionCall], bool]


BACKENDS: dict[str, Backend] = {
    "naive": Backend(naive, lambda call: True),
    "sdpa": Backend(sdpa, sdpa_supports),
}


def choose(call: AttentionCall) -> str:
    """The ``auto`` backend: the fastest one that supports the call."""
    if sdpa_supports(call):
        return "sdpa"
    return "naive"


def run(call: AttentionCall, backend: str) -> AttentionOutput:
    name = choose(call) if backend == "auto" else backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {['auto', *BACKENDS]}, got {backend!r}")
    chosen = BACKENDS[name]
    if not chosen.supports(call):
        raise ValueError(f"backend {name!r} does not support this call; use backend='auto' or 'naive'")
    return chosen.run(call)
