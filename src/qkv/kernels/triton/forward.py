"""The Triton forward kernel: online softmax over the key tiles of a query tile, keeping ``lse``.

Shape legend: ``Z`` flattened batch rows, ``L`` queries, ``S`` keys, ``F`` score features
(``D`` for dot products, ``A`` for the additive score), ``Dv`` value width; ``BM``/``BN`` the query/key
tile, ``BF``/``BDV`` ``F``/``Dv`` padded to powers of two.

FlashAttention-2's forward pass (Dao 2023, Alg. 1): one program per ``(query tile, batch row)``
keeps a running maximum :math:`m_i`, normaliser :math:`\\ell_i` and output accumulator :math:`a_i`
over the key tiles in its range (:mod:`qkv.kernels.triton.bounds`),

.. math:: m_i' = \\max(m_i, \\max_j s_{ij}),\\quad \\ell_i' = e^{m_i - m_i'}\\ell_i + \\sum_j e^{s_{ij} - m_i'},\\quad
          a_i' = e^{m_i - m_i'} a_i + \\sum_j e^{s_{ij} - m_i'} g_{ij} v_j,

and writes :math:`o_i = a_i / \\ell_i` and :math:`\\mathrm{lse}_i = m_i + \\log \\ell_i`. ``g = 1``
except under Luong's local-p Gaussian (Luong et al. 2015 eq. 10), which multiplies the *normalised*
weights without renormalising — so it scales the accumulator, never :math:`\\ell`. A row with no
allowed key gets ``o = 0`` and ``lse = +inf`` (the backward's :math:`e^{s - \\mathrm{lse}}` is then 0).
Accumulation is in float32 for every input dtype (float64 for float64 inputs: ``ACC``). An additive bias
tensor is added to the tile's scores (``-inf`` forbids a key, like a mask).
"""

from __future__ import annotations

import triton
import triton.language as tl

from qkv.kernels.triton.tiles import (
    additive_scores,
    allowed_tile,
    bias_tile,
    gaussian_tile,
    load_rows,
    query_centres,
    row_views,
)

__all__ = ["attention_forward"]


@triton.jit
def attention_forward(
    Q, K, V, W, O, LSE, RANGES, MASK, LENGTHS, POS_A, POS_G, BIAS,
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
    rows = pid_m * BM + tl.arange(0, BM)  # (BM,)
    fs = tl.arange(0, BF)
    ds = tl.arange(0, BDV)
    ns = tl.arange(0, BN)
    row_ok = rows < L
    Qz = Q + z * L * F
    Kz = K + z * S * F
    if not ADDITIVE:  # dot products keep the query tile in registers; the additive score reads chunks
        q = load_rows(Qz, rows, row_ok, fs, F)  # (BM, BF)
    length, mask_z, bias_z = row_views(z, S, HEADS, LENGTHS, MASK, BIAS, stride_mb, stride_mh, stride_bb, stride_bh,
                                       HAS_LEN)
    pos_a, pos_g = query_centres(POS_A, POS_G, z, L, rows, row_ok, HAS_AROUND, HAS_GAUSS, ACC, BM)

    lo = tl.load(RANGES + (z * NQ + pid_m) * 2)
    hi = tl.load(RANGES + (z * NQ + pid_m) * 2 + 1)
    lo = (lo // BN) * BN
    m_i = tl.full((BM,), float("-inf"), ACC)
    l_i = tl.zeros((BM,), ACC)
    acc = tl.zeros((BM, BDV), ACC)
    for n0 in range(lo, hi, BN):
        cols = n0 + ns  # (BN,)
        col_ok = cols < S
        v = tl.load(V + z * S * DV + cols[:, None] * DV + ds[None, :], mask=col_ok[:, None] & (ds[None, :] < DV),
                    other=0.0)
        if ADDITIVE:
            s = additive_scores(Qz, Kz, W, rows, row_ok, cols, col_ok, F, BM, BN, BA, ACC)  # (BM, BN)
        else:
            k = load_rows(Kz, cols, col_ok, fs, F)  # (BN, BF)
            s = tl.dot(q.to(MM), tl.trans(k.to(MM)), input_precision=PRECISION).to(ACC)  # (BM, BN)
        ok = allowed_tile(rows, cols, L, S, mask_z, stride_ml, stride_ms, band_lo, band_hi, length, pos_a, window,
                          HAS_MASK, HAS_BAND, HAS_LEN, HAS_AROUND)
        if HAS_BIAS:
            s = s + bias_tile(bias_z, rows, cols, stride_bl, stride_bs, ok, ACC)
        s = tl.where(ok, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(s - m_safe[:, None])  # 0 where masked
        alpha = tl.exp(m_i - m_safe)  # 0 while m_i = -inf
        l_i = l_i * alpha + tl.sum(p, 1)
        if HAS_GAUSS:  # eq. 10: the factor multiplies the weights, not the normaliser
            p = p * gaussian_tile(cols, pos_g, inv_two_sigma2)
        acc = acc * alpha[:, None] + tl.dot(p.to(MM), v.to(MM), input_precision=PRECISION).to(ACC)
        m_i = m_new
    nonempty = l_i > 0
    l_safe = tl.where(nonempty, l_i, 1.0)
    out = acc / l_safe[:, None]
    lse = tl.where(nonempty, m_i + tl.log(l_safe), float("inf"))
    tl.store(O + z * L * DV + rows[:, None] * DV + ds[None, :], out.to(O.dtype.element_ty),
             mask=row_ok[:, None] & (ds[None, :] < DV))
    tl.store(LSE + z * L + rows, lse, mask=row_ok)
