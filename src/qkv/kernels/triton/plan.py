"""What the Triton kernels can take, and a call translated into their launch arguments.

Shape legend: ``...`` the call's batch dims (typically ``(B, H)``), flattened to ``Z`` rows;
``Zb``/``Zh`` the batch split as ``(prod(batch[:-1]), batch[-1])``; ``L`` queries, ``S`` keys.

The kernels fuse a fixed set of structures (unlike the CPU tiled kernel, which evaluates any lazy
field tile by tile): a mask is an intersection (``&``) of

* bands ``lo <= j - i <= hi`` — :func:`~qkv.functional.masks.causal` (``hi = offset``) and
  :func:`~qkv.functional.masks.window` (``|j - i - offset| <= w``), any alignment;
* key lengths — :func:`~qkv.functional.masks.padding`;
* Luong's local window :class:`~qkv.functional.local.Around` (``|j - p_i| <= D``);
* bool tensors (``key_padding``, any broadcastable mask), read in the kernel through their strides;
* any other mask (``|``, graphs, user masks): materialised as a bool tensor — ``O(L·S)`` memory, the
  one exception to linear memory — whose tiles outside its
  :meth:`~qkv.functional.masks.Mask.kv_bounds` are still skipped;

an additive bias is read as a tensor through its strides (a lazy bias — ALiBi, relative positions — is
materialised first, its parameters differentiated through that tensor; the bias's gradient, when it needs
one, is a dense ``(..., L, S)`` buffer), and the one weight modifier is Luong's local-p Gaussian
(:class:`~qkv.functional.local.GaussianWindow`, Luong et al. 2015 eq. 10). :func:`triton_unsupported`
names whatever else a call holds. :func:`compile_call` turns a supported call into a
:class:`TritonSpec` and the tensors the autograd Function differentiates.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from qkv.functional.biases import TensorBias
from qkv.functional.masks import AllOf, Causal, Mask, Padding, TensorMask, Window, align_offset
from qkv.kernels.call import AttentionCall
from qkv.kernels.tiled import tiled_unsupported

__all__ = [
    "MAX_BATCH_ROWS",
    "MAX_WIDTH",
    "SUPPORTED_DTYPES",
    "MaskParts",
    "TritonSpec",
    "compile_call",
    "mask_parts",
    "triton_available",
    "triton_unsupported",
]

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

#: Widest query/key features and values a kernel holds in registers (dot products; values). The
#: additive score's hidden layer has no limit: it is read in chunks.
MAX_WIDTH = 256

#: Most flattened batch rows ``Z`` in one launch: the kernels' grid is ``(tiles, Z)``, and CUDA caps a
#: grid's second axis at 65535.
MAX_BATCH_ROWS = 65535


@functools.cache
def triton_available() -> bool:
    """Whether the ``triton`` package can be imported (it is an optional, Linux-only dependency)."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether Triton's CPU interpreter is on (``TRITON_INTERPRET=1``): kernels then run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@dataclass
class MaskParts:
    """A mask as the kernels read it: the intersection of a band, lengths, one Around window and tensors."""

    band: tuple[int, int] | None = None  # (lo, hi): lo <= j - i <= hi
    lengths: list[Tensor] | None = None  # Padding lengths, (B,) each
    around: object | None = None  # an Around mask (position (..., L), window)
    tensors: list[Tensor] | None = None  # bool tensors broadcastable to (..., L, S)
    others: list[Mask] | None = None  # masks of other kinds, materialised as bool tensors


def mask_parts(mask: Mask | None, L: int, S: int) -> MaskParts:
    """``mask`` as :class:`MaskParts`: the structures the kernels fuse, and the rest to materialise."""
    from qkv.functional.local import Around  # local imports attend: imported at call time, not at the top

    parts = MaskParts()
    if mask is None:
        return parts
    todo = [mask]
    while todo:
        m = todo.pop()
        if isinstance(m, AllOf):
            todo.extend(m.parts)
        elif isinstance(m, (Causal, Window)):
            off = align_offset(m.align, L, S)
            lo, hi = (-(L + S + 1), off) if isinstance(m, Causal) else (off - m.width, off + m.width)
            if parts.band is not None:
                lo, hi = max(lo, parts.band[0]), min(hi, parts.band[1])
            parts.band = (lo, hi)
        elif isinstance(m, Padding):
            parts.lengths = [*(parts.lengths or []), m.lengths]
        elif isinstance(m, TensorMask):
            parts.tensors = [*(parts.tensors or []), m.tensor]
        elif isinstance(m, Around):
            if parts.around is None:
                parts.around = m
            elif not (parts.around.position is m.position and parts.around.window == m.window):
                parts.others = [*(parts.others or []), m]  # a second, different window: read as a tensor
        else:  # any other mask (|, graphs, user masks): materialised, read like a bool tensor
            parts.others = [*(parts.others or []), m]
    return parts


def triton_unsupported(call: AttentionCall) -> str | None:
    """Why the Triton kernels cannot compute ``call`` (``None`` when they can)."""
    from qkv.functional.local import GaussianWindow

    if not triton_available():
        return "the triton package is not installed (pip install 'triton>=3.2'; Linux only)"
    if call.q.device.type != "cuda" and not interpreting():
        return (f"its tensors must be on a CUDA device (or run under Triton's interpreter, TRITON_INTERPRET=1), "
                f"got device {call.q.device}")
    if call.q.dtype not in SUPPORTED_DTYPES:
        return f"it computes float32, float16, bfloat16 and float64, got dtype {call.q.dtype}"
    if call.kind not in ("dot", "additive"):
        return f"it computes scores of kind 'dot' or 'additive', and score {call.score!r} is of kind {call.kind!r}"
    if (why := tiled_unsupported(call)) is not None:  # softmax only, no dropout, no weights: as the tiled kernel
        return why
    if call.group is not None:
        return f"it does not shard sequences (use backend='ring'), got group={call.group!r}"
    if call.modifier is not None and not isinstance(call.modifier, GaussianWindow):
        return f"its one weight modifier is the local-p GaussianWindow, got modifier={call.modifier!r}"
    width = call.v.shape[-1]
    if width > MAX_WIDTH:
        return f"it holds at most {MAX_WIDTH} value features per row, got v of width {width}"
    if call.kind == "dot" and (call.q.shape[-1] > MAX_WIDTH or call.k.shape[-1] > MAX_WIDTH):
        return f"it holds at most {MAX_WIDTH} query/key features, got q {tuple(call.q.shape)}, k {tuple(call.k.shape)}"
    if math.prod(call.batch_shape) > MAX_BATCH_ROWS:
        return (f"it launches at most {MAX_BATCH_ROWS} batch rows (the CUDA grid's second axis), got batch shape "
                f"{tuple(call.batch_shape)}")
    return None


@dataclass
class TritonSpec:
    """The non-differentiable launch arguments of one call (tensors already flattened to ``Z`` rows)."""

    additive: bool
    L: int
    S: int
    Z: int
    heads: int  # Zh: the last batch dim (1 without batch dims); the tensor mask is read at (z // Zh, z % Zh)
    band: tuple[int, int] | None
    lengths: Tensor | None  # (Z,) int32
    around_position: Tensor | None  # (Z, L) in the accumulation dtype, detached
    around_window: float
    mask: Tensor | None  # (Zb, Zh, L|1, S|1) uint8 view (stride 0 where broadcast)
    acc: torch.dtype  # the kernels' accumulation dtype: float32, float64 for float64 inputs
    sigma: float  # the Gaussian's sigma (0 without the local-p modifier)
    lazy_mask: Mask | None  # the call's mask when part of it is materialised: its kv_bounds bound the keys


def _rows(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``t`` broadcast to ``shape`` (leading size-1 dims beyond its rank dropped first)."""
    while t.dim() > len(shape) and t.shape[0] == 1:
        t = t[0]
    return torch.broadcast_to(t, shape)


def compile_call(call: AttentionCall):
    """``(spec, qf, kf, v, w, position, bias)`` for a supported call.

    ``qf (Z, L, F)``, ``kf (Z, S, F)``: the score's features, computed here by ordinary autograd
    (dot: ``q·c`` and ``k`` after ``dot_features``, e.g. ``W q`` for the bilinear score, Luong et al. 2015
    eq. 8; additive: ``U q + b`` and ``W k``, Bahdanau et al. 2015 eq. 6, with ``F = A``);
    ``v (Z, S, Dv)``; ``w (A,)`` the additive score's vector (``None`` for dot products);
    ``position (Z, L)`` the local-p centres in the accumulation dtype (``None`` without the modifier);
    ``bias (Zb, Zh, L, S)`` the bias tensor's broadcast view (``None`` without one). Broadcast batch dims
    are expanded here, so autograd sums their gradients back.
    """
    batch = call.batch_shape
    L, S = call.L, call.S
    Z = math.prod(batch)
    heads = batch[-1] if batch else 1
    acc = torch.float64 if call.q.dtype == torch.float64 else torch.float32
    device = call.q.device
    if call.kind == "dot":
        qf, kf, c = call.score.dot_features(call.q, call.k)
        qf, w = qf * c, None
    else:
        qf, kf, w = call.score.additive_features(call.q, call.k)  # (..., L, A), (..., S, A), (A,)
    qf = qf.expand(*batch, *qf.shape[-2:]).reshape(Z, L, qf.shape[-1])  # (Z, L, F)
    kf = kf.expand(*batch, *kf.shape[-2:]).reshape(Z, S, kf.shape[-1])  # (Z, S, F)
    v = call.v.expand(*batch, *call.v.shape[-2:]).reshape(Z, S, call.v.shape[-1])  # (Z, S, Dv)
    if kf.dtype != qf.dtype:  # the bilinear W q of a half-precision q stays half; keep one dtype for tl.dot
        kf = kf.to(qf.dtype)

    parts = mask_parts(call.mask, L, S)
    lengths = None
    if parts.lengths:
        rows = [_rows(n.to(device).reshape(-1, 1, 1, 1), (*batch, 1, 1))[..., 0, 0] for n in parts.lengths]
        lengths = torch.stack([r.reshape(Z) for r in rows]).amin(0).to(torch.int32).contiguous()  # (Z,)
    around_position, around_window = None, 0.0
    if parts.around is not None:
        p = parts.around.position.detach().to(device=device, dtype=acc)
        around_position = _rows(p, (*batch, L)).reshape(Z, L).contiguous()  # (Z, L)
        around_window = float(parts.around.window)
    mask = None
    tensors = [*(parts.tensors or []), *(o.materialize(L, S, device=device) for o in parts.others or [])]
    if tensors:
        m = tensors[0]
        for t in tensors[1:]:
            m = m & t
        m = torch.broadcast_to(_rows(m.to(device), (*batch, L, S)), (*batch, L, S))
        mask = m.reshape(Z // heads if heads else 0, heads, L, S).view(torch.uint8)  # (Zb, Zh, L, S), a view
    bias = None
    if call.bias is not None:
        t = call.bias.tensor if isinstance(call.bias, TensorBias) else call.bias.materialize(L, S, device=device)
        b = _rows(t.to(device), (*batch, L, S))
        bias = b.reshape(Z // heads if heads else 0, heads, L, S)  # (Zb, Zh, L, S): a view where it can be
    position, sigma = None, 0.0
    if call.modifier is not None:
        pos = call.modifier.position.to(device=device, dtype=acc)
        position = _rows(pos, (*batch, L)).reshape(Z, L)  # (Z, L), differentiable
        sigma = float(call.modifier.sigma)
    spec = TritonSpec(
        additive=call.kind == "additive", L=L, S=S, Z=Z, heads=heads, band=parts.band, lengths=lengths,
        around_position=around_position, around_window=around_window, mask=mask, sigma=sigma, acc=acc,
        lazy_mask=call.mask if parts.others else None,  # the fused parts' own bounds are tighter (per batch row)
    )
    return spec, qf, kf, v, w, position, bias

