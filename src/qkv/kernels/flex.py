"""FlexAttention (``torch.nn.attention.flex_attention`` under ``torch.compile``) as a backend.

Shape legend: ``(B, H, L, D)`` queries, ``(B, H, S, D)`` keys, ``(B, H, S, Dv)`` values; ``b``,
``h``, ``q_idx``, ``kv_idx`` the index tensors FlexAttention passes to its modifiers.

FlexAttention (PyTorch 2.5+; He et al., "FlexAttention: the flexibility of PyTorch with the
performance of FlashAttention", 2024) compiles a fused kernel from a dot-product score plus a
``score_mod(score, b, h, q_idx, kv_idx)`` and a ``mask_mod(b, h, q_idx, kv_idx)``, and skips the
blocks a :class:`~torch.nn.attention.flex_attention.BlockMask` rules out. Every lazy mask and
bias gives its own FlexAttention form (:meth:`qkv.functional.lazy.Lazy.flex`, with its tensors
expanded to the batch and head sizes, so no compiled index reads past a size-1 dim): the mask
becomes the ``mask_mod``, the bias is added by the ``score_mod``, and nothing ``(L, S)`` is
materialised. This file knows no mask or bias class.

Limits, and the clean fallbacks:

* scores of kind ``"dot"`` only (their ``dot_features``: cosine and bilinear are dot products
  of transformed features); other calls are unsupported;
* on CPU FlexAttention is compiled for inference only, and for float32/16-bit inputs: when a
  gradient is needed on CPU, for float64, for a weight modifier, for a mask or bias without a
  FlexAttention form, and for small CPU problems (compiling costs 5–30 s per shape), the
  ``flex`` backend computes the call with the ``tiled`` kernel instead (same numbers). A
  compilation failure falls back for that call only, with a warning; it never turns the backend off;
* ``auto`` never picks ``flex`` (on CPU the compile time rarely pays; on CUDA it is untested
  here): ask for it with ``backend="flex"``.
"""

from __future__ import annotations

import functools
import math
import os
import warnings

import torch

from qkv.functional.output import AttentionOutput
from qkv.kernels.call import AttentionCall
from qkv.kernels.tiled import tiled_attention, tiled_unsupported

__all__ = ["flex_available", "flex_backend", "flex_unsupported"]


def flex_available() -> bool:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:  # pragma: no cover - torch < 2.5
        return False
    return True


def flex_unsupported(call: AttentionCall) -> str | None:
    """Why the ``flex`` backend cannot take ``call`` (``None`` when it can)."""
    if not flex_available():
        return "this torch has no FlexAttention (needs 2.5+)"
    if call.kind != "dot":
        return f"it computes dot-product scores only, and score {call.score!r} is of kind {call.kind!r}"
    return tiled_unsupported(call)


#: On CPU, compile FlexAttention only for problems with at least this many scores ``B·H·L·S``
#: (compiling costs 5–30 s per shape); smaller ones, and everything FlexAttention cannot take,
#: run on the tiled kernel. ``QKV_FLEX=1`` forces FlexAttention wherever it can run.
FLEX_CPU_MIN_ELEMENTS = 1 << 24

_FLEX_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _mods(call: AttentionCall):
    """``(mask_mod, score_mod)`` for the call, or ``None`` when a mask or bias has no FlexAttention form."""
    B, H = call.batch_shape
    sizes = {"B": B, "H": H, "L": call.L, "S": call.S, "device": call.q.device}
    mask_mod = score_mod = None
    if call.mask is not None:
        mask_mod = call.mask.flex(**sizes)
        if mask_mod is None:
            return None
    if call.bias is not None:
        bias_mod = call.bias.flex(**sizes)
        if bias_mod is None:
            return None
        score_mod = lambda s, b, h, q, kv: s + bias_mod(b, h, q, kv)  # noqa: E731
    return mask_mod, score_mod


def _flex_can_run(call: AttentionCall) -> bool:
    """Whether FlexAttention itself can compute this (supported) call, and is worth compiling for."""
    if call.modifier is not None or len(call.batch_shape) != 2 or call.q.dtype not in _FLEX_DTYPES:
        return False
    if call.q.device.type == "cpu":
        if _needs_grad(call):  # FlexAttention's CPU path is compiled for inference only
            return False
        forced = os.environ.get("QKV_FLEX") == "1"
        if not forced and math.prod(call.batch_shape) * call.L * call.S < FLEX_CPU_MIN_ELEMENTS:
            return False
    return _mods(call) is not None


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
        tensors += call.bias.parameters()
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def flex_backend(call: AttentionCall) -> AttentionOutput:
    """Backend entry point: ``attend(..., backend="flex")``.

    Runs FlexAttention where it can (:func:`_flex_can_run`), else — CPU backward, float64, a
    weight modifier, a mask or bias without a FlexAttention form, small CPU problems — the tiled
    kernel, which computes the same numbers. If compiling fails, this call falls back with a
    warning; the next call tries FlexAttention again.
    """
    if not _flex_can_run(call):
        return AttentionOutput(output=tiled_attention(call))
    try:
        return _flex(call)
    except Exception as e:  # a platform where torch.compile cannot build FlexAttention
        warnings.warn(f"qkv: FlexAttention failed for this call ({type(e).__name__}: {e}); "
                      "computing it with the tiled kernel", stacklevel=2)
        return AttentionOutput(output=tiled_attention(call))


#: On CPU, keys and values are zero-padded to a multiple of this many positions (and the padding
#: masked out): torch 2.13's compiled CPU FlexAttention can read past the end of ``k``/``v`` when
#: ``S`` is not a multiple of its block size, and return wrong values for the last ``(b, h)``.
CPU_KV_BLOCK = 128


def _flex(call: AttentionCall) -> AttentionOutput:
    from torch.nn.attention.flex_attention import create_block_mask

    qf, kf, scale = call.score.dot_features(call.q, call.k)
    B, H = call.batch_shape
    L, S = call.L, call.S
    qf = qf.expand(B, H, *qf.shape[-2:])  # (B, H, L, D)
    kf = kf.expand(B, H, *kf.shape[-2:])  # (B, H, S, D)
    v = call.v.expand(B, H, *call.v.shape[-2:])  # (B, H, S, Dv)
    mask_mod, score_mod = _mods(call)
    by_b, by_h = (False, False) if call.mask is None else call.mask.depends()
    S_run = S
    if qf.device.type == "cpu" and S % CPU_KV_BLOCK:
        S_run = S + CPU_KV_BLOCK - S % CPU_KV_BLOCK
        kf = torch.nn.functional.pad(kf, (0, 0, 0, S_run - S))  # (B, H, S_run, D)
        v = torch.nn.functional.pad(v, (0, 0, 0, S_run - S))  # (B, H, S_run, Dv)
        mask_mod, score_mod = _clamped(mask_mod, S), _clamped_score(score_mod, S)
    block_mask = None
    if mask_mod is not None:
        # a mask of indices only (causal, window) is built compiled, block by block, never as an
        # (L, S) tensor; masks that read tensors (padding lengths, bool tensors) are built eagerly
        # (as is the padded CPU case, whose combined mask inductor's CPU code generator cannot compile)
        build = create_block_mask if (by_b or by_h or S_run != S) else _compiled_block_mask()
        block_mask = build(mask_mod, B if by_b else None, H if by_h else None, L, S_run, device=qf.device)
    out = _compiled()(
        qf.contiguous(), kf.contiguous(), v.contiguous(), score_mod=score_mod, block_mask=block_mask, scale=scale
    )
    # a row with no allowed key: FlexAttention's kernel already writes zeros there (qkv's
    # convention); guard against NaN from a -inf score_mod on such rows all the same
    return AttentionOutput(output=torch.nan_to_num(out, nan=0.0))


def _clamped(mask_mod, S: int):
    """``mask_mod`` over keys padded past ``S``: the padding is masked, real keys keep their mask."""
    if mask_mod is None:
        return lambda b, h, q, kv: kv < S
    return lambda b, h, q, kv: (kv < S) & mask_mod(b, h, q, torch.clamp(kv, max=S - 1))


def _clamped_score(score_mod, S: int):
    """``score_mod`` over keys padded past ``S``, never indexing a captured tensor past ``S - 1``."""
    if score_mod is None:
        return None
    return lambda s, b, h, q, kv: score_mod(s, b, h, q, torch.clamp(kv, max=S - 1))
