"""FlexAttention (``torch.nn.attention.flex_attention`` under ``torch.compile``) as a backend.

Shape legend: ``(B, H, L, D)`` queries, ``(B, H, S, D)`` keys, ``(B, H, S, Dv)`` values; ``b``,
``h``, ``q_idx``, ``kv_idx`` the index tensors FlexAttention passes to its modifiers.

FlexAttention (PyTorch 2.5+; He et al., "FlexAttention: the flexibility of PyTorch with the
performance of FlashAttention", 2024) compiles a fused kernel from a dot-product score plus a
``score_mod(score, b, h, q_idx, kv_idx)`` and a ``mask_mod(b, h, q_idx, kv_idx)``, and skips the
blocks a :class:`~torch.nn.attention.flex_attention.BlockMask` rules out. Here the lazy masks of
:mod:`qkv.masks` become a ``mask_mod`` and the lazy biases of :mod:`qkv.biases` a ``score_mod``,
so nothing ``(L, S)`` is materialised.

Limits, and the clean fallbacks:

* dot-product scores only (after the score's own projection: cosine and bilinear are
  rewritten as dot products, as in :mod:`qkv.kernels.tiled`); other calls are unsupported;
* on CPU FlexAttention is compiled for inference only, and for float32/16-bit inputs: when a
  gradient is needed on CPU, for float64, for local-p, for a mask or bias without a
  FlexAttention form, and for small CPU problems (compiling costs 5–30 s per shape), the
  ``flex`` backend computes the call with the ``tiled`` kernel instead (same numbers);
* ``auto`` never picks ``flex`` (on CPU the compile time rarely pays; on CUDA it is untested
  here): ask for it with ``backend="flex"``.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from qkv import masks as M
from qkv.biases import Bias, RelativeBias, TensorBias, _Alibi, _Sum
from qkv.functional.output import AttentionOutput
from qkv.kernels.call import AttentionCall
from qkv.kernels.local import Around
from qkv.kernels.tiled import _prepare, score_kind, tiled_attention, tiled_supports

__all__ = ["flex_available", "flex_backend", "flex_supports", "mask_mod", "score_mod"]


def flex_available() -> bool:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:  # pragma: no cover - torch < 2.5
        return False
    return True


def _index(t: Tensor, b, h, q_idx, kv_idx) -> Tensor:
    """Element ``[b, h, q, kv]`` of a tensor broadcastable to ``(B, H, L, S)`` (size-1 dims read 0)."""
    while t.dim() < 4:
        t = t.unsqueeze(0)
    zero = torch.zeros_like(q_idx)
    idx = [b, h, q_idx, kv_idx]
    return t[tuple(zero if t.shape[i] == 1 else idx[i] for i in range(4))]


def mask_mod(mask: M.Mask, L: int, S: int, device: torch.device | None = None) -> Callable | None:
    """The lazy ``mask`` as a FlexAttention ``mask_mod(b, h, q_idx, kv_idx) -> bool``; None if unknown.

    Tensors the closures capture are moved to ``device`` (the queries' device).
    """
    if isinstance(mask, M._Causal):
        off = mask.offset(L, S)
        return lambda b, h, q, kv: kv <= q + off
    if isinstance(mask, M._Window):
        off, w = mask.offset(L, S), mask.width
        return lambda b, h, q, kv: (kv - (q + off)).abs() <= w
    if isinstance(mask, M._Padding):
        lengths = mask.lengths.to(device)
        return lambda b, h, q, kv: kv < lengths[b]
    if isinstance(mask, M.TensorMask):
        t = mask.tensor.to(device)
        return lambda b, h, q, kv: _index(t, b, h, q, kv)
    if isinstance(mask, Around):
        pos, w = mask.position.detach().to(device), mask.window
        return lambda b, h, q, kv: (kv - _index(pos.unsqueeze(-1), b, h, q, torch.zeros_like(kv))).abs() <= w
    if isinstance(mask, M._Combined):
        parts = [mask_mod(p, L, S, device) for p in mask.parts]
        if any(p is None for p in parts):
            return None
        op = (lambda x, y: x & y) if mask.all_ else (lambda x, y: x | y)

        def combined(b, h, q, kv):
            return functools.reduce(lambda x, f: op(x, f(b, h, q, kv)), parts[1:], parts[0](b, h, q, kv))

        return combined
    return None


def _depends(mask: M.Mask) -> tuple[bool, bool]:
    """Whether the mask varies along the batch and the head dims (else one block mask serves all)."""
    if isinstance(mask, (M._Causal, M._Window)):
        return False, False
    if isinstance(mask, M._Padding):
        return True, False
    if isinstance(mask, (M.TensorMask, Around)):
        t = mask.tensor if isinstance(mask, M.TensorMask) else mask.position.unsqueeze(-1)
        shape = (1,) * max(0, 4 - t.dim()) + tuple(t.shape)
        return shape[-4] > 1, shape[-3] > 1
    if isinstance(mask, M._Combined):
        deps = [_depends(p) for p in mask.parts]
        return any(d[0] for d in deps), any(d[1] for d in deps)
    return True, True


def score_mod(bias: Bias, L: int, S: int, device: torch.device | None = None) -> Callable | None:
    """The lazy ``bias`` as a FlexAttention ``score_mod(score, b, h, q_idx, kv_idx)``; None if unknown."""
    if isinstance(bias, _Alibi):
        off = M.align_offset(bias.align, L, S)
        slopes = bias.slopes.to(device)
        return lambda s, b, h, q, kv: s - slopes[h] * (kv - (q + off)).abs()
    if isinstance(bias, RelativeBias):
        off = M.align_offset(bias.align, L, S)
        R, table = bias.max_distance, bias.table.to(device)
        return lambda s, b, h, q, kv: s + table[h, (kv - (q + off)).clamp(-R, R) + R]
    if isinstance(bias, TensorBias):
        t = bias.tensor.to(device)
        return lambda s, b, h, q, kv: s + _index(t, b, h, q, kv)
    if isinstance(bias, _Sum):
        parts = [score_mod(p, L, S, device) for p in bias.parts]
        if any(p is None for p in parts):
            return None
        return lambda s, b, h, q, kv: functools.reduce(lambda x, f: f(x, b, h, q, kv), parts, s)
    return None


def flex_supports(call: AttentionCall) -> bool:
    """Dot-product softmax attention (what FlexAttention computes; other calls raise ``ValueError``)."""
    return flex_available() and tiled_supports(call) and score_kind(call) == "dot"


#: On CPU, compile FlexAttention only for problems with at least this many scores ``B·H·L·S``
#: (compiling costs 5–30 s per shape); smaller ones, and everything FlexAttention cannot take,
#: run on the tiled kernel. ``QKV_FLEX=1`` forces FlexAttention wherever it can run.
FLEX_CPU_MIN_ELEMENTS = 1 << 24

_FLEX_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _flex_can_run(call: AttentionCall) -> bool:
    """Whether FlexAttention itself can compute this (supported) call, and is worth compiling for."""
    if call.local_p is not None or len(call.batch_shape) != 2 or call.q.dtype not in _FLEX_DTYPES:
        return False
    if call.mask is not None and mask_mod(call.mask, call.L, call.S) is None:
        return False
    if call.bias is not None and score_mod(call.lazy_bias, call.L, call.S) is None:
        return False
    if call.q.device.type == "cpu":
        if _needs_grad(call):  # FlexAttention's CPU path is compiled for inference only
            return False
        forced = os.environ.get("QKV_FLEX") == "1"
        return forced or math.prod(call.batch_shape) * call.L * call.S >= FLEX_CPU_MIN_ELEMENTS
    return True


@functools.cache
def _compiled():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


@functools.cache
def _compiled_block_mask():
    from torch.nn.attention.flex_attention import create_block_mask

    return torch.compile(create_block_mask)


def _needs_grad(call: AttentionCall) -> bool:
    tensors = [call.q, call.k, call.v]
    if call.bias is not None:
        tensors += call.lazy_bias.parameters()
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def flex_backend(call: AttentionCall) -> AttentionOutput:
    """Backend entry point: ``attend(..., backend="flex")``.

    Runs FlexAttention where it can (:func:`_flex_can_run`), else — CPU backward, float64,
    local-p, a mask or bias without a FlexAttention form, small CPU problems — the tiled kernel,
    which computes the same numbers.
    """
    global _FLEX_FAILED
    if _FLEX_FAILED or not _flex_can_run(call):
        return AttentionOutput(output=tiled_attention(call))
    try:
        return _flex(call)
    except Exception as e:  # a platform where torch.compile cannot build FlexAttention
        _FLEX_FAILED = True
        warnings.warn(f"qkv: FlexAttention failed ({type(e).__name__}: {e}); using the tiled kernel",
                      stacklevel=2)
        return AttentionOutput(output=tiled_attention(call))


_FLEX_FAILED = False


def _flex(call: AttentionCall) -> AttentionOutput:
    from torch.nn.attention.flex_attention import create_block_mask

    _, qf, kf, _, _ = _prepare(call)
    B, H = call.batch_shape
    qf = qf.expand(B, H, *qf.shape[-2:])  # (B, H, L, D)
    kf = kf.expand(B, H, *kf.shape[-2:])  # (B, H, S, D)
    v = call.v.expand(B, H, *call.v.shape[-2:])  # (B, H, S, Dv)
    block_mask = None
    if call.mask is not None:
        by_b, by_h = _depends(call.mask)
        # a mask of indices only (causal, window) is built compiled, block by block, never as an
        # (L, S) tensor; masks that read tensors (padding lengths, bool tensors) are built eagerly
        build = create_block_mask if (by_b or by_h) else _compiled_block_mask()
        block_mask = build(
            mask_mod(call.mask, call.L, call.S, qf.device), B if by_b else None, H if by_h else None,
            call.L, call.S, device=qf.device,
        )
    smod = None if call.bias is None else score_mod(call.lazy_bias, call.L, call.S, call.q.device)
    out = _compiled()(
        qf.contiguous(), kf.contiguous(), v.contiguous(), score_mod=smod, block_mask=block_mask, scale=1.0
    )
    # a row with no allowed key: FlexAttention's kernel already writes zeros there (qkv's
    # convention); guard against NaN from a -inf score_mod on such rows all the same
    return AttentionOutput(output=torch.nan_to_num(out, nan=0.0))
