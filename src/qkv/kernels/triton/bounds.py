"""Which tiles the Triton kernels visit: key ranges per query tile and query-tile ranges per key tile.

Shape legend: ``Z`` flattened batch rows, ``L`` queries, ``S`` keys, ``BM``/``BN`` a query/key tile,
``NQ = ceil(L / BM)``, ``NK = ceil(S / BN)``.

Computed once per call on the host (a few vectorised torch ops over ``(Z, NQ)``, and the mask's own
:meth:`~qkv.functional.masks.Mask.kv_bounds` per query tile), from the parts of the mask that bound the
keys a row can see: bands (causal, window: ``lo <= j - i <= hi``),
padding lengths and Luong's local window (``|j - p_i| <= D``, from the smallest and largest centre
of the tile). The kernels loop only over these ranges, so a window of width ``w`` costs
``O(L·w)``, and they evaluate every mask part exactly inside a tile (a range only has to be
conservative). The forward pass and the ``dq`` kernel walk key ranges; the ``dk, dv`` kernel
walks, for its key tile, the query tiles whose key range meets it (FlashAttention-2's backward
parallelises over key tiles, Dao 2023 §3.2).
"""

from __future__ import annotations

import torch
from torch import Tensor

from qkv.kernels.triton.plan import TritonSpec

__all__ = ["key_ranges", "query_tile_ranges"]


def key_ranges(spec: TritonSpec, BM: int, device: torch.device) -> Tensor:
    """``(Z, NQ, 2)`` int32: the half-open key range ``[lo, hi)`` each query tile may see (``lo = hi``: none)."""
    L, S, Z = spec.L, spec.S, spec.Z
    nq = -(-L // BM)
    m0 = torch.arange(nq, device=device) * BM  # (NQ,) first row of each tile
    m_last = torch.clamp(m0 + BM, max=L) - 1  # (NQ,) last row
    lo = torch.zeros((Z, nq), dtype=torch.int64, device=device)
    hi = torch.full((Z, nq), S, dtype=torch.int64, device=device)
    if spec.band is not None:
        b_lo, b_hi = spec.band
        lo = torch.maximum(lo, (m0 + b_lo).expand(Z, nq))
        hi = torch.minimum(hi, (m_last + b_hi + 1).expand(Z, nq))
    if spec.lengths is not None:
        hi = torch.minimum(hi, spec.lengths.to(torch.int64)[:, None])
    if spec.around_position is not None:
        p = spec.around_position  # (Z, L)
        pad = nq * BM - L
        p_min = torch.nn.functional.pad(p, (0, pad), value=float("inf")).view(Z, nq, BM).amin(-1)  # (Z, NQ)
        p_max = torch.nn.functional.pad(p, (0, pad), value=float("-inf")).view(Z, nq, BM).amax(-1)  # (Z, NQ)
        w = spec.around_window
        lo = torch.maximum(lo, torch.ceil(p_min - w).clamp(-1, S + 1).to(torch.int64))
        hi = torch.minimum(hi, (torch.floor(p_max + w) + 1).clamp(-1, S + 1).to(torch.int64))
    if spec.lazy_mask is not None:  # the mask's own bounds (over every batch row): graphs, unions, ...
        mb = torch.tensor([spec.lazy_mask.kv_bounds(int(a), min(L, int(a) + BM), L=L, S=S) for a in m0.tolist()],
                          dtype=torch.int64).reshape(nq, 2).to(device)  # (NQ, 2)
        lo, hi = torch.maximum(lo, mb[:, 0]), torch.minimum(hi, mb[:, 1])
    lo = lo.clamp(0, S)
    hi = torch.maximum(hi.clamp(0, S), lo)
    return torch.stack([lo, hi], dim=-1).to(torch.int32).contiguous()  # (Z, NQ, 2)


#: Rows of ``Z`` whose ``(NQ, NK)`` overlap table is built at once (bounds host memory).
_CHUNK_ELEMENTS = 1 << 24


def query_tile_ranges(ranges: Tensor, S: int, BN: int) -> Tensor:
    """``(Z, NK, 2)`` int32: for each key tile, the query tiles ``[t_lo, t_hi)`` whose key range meets it.

    ``ranges`` is :func:`key_ranges`' ``(Z, NQ, 2)``. Conservative when the ranges are not monotone
    (a local window with unordered centres): every tile in between is visited, and masked inside.
    """
    Z, nq, _ = ranges.shape
    nk = -(-S // BN)
    n0 = torch.arange(nk, device=ranges.device) * BN  # (NK,)
    n1 = torch.clamp(n0 + BN, max=S)
    out = torch.zeros((Z, nk, 2), dtype=torch.int32, device=ranges.device)
    step = max(1, _CHUNK_ELEMENTS // max(1, nq * nk))
    t = torch.arange(nq, device=ranges.device)[:, None]  # (NQ, 1)
    for z0 in range(0, Z, step):
        lo = ranges[z0 : z0 + step, :, 0:1].to(torch.int64)  # (z, NQ, 1)
        hi = ranges[z0 : z0 + step, :, 1:2].to(torch.int64)
        meets = (lo < n1) & (hi > n0) & (hi > lo)  # (z, NQ, NK)
        first = torch.where(meets, t, nq).amin(1)  # (z, NK)
        last = torch.where(meets, t, -1).amax(1)  # (z, NK)
        seen = last >= 0
        out[z0 : z0 + step, :, 0] = torch.where(seen, first, 0).to(torch.int32)
        out[z0 : z0 + step, :, 1] = torch.where(seen, last + 1, 0).to(torch.int32)
    return out
