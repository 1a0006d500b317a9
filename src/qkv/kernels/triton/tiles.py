"""Triton device functions shared by the forward and backward kernels: one tile's scores, mask and Gaussian.

Shape legend: ``BM`` rows of a query tile, ``BN`` columns of a key tile, ``F`` the features (the
dot product's ``D``, or the additive score's hidden width ``A``), ``BA`` a chunk of the hidden units.

* :func:`additive_scores`, :func:`additive_grads` — Bahdanau's additive score
  :math:`s_{ij} = w^\\top \\tanh(h_{q,i} + h_{k,j})` (Bahdanau et al. 2015, eq. 6) of a tile and its
  backward, on ``(BM, BN, BA)`` blocks (``BA`` hidden units at a time) held in registers, with
  :math:`\\tanh x = 2\\sigma(2x) - 1`. (Dot-kind scores are one ``tl.dot`` in the kernels, the scale and
  any bilinear ``W`` applied outside.)
* :func:`allowed_tile` — the mask, evaluated exactly: bounds, bands (causal, window), padding
  lengths, Luong's local window and a bool tensor read through its strides.
* :func:`bias_tile` — an additive bias tensor read through its strides (``-inf`` forbids, like a mask);
* :func:`gaussian_tile` — Luong et al. 2015 eq. 10's factor :math:`\\exp(-(s - p_t)^2 / 2\\sigma^2)`.

This module imports ``triton``; :mod:`qkv.kernels.triton` imports it only when a kernel runs.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["additive_grads", "additive_scores", "allowed_tile", "bias_tile", "gaussian_tile", "load_rows",
           "query_centres", "row_views", "tanh_tile"]


@triton.jit
def tanh_tile(q, k, ACC: tl.constexpr):
    """``tanh(q_i + k_j)``: ``q (BM, BA)``, ``k (BN, BA)`` -> ``(BM, BN, BA)`` in ``ACC`` (float32, or float64)."""
    z = q.to(ACC)[:, None, :] + k.to(ACC)[None, :, :]
    return 2.0 * tl.sigmoid(2.0 * z) - 1.0


@triton.jit
def row_views(z, S, HEADS, LENGTHS, MASK, BIAS, stride_mb, stride_mh, stride_bb, stride_bh, HAS_LEN: tl.constexpr):
    """Batch row ``z`` (one ``(b, h)`` pair): its key length and the bases of its mask and bias views."""
    length = S
    if HAS_LEN:
        length = tl.load(LENGTHS + z)
    mask_z = MASK + (z // HEADS) * stride_mb + (z % HEADS) * stride_mh
    bias_z = BIAS + (z // HEADS) * stride_bb + (z % HEADS) * stride_bh
    return length, mask_z, bias_z


@triton.jit
def query_centres(POS_A, POS_G, z, L, rows, row_ok, HAS_AROUND: tl.constexpr, HAS_GAUSS: tl.constexpr,
                  ACC: tl.constexpr, BM: tl.constexpr):
    """The query tile's centres ``(BM,)``: of Luong's local window and of the local-p Gaussian (zeros when absent)."""
    pos_a = tl.zeros((BM,), ACC)
    if HAS_AROUND:
        pos_a = tl.load(POS_A + z * L + rows, mask=row_ok, other=0.0)
    pos_g = tl.zeros((BM,), ACC)
    if HAS_GAUSS:
        pos_g = tl.load(POS_G + z * L + rows, mask=row_ok, other=0.0)
    return pos_a, pos_g


@triton.jit
def load_rows(PTR, rows, row_ok, fs, F):
    """``(R, C)`` block ``PTR[rows, fs]`` of a row-major ``(N, F)`` matrix (zeros outside)."""
    return tl.load(PTR + rows[:, None] * F + fs[None, :], mask=row_ok[:, None] & (fs[None, :] < F), other=0.0)


@triton.jit
def additive_scores(QP, KP, W, rows, row_ok, cols, col_ok, F, BM: tl.constexpr, BN: tl.constexpr,
                    BA: tl.constexpr, ACC: tl.constexpr):
    """Bahdanau's :math:`s_{ij} = w^\\top \\tanh(h_{q,i} + h_{k,j})` on a ``(BM, BN)`` tile, ``(BM, BN)`` in ``ACC``.

    ``QP (L, F)``/``KP (S, F)`` this batch row's projections, ``W (F,)``; the hidden layer is walked in
    chunks of ``BA`` units, so the ``(BM, BN, BA)`` tanh block stays in registers.
    """
    s = tl.zeros((BM, BN), ACC)
    fa = tl.arange(0, BA)
    for a0 in range(0, F, BA):
        f = a0 + fa
        h = tanh_tile(load_rows(QP, rows, row_ok, f, F), load_rows(KP, cols, col_ok, f, F), ACC)  # (BM, BN, BA)
        wa = tl.load(W + f, mask=f < F, other=0.0).to(ACC)
        s += tl.sum(h * wa[None, None, :], axis=2)
    return s


@triton.jit
def additive_grads(QP, KP, W, D_OUT, DW, rows, row_ok, cols, col_ok, dsc, F, BA: tl.constexpr,
                   ACC: tl.constexpr, FOR_KEYS: tl.constexpr):
    """Push a tile's :math:`ds` through the additive score, chunk by chunk of the hidden layer.

    :math:`\\partial s_{ij}/\\partial h = w \\odot (1 - \\tanh^2)`: summed over queries into ``D_OUT``'s key
    rows (``FOR_KEYS``, with :math:`dw = \\sum_{ij} ds_{ij} \\tanh(\\cdot)` into ``DW``), or over keys into
    its query rows. The rows belong to this program alone; ``atomic_add`` (uncontended) keeps the
    read-modify-write safe across the threads that hold different layouts of the same block.
    """
    fa = tl.arange(0, BA)
    for a0 in range(0, F, BA):
        f = a0 + fa
        h = tanh_tile(load_rows(QP, rows, row_ok, f, F), load_rows(KP, cols, col_ok, f, F), ACC)  # (BM, BN, BA)
        wa = tl.load(W + f, mask=f < F, other=0.0).to(ACC)
        g = dsc[:, :, None] * h  # ds * tanh
        dpre = (dsc[:, :, None] - g * h) * wa[None, None, :]  # ds * (1 - tanh^2) * w
        if FOR_KEYS:
            d = tl.sum(dpre, axis=0)  # (BN, BA)
            tl.atomic_add(D_OUT + cols[:, None] * F + f[None, :], d, mask=col_ok[:, None] & (f[None, :] < F))
            tl.atomic_add(DW + f, tl.sum(tl.sum(g, axis=0), axis=0), mask=f < F)
        else:
            d = tl.sum(dpre, axis=1)  # (BM, BA)
            tl.atomic_add(D_OUT + rows[:, None] * F + f[None, :], d, mask=row_ok[:, None] & (f[None, :] < F))


@triton.jit
def allowed_tile(rows, cols, L, S, MASK, stride_ml, stride_ms, band_lo, band_hi, length, pos, window,
                 HAS_MASK: tl.constexpr, HAS_BAND: tl.constexpr, HAS_LEN: tl.constexpr,
                 HAS_AROUND: tl.constexpr):
    """``(BM, BN)`` bool: True where query ``rows[i]`` may attend to key ``cols[j]`` (True = may attend).

    ``MASK`` points at this batch row's ``(L|1, S|1)`` plane of the bool tensor (strides 0 where it
    broadcasts); ``pos (BM,)`` the local window's centres.
    """
    ok = (rows[:, None] < L) & (cols[None, :] < S)
    if HAS_BAND:
        rel = cols[None, :] - rows[:, None]
        ok = ok & (rel >= band_lo) & (rel <= band_hi)
    if HAS_LEN:
        ok = ok & (cols[None, :] < length)
    if HAS_AROUND:
        ok = ok & (tl.abs(cols[None, :].to(pos.dtype) - pos[:, None]) <= window)
    if HAS_MASK:
        m = tl.load(MASK + rows[:, None] * stride_ml + cols[None, :] * stride_ms, mask=ok, other=0)
        ok = ok & (m != 0)
    return ok


@triton.jit
def gaussian_tile(cols, pos, inv_two_sigma2):
    """Luong's local-p factor ``exp(-(j - p_i)^2 / (2 sigma^2))``: ``(BM, BN)`` in ``pos``'s dtype (eq. 10)."""
    d = cols[None, :].to(pos.dtype) - pos[:, None]
    return tl.exp(-d * d * inv_two_sigma2)


@triton.jit
def bias_tile(BIAS, rows, cols, stride_bl, stride_bs, ok, ACC: tl.constexpr):
    """An additive bias's ``(BM, BN)`` tile (``BIAS`` at this batch row's plane; 0 where not ``ok``)."""
    b = tl.load(BIAS + rows[:, None] * stride_bl + cols[None, :] * stride_bs, mask=ok, other=0.0)
    return b.to(ACC)
