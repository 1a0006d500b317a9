"""Fused Triton kernels for attention beyond dot products: additive, bilinear, local-p, windows.

Shape legend: ``...`` broadcast batch dims (typically ``(B, H)``); ``L`` queries, ``S`` keys.

``attend(..., backend="triton")`` runs them; ``backend="auto"`` picks them on CUDA tensors for the
additive score, the local-p Gaussian and narrow windows (:func:`qkv.kernels.choose`). Forward and
backward follow FlashAttention-2 (Dao 2023): online softmax over key tiles, ``lse`` kept, each tile's
weights recomputed in the backward pass. The kernels fuse

* the additive score :math:`v^\\top \\tanh(W q + U k)` (Bahdanau et al. 2015, eq. 6): the projections
  are computed once outside, the tanh pair term tile by tile, never an ``(L, S, A)`` tensor;
* dot-kind scores (dot, scaled dot, cosine, bilinear :math:`q^\\top W k` = a dot of ``W q`` and ``k``);
* Luong's local-p Gaussian (Luong et al. 2015, eq. 9-10) after the softmax, and windowed masks
  (causal, window, local window, padding, bool tensors), visiting only the tiles in a query tile's
  key range; bias tensors. (Other masks and lazy biases are materialised as tensors first.)

``triton`` is optional (a test dependency, Linux only): this package imports it only when a kernel
runs. Without a GPU, Triton's interpreter (``TRITON_INTERPRET=1``) runs the same kernels on CPU
tensors; that is how the tests check them.

* :mod:`~qkv.kernels.triton.plan` — what the kernels take (:func:`triton_unsupported`) and a call's launch spec;
* :mod:`~qkv.kernels.triton.bounds` — the tile ranges (skipping);
* :mod:`~qkv.kernels.triton.tiles`, :mod:`~qkv.kernels.triton.forward`, :mod:`~qkv.kernels.triton.backward` —
  the ``@triton.jit`` code (``auto`` never picks it on a CPU; nothing here has been timed on a GPU yet);
* :mod:`~qkv.kernels.triton.autograd` — the autograd Function and the launches.
"""

from __future__ import annotations

from qkv.functional.output import AttentionOutput
from qkv.kernels.call import AttentionCall
from qkv.kernels.triton.plan import interpreting, triton_available, triton_unsupported

__all__ = ["interpreting", "triton_available", "triton_backend", "triton_unsupported"]


def triton_backend(call: AttentionCall) -> AttentionOutput:
    """Backend entry point: ``attend(..., backend="triton")`` (imports triton on first use)."""
    from qkv.kernels.triton.autograd import triton_attention

    return triton_attention(call)
