"""The Triton backward kernels: recompute each tile's weights from ``lse`` (FlashAttention-2's backward).

Shape legend: as :mod:`qkv.kernels.triton.forward`; ``NK = ceil(S / BN)``.

Dao 2023 (FlashAttention-2, §3.1.2, Alg. 2): the forward pass kept only ``o`` and
:math:`\\mathrm{lse}`; a preprocessing step (in torch, :mod:`qkv.kernels.triton.autograd`) computes
:math:`\\Delta_i = do_i^\\top o_i`, and each tile recomputes :math:`P_{ij} = e^{s_{ij} - \\mathrm{lse}_i}`,

.. math:: dP_{ij} = do_i^\\top v_j,\\quad dv_j = \\sum_i P_{ij} g_{ij}\\, do_i,\\quad
          ds_{ij} = P_{ij}(g_{ij}\\, dP_{ij} - \\Delta_i),

with ``g`` Luong's local-p factor (``g = 1`` without it; Luong et al. 2015 eq. 10), whose centre
:math:`p_i` gets :math:`\\sum_j P_{ij}\\, dP_{ij}\\, g_{ij} (j - p_i)/\\sigma^2`. Two kernels; no two programs
write the same element (the additive score's ``atomic_add`` into its own rows is uncontended):

* :func:`attention_backward_kv` — one program per ``(key tile, batch row)`` walks the query tiles
  that meet it and accumulates ``dk``, ``dv`` (and its share of the additive vector's ``dw``); a bias
  that requires grad gets :math:`ds` written to a dense ``(Z, L, S)`` buffer;
* :func:`attention_backward_q` — one program per ``(query tile, batch row)`` walks its key range
  like the forward pass and accumulates ``dq`` (and the Gaussian centre's gradient).

The score's backward on a tile: dot products :math:`dq = ds\\, k`, :math:`dk = ds^\\top q`; the additive
score :math:`s_{ij} = w^\\top \\tanh(h_{q,i} + h_{k,j})` (Bahdanau et al. 2015 eq. 6) has
:math:`\\partial s/\\partial h = w \\odot (1 - \\tanh^2)`, summed over keys for :math:`h_q` and over
queries for :math:`h_k`, and :math:`dw = \\sum_{ij} ds_{ij} \\tanh(h_{q,i} + h_{k,j})`.
"""

from __future__ import annotations

import triton
import triton.language as tl

from qkv.kernels.triton.tiles import (
    additive_grads,
    additive_scores,
    allowed_tile,
    bias_tile,
    gaussian_tile,
    load_rows,
    query_centres,
    row_views,
)

__all__ = ["attention_backward_kv", "attention_backward_q"]


@triton.jit
def attention_backward_kv(
    Q, K, V, W, DO, LSE, DELTA, DK, DV_OUT, DW_PART, DBIAS, TILE_RANGES, MASK, LENGTHS, POS_A, POS_G, BIAS,
    L, S, F, DV, NK, HEADS,
    stride_mb, stride_mh, stride_ml, stride_ms, stride_bb, stride_bh, stride_bl, stride_bs,
    band_lo, band_hi, window, inv_two_sigma2,
    ADDITIVE: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BAND: tl.constexpr, HAS_LEN: tl.constexpr,
    HAS_AROUND: tl.constexpr, HAS_GAUSS: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
    MM: tl.constexpr, ACC: tl.constexpr, STORE_DBIAS: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BF: tl.constexpr, BDV: tl.constexpr, BA: tl.constexpr,
):
    pid_n = tl.program_id(0)
    z = tl.program_id(1).to(tl.int64)
    cols = pid_n * BN + tl.arange(0, BN)  # (BN,)
    col_ok = cols < S
    fs = tl.arange(0, BF)
    dvs = tl.arange(0, BDV)
    ms = tl.arange(0, BM)
    Qz = Q + z * L * F
    Kz = K + z * S * F
    if not ADDITIVE:
        k = load_rows(Kz, cols, col_ok, fs, F)  # (BN, BF)
    v = tl.load(V + z * S * DV + cols[:, None] * DV + dvs[None, :], mask=col_ok[:, None] & (dvs[None, :] < DV),
                other=0.0)
    length, mask_z, bias_z = row_views(z, S, HEADS, LENGTHS, MASK, BIAS, stride_mb, stride_mh, stride_bb, stride_bh,
                                       HAS_LEN)

    dk = tl.zeros((BN, BF), ACC)  # dot products: in registers; the additive score adds into DK itself
    dv = tl.zeros((BN, BDV), ACC)
    t_lo = tl.load(TILE_RANGES + (z * NK + pid_n) * 2)
    t_hi = tl.load(TILE_RANGES + (z * NK + pid_n) * 2 + 1)
    for t in range(t_lo, t_hi):
        rows = t * BM + ms  # (BM,)
        row_ok = rows < L
        do = tl.load(DO + z * L * DV + rows[:, None] * DV + dvs[None, :], mask=row_ok[:, None] & (dvs[None, :] < DV),
                     other=0.0)
        lse = tl.load(LSE + z * L + rows, mask=row_ok, other=float("inf"))
        delta = tl.load(DELTA + z * L + rows, mask=row_ok, other=0.0)
        pos_a = tl.zeros((BM,), ACC)
        if HAS_AROUND:
            pos_a = tl.load(POS_A + z * L + rows, mask=row_ok, other=0.0)
        if ADDITIVE:
            s = additive_scores(Qz, Kz, W, rows, row_ok, cols, col_ok, F, BM, BN, BA, ACC)
        else:
            q = load_rows(Qz, rows, row_ok, fs, F)  # (BM, BF)
            s = tl.dot(q.to(MM), tl.trans(k.to(MM)), input_precision=PRECISION).to(ACC)
        ok = allowed_tile(rows, cols, L, S, mask_z, stride_ml, stride_ms, band_lo, band_hi, length, pos_a, window,
                          HAS_MASK, HAS_BAND, HAS_LEN, HAS_AROUND)
        if HAS_BIAS:
            s = s + bias_tile(bias_z, rows, cols, stride_bl, stride_bs, ok, ACC)
        p = tl.where(ok, tl.exp(s - lse[:, None]), 0.0)  # (BM, BN) the softmax weights (0 where -inf)
        dp = tl.dot(do.to(MM), tl.trans(v.to(MM)), input_precision=PRECISION).to(ACC)  # (BM, BN)
        if HAS_GAUSS:
            pos_g = tl.load(POS_G + z * L + rows, mask=row_ok, other=0.0)
            g = gaussian_tile(cols, pos_g, inv_two_sigma2)
            wgt = p * g
            dsc = p * (g * dp - delta[:, None])
        else:
            wgt = p
            dsc = p * (dp - delta[:, None])
        dv += tl.dot(tl.trans(wgt.to(MM)), do.to(MM), input_precision=PRECISION).to(ACC)
        if STORE_DBIAS:  # each (query, key) pair is visited by one program once: plain stores
            tl.store(DBIAS + z * L * S + rows[:, None] * S + cols[None, :], dsc, mask=ok)
        if ADDITIVE:
            additive_grads(Qz, Kz, W, DK + z * S * F, DW_PART + (z * NK + pid_n) * BF, rows, row_ok, cols, col_ok,
                           dsc, F, BA, ACC, True)
        else:
            dk += tl.dot(tl.trans(dsc.to(MM)), q.to(MM), input_precision=PRECISION).to(ACC)
    if not ADDITIVE:
        tl.store(DK + z * S * F + cols[:, None] * F + fs[None, :], dk, mask=col_ok[:, None] & (fs[None, :] < F))
    tl.store(DV_OUT + z * S * DV + cols[:, None] * DV + dvs[None, :], dv, mask=col_ok[:, None] & (dvs[None, :] < DV))


@triton.jit
def attention_backward_q(
    Q, K, V, W, DO, LSE, DELTA, DQ, DPOS, RANGES, MASK, LENGTHS, POS_A, POS_G, BIAS,
    L, S, F, DV, NQ, HEADS,
    stride_mb, stride_mh, stride_ml, stride_ms, stride_bb, stride_bh, stride_bl, stride_bs,
    band_lo, band_hi, window, inv_two_sigma2,
    ADDITIVE: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BAND: tl.constexpr, HAS_LEN: tl.constexpr,
    HAS_AROUND: tl.constexpr, HAS_GAUSS: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
    MM: tl.constexpr, ACC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BF: tl.constexpr, BDV: tl.constexpr,
    BA: tl.constexpr,
):
    pid_m = tl.program_id(0)
    z = tl.program_id(1).to(tl.int64)
    rows = pid_m * BM + tl.arange(0, BM)
    row_ok = rows < L
    fs = tl.arange(0, BF)
    dvs = tl.arange(0, BDV)
    ns = tl.arange(0, BN)
    Qz = Q + z * L * F
    Kz = K + z * S * F
    if not ADDITIVE:
        q = load_rows(Qz, rows, row_ok, fs, F)  # (BM, BF)
    do = tl.load(DO + z * L * DV + rows[:, None] * DV + dvs[None, :], mask=row_ok[:, None] & (dvs[None, :] < DV),
                 other=0.0)
    lse = tl.load(LSE + z * L + rows, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + z * L + rows, mask=row_ok, other=0.0)
    length, mask_z, bias_z = row_views(z, S, HEADS, LENGTHS, MASK, BIAS, stride_mb, stride_mh, stride_bb, stride_bh,
                                       HAS_LEN)
    pos_a, pos_g = query_centres(POS_A, POS_G, z, L, rows, row_ok, HAS_AROUND, HAS_GAUSS, ACC, BM)

    dq = tl.zeros((BM, BF), ACC)  # dot products: in registers; the additive score adds into DQ itself
    dpos = tl.zeros((BM,), ACC)
    lo = tl.load(RANGES + (z * NQ + pid_m) * 2)
    hi = tl.load(RANGES + (z * NQ + pid_m) * 2 + 1)
    lo = (lo // BN) * BN
    for n0 in range(lo, hi, BN):
        cols = n0 + ns
        col_ok = cols < S
        v = tl.load(V + z * S * DV + cols[:, None] * DV + dvs[None, :], mask=col_ok[:, None] & (dvs[None, :] < DV),
                    other=0.0)
        if ADDITIVE:
            s = additive_scores(Qz, Kz, W, rows, row_ok, cols, col_ok, F, BM, BN, BA, ACC)
        else:
            k = load_rows(Kz, cols, col_ok, fs, F)  # (BN, BF)
            s = tl.dot(q.to(MM), tl.trans(k.to(MM)), input_precision=PRECISION).to(ACC)
        ok = allowed_tile(rows, cols, L, S, mask_z, stride_ml, stride_ms, band_lo, band_hi, length, pos_a, window,
                          HAS_MASK, HAS_BAND, HAS_LEN, HAS_AROUND)
        if HAS_BIAS:
            s = s + bias_tile(bias_z, rows, cols, stride_bl, stride_bs, ok, ACC)
        p = tl.where(ok, tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(do.to(MM), tl.trans(v.to(MM)), input_precision=PRECISION).to(ACC)
        if HAS_GAUSS:
            g = gaussian_tile(cols, pos_g, inv_two_sigma2)
            dsc = p * (g * dp - delta[:, None])
            # d g / d p_i = g (j - p_i) / sigma^2 = 2 g (j - p_i) inv_two_sigma2
            dpos += tl.sum(p * dp * g * (cols[None, :].to(ACC) - pos_g[:, None]), 1) * (2.0 * inv_two_sigma2)
        else:
            dsc = p * (dp - delta[:, None])
        if ADDITIVE:
            additive_grads(Qz, Kz, W, DQ + z * L * F, DQ, rows, row_ok, cols, col_ok, dsc, F, BA, ACC, False)
        else:
            dq += tl.dot(dsc.to(MM), k.to(MM), input_precision=PRECISION).to(ACC)
    if not ADDITIVE:
        tl.store(DQ + z * L * F + rows[:, None] * F + fs[None, :], dq, mask=row_ok[:, None] & (fs[None, :] < F))
    if HAS_GAUSS:
        tl.store(DPOS + z * L + rows, dpos, mask=row_ok)
