"""How :func:`qkv.attend` is computed: a registry of backends and the ``auto`` choice.

A backend is a function ``(AttentionCall) -> AttentionOutput`` together with a function saying
why it cannot take a call (``None`` when it can). ``naive`` supports everything and is the
reference. Kernels know no particular mask, bias or score: they use the lazy protocol of
:mod:`qkv.functional.lazy` and the score's declared structure. (The only type checks left are
on base classes: the tiled kernel hands a plain :class:`~qkv.functional.biases.TensorBias`'s
tensor to autograd directly, and differentiates an ``nn.Module`` score's parameters.)

* ``naive`` — materialise the scores (:mod:`qkv.kernels.naive`); the only backend that returns
  weights or scores, and the only one for non-softmax normalizers.
* ``sdpa`` — ``torch.nn.functional.scaled_dot_product_attention`` for scores of kind ``"dot"``.
* ``tiled`` — online softmax over tiles, any score, linear memory, masked tiles skipped
  (:mod:`qkv.kernels.tiled`).
* ``ring`` — ring attention over a ``torch.distributed`` group: q, k, v are this rank's sequence
  shards (:mod:`qkv.kernels.ring`); any score the tiled kernel takes. ``auto`` never picks it.
* ``flex`` — FlexAttention (``torch.compile``) for scores of kind ``"dot"`` with lazy masks and
  biases (:mod:`qkv.kernels.flex`); where it cannot run (CPU backward, float64, a weight
  modifier, small CPU problems) it hands the call to ``tiled``. ``auto`` does not pick it.

* ``triton`` — fused Triton kernels (:mod:`qkv.kernels.triton`): additive and dot-kind scores,
  the local-p Gaussian, windowed masks; CUDA tensors (or CPU under ``TRITON_INTERPRET=1``).

``auto`` (:func:`choose`) keeps SDPA for dense dot-product softmax attention, switches to the
tiled kernel when a mask leaves only a small band of keys (windows) or when the naive tensor
would be large (non-dot scores, weight modifiers), and uses ``naive`` when weights are requested.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from qkv.functional.output import AttentionOutput
from qkv.kernels.call import AttentionCall
from qkv.kernels.flex import flex_backend, flex_unsupported
from qkv.kernels.naive import naive
from qkv.kernels.ring import ring_backend, ring_unsupported
from qkv.kernels.sdpa import sdpa, sdpa_unsupported
from qkv.kernels.tiled import DEFAULT_TILES, tiled_backend, tiled_unsupported
from qkv.kernels.triton import triton_backend, triton_unsupported

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
    unsupported: Callable[[AttentionCall], str | None]  # why it cannot take a call; None when it can


BACKENDS: dict[str, Backend] = {
    "naive": Backend(naive, lambda call: None),
    "sdpa": Backend(sdpa, sdpa_unsupported),
    "tiled": Backend(tiled_backend, tiled_unsupported),
    "flex": Backend(flex_backend, flex_unsupported),
    "ring": Backend(ring_backend, ring_unsupported),
    "triton": Backend(triton_backend, triton_unsupported),
}


def _visited_fraction(call: AttentionCall) -> float:
    """The fraction of the ``(L, S)`` plane inside the mask's key bounds, by query tile."""
    if call.mask is None:
        return 1.0
    tq = DEFAULT_TILES["dot"][0]
    visited = 0
    for q0 in range(0, call.L, tq):
        q1 = min(call.L, q0 + tq)
        lo, hi = call.mask.kv_bounds(q0, q1, L=call.L, S=call.S)
        visited += (q1 - q0) * max(0, hi - lo)
    return visited / max(1, call.L * call.S)


def choose(call: AttentionCall) -> str:
    """The ``auto`` backend: the fastest one that supports the call.

    * CUDA tensors and a call the Triton kernels take: ``triton`` for the additive score, the local-p
      Gaussian and narrow windows (:func:`_triton_wins`; by design, not yet measured on a GPU);
    * weights or scores requested, dropout with a non-dot score, or a non-softmax normalizer:
      ``naive`` (or ``sdpa`` where it supports the call);
    * dot-product softmax: ``sdpa``, except that a large problem whose mask (window, band,
      local window) leaves at most :data:`TILED_MAX_VISITED` of the plane goes to ``tiled``;
    * any other softmax score (additive, modules, callables) and weight modifiers: ``tiled`` once
      the naive tensor — ``(..., L, S)``, or ``(..., L, S, A)`` for an additive score of hidden
      width ``A`` — would reach :data:`TILED_MIN_ELEMENTS` elements, else ``naive``. (The tiled
      kernel refuses a plain-function score while gradients are on: it cannot see the tensors a
      closure captures; an ``nn.Module``'s parameters it can.)
    """
    n = math.prod(call.batch_shape) * call.L * call.S
    if call.q.device.type == "cuda" and _triton_wins(call, n):
        return "triton"
    if sdpa_unsupported(call) is None:
        big = n >= TILED_MIN_ELEMENTS
        if big and call.mask is not None and tiled_unsupported(call) is None and (
            _visited_fraction(call) <= TILED_MAX_VISITED
        ):
            return "tiled"
        return "sdpa"
    if tiled_unsupported(call) is None:
        width = getattr(call.score, "hidden_dim", 1) if call.kind == "additive" else 1  # A of (L, S, A)
        if n * width >= TILED_MIN_ELEMENTS:
            return "tiled"
    return "naive"


def _triton_wins(call: AttentionCall, n: int) -> bool:
    """Whether ``auto`` sends a CUDA call to the Triton kernels (a choice by design, not yet measured on a GPU).

    The additive score and the local-p Gaussian have no other fused CUDA kernel (naive holds
    ``(..., L, S, A)`` or ``(..., L, S)``); a dot product goes to Triton only under a narrow mask (a window,
    a band, a local window: at most :data:`TILED_MAX_VISITED` of a large plane), where skipping tiles beats
    SDPA's dense masked pass. Dense dot products (bilinear included) stay on SDPA's flash kernels. Small
    problems (a decoder's one-query step) stay where they are: the same size rule as the tiled kernel's.
    """
    if triton_unsupported(call) is not None:
        return False
    if call.kind == "additive" or call.modifier is not None:
        width = getattr(call.score, "hidden_dim", 1) if call.kind == "additive" else 1  # A of (L, S, A)
        return n * width >= TILED_MIN_ELEMENTS
    return n >= TILED_MIN_ELEMENTS and call.mask is not None and _visited_fraction(call) <= TILED_MAX_VISITED


def run(call: AttentionCall, backend: str) -> AttentionOutput:
    """Compute ``call`` with ``backend`` (a name of :data:`BACKENDS`, or ``"auto"``: :func:`choose`)."""
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {['auto', *BACKENDS]}, got {backend!r}")
    if backend == "auto":
        name = choose(call)  # only ever a backend that supports the call: no second check (nor probe)
    elif reason := BACKENDS[backend].unsupported(call):
        raise ValueError(f"backend {backend!r} cannot compute this call: {reason}; use backend='auto' or 'naive'")
    else:
        name = backend
    if call.S == 0:  # no keys at all: every row is fully masked
        return _no_keys(call)
    return BACKENDS[name].run(call)


def _no_keys(call: AttentionCall) -> AttentionOutput:
    """Zero weights and a zero output (still part of the graph) when there are no keys."""
    q, k, v = call.q, call.k, call.v
    zeros = q.new_zeros((*call.batch_shape, call.L, 0))  # (..., L, 0)
    connected = (q.sum() + k.sum() + v.sum()) * 0
    return AttentionOutput(
        output=v.new_zeros((*call.batch_shape, call.L, v.shape[-1])) + connected,  # (..., L, Dv)
        weights=zeros if call.return_weights else None,
        scores=zeros if call.return_scores else None,
        log_prob=q.new_zeros((*call.batch_shape, call.L)) if call.normalize.name == "sample" else None,
    )
