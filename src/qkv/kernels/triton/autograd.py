"""The autograd Function around the Triton kernels, and their launches.

Shape legend: ``Z`` flattened batch rows, ``L`` queries, ``S`` keys, ``F`` score features, ``Dv``
value width; ``NQ``/``NK`` query/key tiles.

Forward keeps ``o`` and ``lse`` only (FlashAttention-2, Dao 2023); backward computes
:math:`\\Delta = \\mathrm{rowsum}(do \\odot o)` with torch and launches the two backward kernels of
:mod:`qkv.kernels.triton.backward`. Gradients reach the score's parameters through the features
computed outside (``W q`` for the bilinear score, ``U q + b`` and ``W k`` for the additive one), and
the additive vector ``w`` and the local-p centres directly. This module imports ``triton``.
"""

from __future__ import annotations

import torch
import triton
from torch import Tensor

from qkv.functional.output import AttentionOutput
from qkv.kernels.call import AttentionCall
from qkv.kernels.triton.backward import attention_backward_kv, attention_backward_q
from qkv.kernels.triton.bounds import key_ranges, query_tile_ranges
from qkv.kernels.triton.forward import attention_forward
from qkv.kernels.triton.plan import TritonSpec, compile_call, interpreting

__all__ = ["ADDITIVE_CHUNK", "BACKWARD_BLOCKS", "BLOCKS", "TritonAttention", "triton_attention"]

#: ``(BM, BN)`` query/key tiles of the forward kernel per score kind. The additive kernels hold a
#: ``(BM, BN, BA)`` tanh block in registers, hence its small tiles; ``tl.dot`` needs at least 16.
#: Chosen by design and by ptxas's static register counts for sm_90 (no spills for float16 at
#: D <= 128; ``tests/kernels/test_triton_compile.py`` compiles for that target); not yet timed on a GPU.
BLOCKS: dict[str, tuple[int, int]] = {"dot": (64, 64), "additive": (16, 16)}

#: The backward kernels' tiles: they hold more per tile (k, v, dk, dv, or q, do, dq), so smaller ones.
BACKWARD_BLOCKS: dict[str, tuple[int, int]] = {"dot": (32, 32), "additive": (16, 16)}


def _backward_warps(BF: int) -> int:
    """8 warps for wide features (D > 64: halves the registers per thread), else 4."""
    return 8 if BF > 64 else 4

#: Hidden units of the additive score per ``(BM, BN, BA)`` tanh block (registers: ``BM·BN·BA`` values).
ADDITIVE_CHUNK = 16


def _pow2(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _precision(v: Tensor) -> str:
    """``tl.dot``'s input precision: exact products for float32/float64 inputs (as the naive reference; TF32
    would be faster on a GPU, not yet measured); half-precision operands multiply natively either way."""
    return "ieee" if v.dtype in (torch.float32, torch.float64) else "tf32"


_TL = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _operands(v: Tensor):
    """``tl.dot``'s operand dtype (``MM``): the inputs' own; float32 for bfloat16 under the interpreter only,
    whose bfloat16 ``tl.dot`` returns garbage (triton 3.9); compiled code multiplies bfloat16 natively."""
    name = "float32" if v.dtype == torch.bfloat16 and interpreting() else _TL[v.dtype]
    return getattr(triton.language, name)


def _common_args(spec: TritonSpec, dummy: Tensor, bias: Tensor | None):
    """The mask, bias, lengths and position arguments shared by the three kernels (a dummy where absent)."""
    if spec.mask is not None:
        mask, mstrides = spec.mask, spec.mask.stride()
    else:
        mask, mstrides = dummy, (0, 0, 0, 0)
    if bias is not None:
        bstrides = bias.stride()
    else:
        bias, bstrides = dummy, (0, 0, 0, 0)
    lengths = spec.lengths if spec.lengths is not None else dummy
    pos_a = spec.around_position if spec.around_position is not None else dummy
    band = spec.band if spec.band is not None else (0, 0)
    inv = 0.0 if spec.sigma == 0 else 1.0 / (2.0 * spec.sigma**2)
    flags = {
        "HAS_MASK": spec.mask is not None, "HAS_BAND": spec.band is not None, "HAS_LEN": spec.lengths is not None,
        "HAS_AROUND": spec.around_position is not None, "HAS_GAUSS": spec.sigma != 0, "HAS_BIAS": bias is not dummy,
        "ACC": getattr(triton.language, _TL[spec.acc]),
    }
    return mask, (*mstrides, *bstrides), bias, lengths, pos_a, band, inv, flags


class TritonAttention(torch.autograd.Function):
    """``(spec, qf, kf, v, w, position, bias) -> out (Z, L, Dv)``; ``w``, ``position``, ``bias`` may be ``None``."""

    @staticmethod
    def forward(ctx, spec: TritonSpec, qf: Tensor, kf: Tensor, v: Tensor, w: Tensor | None, position: Tensor | None,
                bias: Tensor | None):
        qf, kf, v = qf.contiguous(), kf.contiguous(), v.contiguous()
        Z, L, F = qf.shape
        S, Dv = v.shape[1], v.shape[2]
        BM, BN = BLOCKS["additive" if spec.additive else "dot"]
        out = torch.empty((Z, L, Dv), dtype=v.dtype, device=v.device)
        lse = torch.empty((Z, L), dtype=spec.acc, device=v.device)
        ranges = key_ranges(spec, BM, v.device)  # (Z, NQ, 2)
        w_arg = w.contiguous() if w is not None else qf
        pos_g = position.detach().contiguous() if position is not None else qf
        mask, ms, bias_arg, lengths, pos_a, band, inv, flags = _common_args(spec, qf, bias)
        nq = ranges.shape[1]
        attention_forward[(nq, Z)](
            qf, kf, v, w_arg, out, lse, ranges, mask, lengths, pos_a, pos_g, bias_arg,
            L, S, F, Dv, nq, spec.heads, *ms, band[0], band[1], spec.around_window, inv,
            ADDITIVE=spec.additive, PRECISION=_precision(v), MM=_operands(v), BM=BM, BN=BN, BF=_pow2(F),
            BDV=_pow2(Dv), BA=min(ADDITIVE_CHUNK, _pow2(F)), **flags,
        )
        ctx.spec, ctx.ranges, ctx.bm = spec, ranges, BM
        ctx.save_for_backward(qf, kf, v, w, position, bias, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        spec: TritonSpec = ctx.spec
        qf, kf, v, w, position, bias, out, lse = ctx.saved_tensors
        Z, L, F = qf.shape
        S, Dv = v.shape[1], v.shape[2]
        BM, BN = BACKWARD_BLOCKS["additive" if spec.additive else "dot"]
        BF = _pow2(F)
        ranges = ctx.ranges if ctx.bm == BM else key_ranges(spec, BM, v.device)  # (Z, NQ, 2)
        do = grad_out.to(v.dtype).contiguous()
        delta = (do.to(spec.acc) * out.to(spec.acc)).sum(-1).contiguous()  # (Z, L): the preprocessing step
        w_arg = w.contiguous() if w is not None else qf
        pos_g = position.detach().contiguous() if position is not None else qf
        mask, ms, bias_arg, lengths, pos_a, band, inv, flags = _common_args(spec, qf, bias)
        need = ctx.needs_input_grad  # (spec, qf, kf, v, w, position, bias)
        store_dbias = bias is not None and need[6]
        common = dict(ADDITIVE=spec.additive, PRECISION=_precision(v), MM=_operands(v), BM=BM, BN=BN, BF=BF,
                      BDV=_pow2(Dv), BA=min(ADDITIVE_CHUNK, BF), num_warps=_backward_warps(max(BF, _pow2(Dv))), **flags)
        nq = ranges.shape[1]
        tile_ranges = query_tile_ranges(ranges, S, BN)  # (Z, NK, 2)
        nk = tile_ranges.shape[1]
        acc = spec.acc
        dk = torch.zeros((Z, S, F), dtype=acc, device=v.device)
        dv = torch.zeros((Z, S, Dv), dtype=acc, device=v.device)
        dw_part = torch.zeros((Z, nk, BF) if spec.additive else (1,), dtype=acc, device=v.device)
        dbias = torch.zeros((Z, L, S) if store_dbias else (1,), dtype=acc, device=v.device)  # dense: only when needed
        attention_backward_kv[(nk, Z)](
            qf, kf, v, w_arg, do, lse, delta, dk, dv, dw_part, dbias, tile_ranges, mask, lengths, pos_a, pos_g,
            bias_arg, L, S, F, Dv, nk, spec.heads, *ms, band[0], band[1], spec.around_window, inv,
            STORE_DBIAS=store_dbias, **common,
        )
        dq = torch.zeros((Z, L, F), dtype=acc, device=v.device)
        dpos = torch.zeros((Z, L), dtype=acc, device=v.device)
        attention_backward_q[(nq, Z)](
            qf, kf, v, w_arg, do, lse, delta, dq, dpos, ranges, mask, lengths, pos_a, pos_g, bias_arg,
            L, S, F, Dv, nq, spec.heads, *ms, band[0], band[1], spec.around_window, inv, **common,
        )
        dw = dw_part.sum((0, 1))[:F].to(w.dtype) if w is not None and need[4] else None
        return (
            None,
            dq.to(qf.dtype) if need[1] else None,
            dk.to(kf.dtype) if need[2] else None,
            dv.to(v.dtype) if need[3] else None,
            dw,
            dpos.to(position.dtype) if position is not None and need[5] else None,
            dbias.view(bias.shape).to(bias.dtype) if store_dbias else None,  # (Zb, Zh, L, S)
        )


def triton_attention(call: AttentionCall) -> AttentionOutput:
    """``attend(..., backend="triton")`` on a call :func:`~qkv.kernels.triton.plan.triton_unsupported` accepts."""
    spec, qf, kf, v, w, position, bias = compile_call(call)
    shape = (*call.batch_shape, call.L, v.shape[-1])
    if spec.Z == 0 or call.L == 0:
        connected = qf.sum() * 0 + kf.sum() * 0 + v.sum() * 0  # keep the graph
        return AttentionOutput(output=v.new_zeros(shape) + connected)
    out = TritonAttention.apply(spec, qf, kf, v, w, position, bias)  # (Z, L, Dv)
    return AttentionOutput(output=out.reshape(shape))  # (..., L, Dv)
