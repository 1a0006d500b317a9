"""How :func:`qkv.attend` is computed: a registry of backends and the ``auto`` choice.

A backend is a function ``(AttentionCall) -> AttentionOutput`` together with a predicate
saying which calls it supports. ``naive`` supports everything and is the reference.

* ``naive`` — materialise the scores (:mod:`qkv.kernels.naive`); the only backend that returns
  weights or scores, and the only one for non-softmax normalizers.
* ``sdpa`` — ``torch.nn.functional.scaled_dot_product_attention`` for dot-product scores.
* ``tiled`` — online softmax over tiles, any score, linear memory, masked tiles skipped
  (:mod:`qkv.kernels.tiled`).
* ``flex`` — FlexAttention (``torch.compile``) for dot-product scores with lazy masks and
  biases (:mod:`qkv.kernels.flex`); where it cannot run (CPU backward, float64, local-p, small
  CPU problems) it hands the call to ``tiled``. ``auto`` does not pick it.

``auto`` (:func:`choose`) keeps SDPA for dense dot-product softmax attention, switches to the
tiled kernel when a mask leaves only a small band of keys (windows) or when the naive tensor
would be large (non-dot scores, local-p), and uses ``naive`` when weights are requested.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from qkv.functional.output import AttentionOutput
from qkv.kernels.call import AttentionCall
from qkv.kernels.flex import flex_backend, flex_supports
from qkv.kernels.naive import naive
from qkv.kernels.sdpa import sdpa, sdpa_supports
from qkv.kernels.tiled import DEFAULT_TILES, score_kind, tiled_backend, tiled_supports

__all__ = ["BACKENDS", "TILED_MAX_VISITED", "TILED_MIN_ELEMENTS", "AttentionCall", "Backend", "choose", "run"]

#: ``auto`` prefers the tiled kernel to a materialising one once the largest tensor the latter
#: would hold (``(..., L, S)``, or ``(..., L, S, A)`` for the additive score) has this many
#: elements. Measured on a 2-core CPU (benchmarks/RESULTS.md): below it Python's per-tile
#: overhead dominates; above it the tiled kernel is faster as well as smaller.
TILED_MIN_ELEMENTS = 1 << 22

#: ``auto`` prefers the tiled kernel to SDPA for a dot-product score when the mask's key bounds
#: leave at most this fraction of the ``(L, S)`` plane to visit (a window or a band) and the
#: problem is large: tile skipping then beats SDPA's dense masked computation.
TILED_MAX_VISITED = 0.25


@dataclass(frozen=True)
class Backend:
    run: Callable[[AttentionCall], AttentionOutput]
    supports: Callable[[AttentionCall], bool]


BACKENDS: dict[str, Backend] = {
    "naive": Backend(naive, lambda call: True),
    "sdpa": Backend(sdpa, sdpa_supports),
    "tiled": Backend(tiled_backend, tiled_supports),
    "flex": Backend(flex_backend, flex_supports),
}


def _visited_fraction(call: AttentionCall) -> float:
    """The fraction of the ``(L, S)`` plane inside the mask's key bounds, by query tile."""
    mask = call.full_mask()
    if mask is None:
        return 1.0
    tq = DEFAULT_TILES["dot"][0]
    visited = 0
    for q0 in range(0, call.L, tq):
        q1 = min(call.L, q0 + tq)
        lo, hi = mask.kv_bounds(q0, q1, L=call.L, S=call.S)
        visited += (q1 - q0) * max(0, hi - lo)
    return visited / max(1, call.L * call.S)


def _params_known(call: AttentionCall) -> bool:
    """Whether the tiled kernel can see every tensor a callable score depends on."""
    if score_kind(call) != "callable" or isinstance(call.score_spec, nn.Module):
        return True
    # a closure may capture tensors that require grad even when q, k and v do not
    return not torch.is_grad_enabled()


def choose(call: AttentionCall) -> str:
    """The ``auto`` backend: the fastest one that supports the call.

    * weights or scores requested, dropout with a non-dot score, or a non-softmax normalizer:
      ``naive`` (or ``sdpa`` where it supports the call);
    * dot-product softmax: ``sdpa``, except that a large problem whose mask (window, band,
      local window) leaves at most :data:`TILED_MAX_VISITED` of the plane goes to ``tiled``;
    * any other softmax score (additive, bilinear, cosine, modules, callables) and local-p:
      ``tiled`` once the naive tensor would reach :data:`TILED_MIN_ELEMENTS` elements, else
      ``naive``. A plain-function score is kept on ``naive`` while gradients are needed (the
      tiled kernel cannot see tensors a closure captures; an ``nn.Module``'s parameters it can).
    """
    n = math.prod(call.batch_shape) * call.L * call.S
    if sdpa_supports(call):
        big = n >= TILED_MIN_ELEMENTS
        if big and call.mask is not None and tiled_supports(call) and _visited_fraction(call) <= TILED_MAX_VISITED:
            return "tiled"
        return "sdpa"
    if tiled_supports(call) and _params_known(call):
        width = call.q.shape[-1] if score_kind(call) == "additive" else 1
        if n * width >= TILED_MIN_ELEMENTS:
            return "tiled"
    return "naive"


def run(call: AttentionCall, backend: str) -> AttentionOutput:
    name = choose(call) if backend == "auto" else backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {['auto', *BACKENDS]}, got {backend!r}")
    chosen = BACKENDS[name]
    if not chosen.supports(call):
        raise ValueError(f"backend {name!r} does not support this call; use backend='auto' or 'naive'")
    return chosen.run(call)
