"""Tiled online-softmax attention for any score function, forward and backward, in linear memory.

Shape legend: ``...`` broadcast batch dims (typically ``(B, H)``); ``L`` queries, ``S`` keys,
``D`` query/key feature width after the score's own projection, ``A`` the additive score's
hidden width, ``Dv`` value width; ``Tq``/``Tk`` a query/key tile.

The algorithm is FlashAttention's (Dao et al. 2022, Alg. 1; Dao 2023, FlashAttention-2 §3.1),
written with PyTorch ops and generalised from a dot product to any score :math:`s(q_i, k_j)`.
For each block of queries it walks the key tiles, keeping a running maximum :math:`m_i`,
normaliser :math:`\\ell_i` and un-normalised output :math:`a_i`:

.. math::  m_i' = \\max(m_i, \\max_j s_{ij}),\\quad
           \\ell_i' = e^{m_i - m_i'}\\ell_i + \\sum_j e^{s_{ij} - m_i'},\\quad
           a_i' = e^{m_i - m_i'} a_i + \\sum_j e^{s_{ij} - m_i'} g_{ij} v_j,

and returns :math:`o_i = a_i / \\ell_i` and the log-sum-exp :math:`\\mathrm{lse}_i = m_i + \\log \\ell_i`
(``g = 1``, except under a weight modifier (:mod:`qkv.functional.modifiers`), whose factor
:math:`g_{ij}` multiplies the normalised weights without renormalising — Luong's local-p Gaussian,
Luong et al. 2015 eq. 10). Backward
(:class:`_TiledAttention`) keeps only ``o`` and ``lse``, recomputes each tile's
:math:`P_{ij} = e^{s_{ij} - \\mathrm{lse}_i}` and uses (FlashAttention eq. in App. B.2, with ``g``)

.. math::  dv_j = \\sum_i P_{ij} g_{ij}\\, do_i,\\quad dP_{ij} = do_i^\\top v_j,\\quad
           \\Delta_i = do_i^\\top o_i,\\quad ds_{ij} = P_{ij}(g_{ij}\\, dP_{ij} - \\Delta_i),

then pushes :math:`ds` through the score of the tile, and :math:`p_{ij}\\, dP_{ij}` (the gradient
of the factor) through the modifier's tile to its parameters. Memory: ``O((L + S)·D)`` plus one tile,
``O(Tq·Tk)`` for dot products and ``O(Tq·Tk·A)`` for the additive score; no ``(L, S)`` tensor.

The score's declared structure (:func:`qkv.functional.scores.structure`) is exploited: a score
of kind ``"dot"`` (dot, scaled dot, cosine, bilinear, ...) becomes a plain dot product of its
``dot_features`` (``q·scale``, normalised ``q``/``k``, ``W q``), computed once outside the tiles
with ordinary autograd; a score of kind ``"additive"`` projects :math:`U q` and :math:`W k` once
(``additive_features``), so a tile only computes
:math:`\\tanh(U q_i + W k_j)^\\top v` (Bahdanau et al. 2015, eq. 6), evaluated as
:math:`2\\sigma(2 U q_i + 2 W k_j)^\\top v` — equal up to the constant :math:`-\\sum v`, which
the softmax ignores — because the logistic function is several times cheaper than tanh on CPU. Any other callable is
evaluated tile by tile and differentiated with :func:`torch.autograd.grad`, its parameters
(an ``nn.Module``'s) passed to the autograd Function as inputs. A callable must be
*row-local*: the score of ``(i, j)`` depends only on query ``i`` and key ``j``.

Masks (:mod:`qkv.functional.masks`), biases (:mod:`qkv.functional.biases`) and weight modifiers
are evaluated per tile through their lazy protocol; key ranges outside
:meth:`~qkv.functional.masks.Mask.kv_bounds` and tiles whose mask is all false are skipped, so a
window of width ``w`` costs ``O(L·w)``. A row with no allowed key gets zeros and zero gradients.

The loops are :func:`forward_block` and :func:`backward_block`: one block of queries against one
block of keys, their first row and column at global offsets of the plane (:class:`TilePlan`); the
tiled kernel is one block at offset 0, ring attention (:mod:`qkv.kernels.ring`) many.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qkv.functional.biases import Bias, TensorBias
from qkv.functional.masks import Mask
from qkv.functional.modifiers import WeightModifier
from qkv.functional.output import AttentionOutput
from qkv.functional.scores import captures_grad, is_opaque
from qkv.kernels.call import AttentionCall

__all__ = [
    "DEFAULT_TILES",
    "TilePlan",
    "backward_block",
    "forward_block",
    "prepare_tiled",
    "tiled_attention",
    "tiled_backend",
    "tiled_unsupported",
]

#: Default ``(tile_q, tile_k)`` per score kind, measured on a 2-core CPU (``qkv bench``): dot
#: products like large query blocks (matmuls amortise Python overhead); the additive tile
#: ``(..., Tq, Tk, A)`` is kept near the L2 cache.
DEFAULT_TILES: dict[str, tuple[int, int]] = {"dot": (256, 256), "additive": (32, 64), "pairwise": (128, 128)}


@dataclass
class TilePlan:
    """What the autograd Function needs besides tensors.

    ``L`` and ``S`` are the sizes of the whole score plane that masks and biases see; a *block*
    (:func:`forward_block`, :func:`backward_block`) may hold only some of its queries and keys, its
    first query at global row ``q_offset`` and its first key at global column ``k_offset`` (the ring
    kernel, :mod:`qkv.kernels.ring`, walks such blocks; the tiled kernel has one block, offsets 0).
    """

    kind: str  # "dot" | "additive" | "pairwise"
    fn: Callable[[Tensor, Tensor], Tensor] | None  # the tile score, for kind "pairwise"
    n_score_params: int  # leading entries of ``params`` that belong to the score
    n_bias_params: int  # the next entries belong to a lazy bias; the rest to the modifier
    mask: Mask | None
    bias: Bias | None  # a lazy bias other than a plain tensor (that one is the input ``bias_t``)
    modifier: WeightModifier | None
    L: int
    S: int
    tile_q: int
    tile_k: int
    compute_dtype: torch.dtype
    compiled: bool = False  # additive tiles through torch.compile'd functions (see _compiled_additive)
    q_offset: int = 0  # global row of the block's first query
    k_offset: int = 0  # global column of the block's first key

    def lazy_tile(self, lazy, q0: int, q1: int, k0: int, k1: int, device: torch.device) -> Tensor:
        """A lazy field's tile at the block's local rows ``[q0, q1)`` and columns ``[k0, k1)`` (global positions)."""
        qo, ko = self.q_offset, self.k_offset
        return lazy.tile(q0 + qo, q1 + qo, k0 + ko, k1 + ko, L=self.L, S=self.S, device=device)


def tiled_unsupported(call: AttentionCall) -> str | None:
    """Why the tiled kernel cannot compute ``call`` (``None`` when it can): softmax, no dropout, no weights."""
    if not call.is_softmax:
        return f"it computes softmax only, got normalize={call.normalize!r}"
    if call.dropout:
        return f"it applies no dropout, got dropout={call.dropout}"
    if call.return_weights or call.return_scores:
        return "it returns no weights or scores (return_weights/return_scores need backend='naive')"
    opaque = call.kind == "pairwise" and is_opaque(call.score) and torch.is_grad_enabled()
    if opaque and captures_grad(call.score, call.q, call.k):
        return ("the score is a plain function that captures tensors requiring grad, whose gradients it "
                "would lose; make the score an nn.Module (its parameters are differentiated)")
    return None


def _features(call: AttentionCall) -> tuple[Tensor, Tensor, list[Tensor], Callable | None]:
    """The score as ``(q-features, k-features, score params, tile fn)``, projections by ordinary autograd."""
    q, k, score = call.q, call.k, call.score
    if call.kind == "dot":
        qf, kf, c = score.dot_features(q, k)
        return qf * c, kf, [], None
    if call.kind == "additive":
        # v^T tanh(z) = 2 v^T sigmoid(2 z) - sum(v), and softmax ignores the constant: the tile
        # evaluates sigmoid(u_i + u_j)^T w with u = 2 (U q + b), 2 W k and w = 2 v (sigmoid is ~5x
        # cheaper than tanh on CPU, and it dominates the tile's cost).
        hq, hk, v = score.additive_features(q, k)  # (..., L, A), (..., S, A), (A,)
        return 2 * hq, 2 * hk, [2 * v], None
    params = [p for p in score.parameters() if p.requires_grad] if isinstance(score, nn.Module) else []
    return q, k, params, score


def tiled_attention(call: AttentionCall, *, tile_q: int | None = None, tile_k: int | None = None) -> Tensor:
    """The tiled kernel on a validated call; returns the output ``(*batch_shape, L, Dv)``.

    Args:
        tile_q, tile_k: query and key tile sizes (default :data:`DEFAULT_TILES` by score kind).
    """
    reason = tiled_unsupported(call)
    if reason:
        raise ValueError(f"backend 'tiled' cannot compute this call: {reason}")
    plan, qf, kf, v, bias_input, params = prepare_tiled(call, tile_q=tile_q, tile_k=tile_k)
    return _TiledAttention.apply(plan, qf, kf, v, bias_input, *params)


def prepare_tiled(call: AttentionCall, *, tile_q: int | None = None, tile_k: int | None = None):
    """The tiled kernel's inputs for ``call``: ``(plan, qf, kf, v, bias_tensor, params)``.

    ``qf``/``kf`` are the score's query/key features (projected once by ordinary autograd), ``v`` the
    values, all expanded to the batch shape; ``bias_tensor`` a plain bias tensor (else ``None``);
    ``params`` the score's, then the lazy bias's, then the modifier's differentiable tensors.
    """
    qf, kf, score_params, fn = _features(call)
    shape = call.batch_shape
    qf = qf.expand(*shape, *qf.shape[-2:])  # (..., L, D)
    kf = kf.expand(*shape, *kf.shape[-2:])  # (..., S, D)
    v = call.v.expand(*shape, *call.v.shape[-2:])  # (..., S, Dv)
    dq, dk = DEFAULT_TILES[call.kind]
    tq = dq if tile_q is None else tile_q
    tk = dk if tile_k is None else tile_k
    for name, t in (("tile_q", tq), ("tile_k", tk)):
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ValueError(f"{name} must be a positive int, got {t!r}")

    bias = call.bias
    bias_input = bias.tensor if isinstance(bias, TensorBias) else None  # its gradient is accumulated directly
    lazy_bias = None if bias_input is not None else bias
    bias_params = [] if lazy_bias is None else lazy_bias.parameters()
    modifier_params = [] if call.modifier is None else call.modifier.parameters()
    dtype = torch.float32 if v.dtype in (torch.float16, torch.bfloat16) else v.dtype
    plan = TilePlan(
        kind=call.kind, fn=fn, n_score_params=len(score_params), n_bias_params=len(bias_params), mask=call.mask,
        bias=lazy_bias, modifier=call.modifier, L=call.L, S=call.S, tile_q=tq, tile_k=tk, compute_dtype=dtype,
        compiled=call.kind == "additive" and _compile_worthwhile(qf, kf, call, dtype),
    )
    return plan, qf, kf, v, bias_input, [*score_params, *bias_params, *modifier_params]


def tiled_backend(call: AttentionCall) -> AttentionOutput:
    """Backend entry point: ``attend(..., backend="tiled")``."""
    return AttentionOutput(output=tiled_attention(call))


# --------------------------------------------------------------------------------------------
# the tile loop, shared by forward and backward


def _tiles(plan: TilePlan, q0: int, q1: int, n_keys: int, device: torch.device):
    """Yield ``(k0, k1, allowed)`` for the key tiles (of a block of ``n_keys``) a query tile may attend to.

    ``allowed`` is the tile's bool mask, broadcastable to ``(..., Tq, Tk)``, or ``None`` (no mask).
    """
    lo, hi = 0, n_keys
    if plan.mask is not None:
        qo, ko = plan.q_offset, plan.k_offset
        g_lo, g_hi = plan.mask.kv_bounds(q0 + qo, q1 + qo, L=plan.L, S=plan.S)  # global key bounds
        lo, hi = min(n_keys, max(0, g_lo - ko)), max(0, min(n_keys, g_hi - ko))
    for k0 in range(lo, max(lo, hi), plan.tile_k):
        k1 = min(hi, k0 + plan.tile_k)
        allowed = None if plan.mask is None else plan.lazy_tile(plan.mask, q0, q1, k0, k1, device)
        if allowed is not None and not bool(allowed.any()):
            continue  # the mask rules the whole tile out
        yield k0, k1, allowed


#: Compile the additive tile functions when the problem has at least this many hidden
#: elements ``B·H·L·S·A`` (eager: ~1 s on one CPU core; compiling costs a few seconds, once
#: per tile shape and process). ``QKV_COMPILE_TILES=0`` turns compilation off, ``=1`` forces it.
COMPILE_MIN_ELEMENTS = 1 << 28


def _compile_worthwhile(qf: Tensor, kf: Tensor, call: AttentionCall, dtype: torch.dtype) -> bool:
    flag = os.environ.get("QKV_COMPILE_TILES", "")
    if flag == "0" or _COMPILE_FAILED or torch.compiler.is_compiling():
        return False
    if qf.dtype != torch.float32 or dtype != torch.float32 or qf.device.type not in ("cpu", "cuda"):
        return False
    if flag == "1":
        return True
    return math.prod(call.batch_shape) * call.L * call.S * qf.shape[-1] >= COMPILE_MIN_ELEMENTS


_COMPILE_FAILED = False


def _additive_scores_eager(uq_t: Tensor, uk_t: Tensor, w: Tensor) -> Tensor:
    return torch.matmul(_additive_hidden(uq_t, uk_t), w)  # (..., Tq, Tk)


def _additive_grads_eager(uq_t: Tensor, uk_t: Tensor, w: Tensor, ds: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(dw, duq, duk)`` of ``s = sigmoid(uq_i + uk_j)^T w`` given ``ds (..., Tq, Tk)``."""
    hidden = _additive_hidden(uq_t, uk_t)  # (..., Tq, Tk, A)
    dw = (ds.reshape(1, -1) @ hidden.reshape(-1, hidden.shape[-1])).squeeze(0)  # (A,)
    dpre = torch.ops.aten.sigmoid_backward(ds.unsqueeze(-1), hidden)  # (..., Tq, Tk, A)
    return dw, dpre.sum(dim=-2) * w, dpre.sum(dim=-3) * w


def _additive_scores_fused(uq_t: Tensor, uk_t: Tensor, w: Tensor) -> Tensor:
    return (torch.sigmoid(uq_t.unsqueeze(-2) + uk_t.unsqueeze(-3)) * w).sum(-1)  # (..., Tq, Tk)


def _additive_grads_fused(uq_t: Tensor, uk_t: Tensor, w: Tensor, ds: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    h = torch.sigmoid(uq_t.unsqueeze(-2) + uk_t.unsqueeze(-3))  # (..., Tq, Tk, A), fused away when compiled
    dw = (ds.unsqueeze(-1) * h).sum(dim=tuple(range(h.dim() - 1)))
    dpre = ds.unsqueeze(-1) * h * (1 - h)
    return dw, dpre.sum(dim=-2) * w, dpre.sum(dim=-3) * w


@functools.cache
def _compiled_additive():
    """The additive tile functions compiled by ``torch.compile`` (inductor fuses the ``(Tq, Tk, A)``
    sigmoid into the reductions, so the hidden tensor is never written to memory)."""
    return (
        torch.compile(_additive_scores_fused, dynamic=False),
        torch.compile(_additive_grads_fused, dynamic=False),
    )


def _pad_rows(x: Tensor, n: int) -> Tensor:
    """Zero-pad dim -2 of ``x`` to ``n`` rows (ragged last tiles keep the compiled shapes)."""
    short = n - x.shape[-2]
    x = x.detach()  # the compiled functions see plain tensors (no requires_grad guards, no recompiles)
    return (x if short == 0 else torch.nn.functional.pad(x, (0, 0, 0, short))).contiguous()


def _additive_scores(plan: TilePlan, uq_t: Tensor, uk_t: Tensor, w: Tensor) -> Tensor:
    global _COMPILE_FAILED
    if plan.compiled:
        tq, tk = uq_t.shape[-2], uk_t.shape[-2]
        try:
            s = _compiled_additive()[0](
                _pad_rows(uq_t, plan.tile_q), _pad_rows(uk_t, plan.tile_k), w.detach().contiguous()
            )
            return s[..., :tq, :tk]
        except Exception as e:  # no compiler, unsupported platform: stay correct, go eager
            _COMPILE_FAILED, plan.compiled = True, False
            warnings.warn(f"qkv: compiling the additive tile failed ({type(e).__name__}); using eager ops",
                          stacklevel=2)
    return _additive_scores_eager(uq_t, uk_t, w)


def _additive_grads(plan: TilePlan, uq_t: Tensor, uk_t: Tensor, w: Tensor, ds: Tensor):
    global _COMPILE_FAILED
    if plan.compiled:
        tq, tk = uq_t.shape[-2], uk_t.shape[-2]
        try:
            ds_p = torch.nn.functional.pad(ds.detach(), (0, plan.tile_k - tk, 0, plan.tile_q - tq)).contiguous()
            dw, duq, duk = _compiled_additive()[1](
                _pad_rows(uq_t, plan.tile_q), _pad_rows(uk_t, plan.tile_k), w.detach().contiguous(), ds_p
            )
            return dw, duq[..., :tq, :], duk[..., :tk, :]
        except Exception as e:
            _COMPILE_FAILED, plan.compiled = True, False
            warnings.warn(f"qkv: compiling the additive tile failed ({type(e).__name__}); using eager ops",
                          stacklevel=2)
    return _additive_grads_eager(uq_t, uk_t, w, ds)


def _additive_hidden(uq_t: Tensor, uk_t: Tensor) -> Tensor:
    """``sigmoid(u_i + u_j)`` for a tile, ``(..., Tq, Tk, A)``: the additive score's hidden layer."""
    return torch.sigmoid_(uq_t.unsqueeze(-2) + uk_t.unsqueeze(-3))  # (..., Tq, Tk, A)


def _tile_scores(plan: TilePlan, qf_t: Tensor, kf_t: Tensor, params: tuple[Tensor, ...]) -> Tensor:
    """Raw scores of one tile ``(..., Tq, Tk)`` (no bias, no mask); half-precision dot products in float32."""
    if plan.kind == "dot":
        cd = plan.compute_dtype
        return torch.matmul(qf_t.to(cd), kf_t.to(cd).transpose(-1, -2))  # (..., Tq, Tk)
    if plan.kind == "additive":
        return _additive_scores(plan, qf_t, kf_t, params[0])  # (..., Tq, Tk)
    s = plan.fn(qf_t, kf_t)
    expected = (qf_t.shape[-2], kf_t.shape[-2])
    if not isinstance(s, Tensor) or tuple(s.shape[-2:]) != expected:
        got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
        raise ValueError(f"score must return scores of shape (..., Tq, Tk) = (..., {expected}) on a tile, got {got}")
    return s


def _masked_scores(plan, raw: Tensor, bias_t, q0, q1, k0, k1, allowed) -> Tensor:
    """A tile's raw scores plus its bias, with ``-inf`` where the mask forbids: ``(..., Tq, Tk)``."""
    s = raw.to(plan.compute_dtype)
    bias = TensorBias(bias_t) if bias_t is not None else plan.bias
    if bias is not None:
        s = s + plan.lazy_tile(bias, q0, q1, k0, k1, raw.device).to(plan.compute_dtype)
    if allowed is not None:
        s = s.masked_fill(~allowed, float("-inf"))
    return s  # (..., Tq, Tk)


def _lazy_grads(lazy, q0, q1, k0, k1, plan: TilePlan, params: tuple[Tensor, ...], grad: Tensor, device):
    """Gradients of ``params`` through one tile of a lazy bias or modifier, given the tile's gradient ``grad``."""
    with torch.enable_grad():
        t = plan.lazy_tile(lazy, q0, q1, k0, k1, device)
        if not t.requires_grad:
            return [None] * len(params)
        return torch.autograd.grad(t, params, _reduce_to(grad, t.shape).to(t.dtype), allow_unused=True)


def _reduce_to(x: Tensor, shape: torch.Size) -> Tensor:
    """Sum ``x`` over the dims along which a tensor of ``shape`` was broadcast to it."""
    lead = x.dim() - len(shape)
    if lead:
        x = x.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
    return x.sum(dim=dims, keepdim=True) if dims else x


def _slices(shape: torch.Size, q0, q1, k0, k1) -> tuple:
    rows = slice(q0, q1) if len(shape) >= 2 and shape[-2] != 1 else slice(None)
    cols = slice(k0, k1) if shape[-1] != 1 else slice(None)
    return (Ellipsis, rows, cols) if len(shape) >= 2 else (Ellipsis, cols)


def forward_block(plan: TilePlan, qf: Tensor, kf: Tensor, v: Tensor, bias_t: Tensor | None,
                  params: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    """Online softmax of one block of queries over one block of keys: ``(out, lse)``.

    ``qf (..., Lb, D)``, ``kf (..., Sb, D)``, ``v (..., Sb, Dv)`` hold the plane's rows from
    ``plan.q_offset`` and columns from ``plan.k_offset``; masks and biases are evaluated there.
    Returns ``out (..., Lb, Dv)`` and ``lse (..., Lb)`` in ``plan.compute_dtype``; a row with no
    allowed key in the block has ``out = 0`` and ``lse = +inf`` (so that ``exp(s - lse) = 0``).
    """
    dtype = plan.compute_dtype
    device = qf.device
    batch = qf.shape[:-2]
    n_q, n_k = qf.shape[-2], kf.shape[-2]
    out = torch.zeros((*batch, n_q, v.shape[-1]), dtype=dtype, device=device)  # (..., Lb, Dv)
    lse = torch.full((*batch, n_q), float("inf"), dtype=dtype, device=device)  # (..., Lb)
    vc = v.to(dtype)
    for q0 in range(0, n_q, plan.tile_q):
        q1 = min(n_q, q0 + plan.tile_q)
        m = torch.full((*batch, q1 - q0, 1), float("-inf"), dtype=dtype, device=device)  # (..., Tq, 1)
        ell = torch.zeros_like(m)
        acc = torch.zeros((*batch, q1 - q0, v.shape[-1]), dtype=dtype, device=device)  # (..., Tq, Dv)
        for k0, k1, allowed in _tiles(plan, q0, q1, n_k, device):
            raw = _tile_scores(plan, qf[..., q0:q1, :], kf[..., k0:k1, :], params)
            s = _masked_scores(plan, raw, bias_t, q0, q1, k0, k1, allowed)
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
            p = torch.exp(s - m_safe)  # (..., Tq, Tk); 0 where masked
            alpha = torch.exp(m - m_safe)  # 0 while m = -inf
            ell = ell * alpha + p.sum(dim=-1, keepdim=True)
            if plan.modifier is not None:  # the factor multiplies the weights only, not the normaliser
                p = p * plan.lazy_tile(plan.modifier, q0, q1, k0, k1, device).to(dtype)
            acc = acc * alpha + torch.matmul(p, vc[..., k0:k1, :])
            m = m_new
        nonempty = ell > 0
        out[..., q0:q1, :] = acc / torch.where(nonempty, ell, torch.ones_like(ell))
        block_lse = torch.where(nonempty, m + torch.log(ell), torch.full_like(m, float("inf")))
        lse[..., q0:q1] = block_lse.squeeze(-1)
    return out, lse


def backward_block(plan: TilePlan, qf: Tensor, kf: Tensor, v: Tensor, bias_t: Tensor | None,
                   params: tuple[Tensor, ...], do: Tensor, delta: Tensor, lse: Tensor,
                   need: tuple[bool, ...], into: tuple[Tensor, Tensor, Tensor] | None = None,
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, list[Tensor]]:
    """Gradients of one block pair (see :func:`forward_block`) given the *final* row statistics.

    ``do (..., Lb, Dv)`` the output's gradient, ``delta (..., Lb)`` = ``rowsum(do * o)`` of the final
    output, ``lse (..., Lb)`` the final log-sum-exp (``+inf`` for empty rows), all in
    ``plan.compute_dtype``; ``need`` = ``ctx.needs_input_grad`` of ``(plan, qf, kf, v, bias_t, *params)``.
    Returns ``(dqf, dkf, dv, dbias, dparams)`` in ``plan.compute_dtype`` (``dbias`` over the whole
    bias tensor, or ``None``); each is this block pair's share, to be summed over the blocks.
    ``into``: ``(dqf, dkf, dv)`` buffers (``plan.compute_dtype``) to accumulate into instead of new ones.
    """
    dtype = plan.compute_dtype
    device = qf.device
    n_q, n_k = qf.shape[-2], kf.shape[-2]
    vc = v.to(dtype)
    if into is None:
        dqf, dkf, dv = (torch.zeros_like(t, dtype=dtype) for t in (qf, kf, v))
    else:
        dqf, dkf, dv = into
    dbias = torch.zeros_like(bias_t, dtype=dtype) if bias_t is not None and need[4] else None
    dparams: list[Tensor] = [torch.zeros_like(p, dtype=dtype) for p in params]
    ns, nb = plan.n_score_params, plan.n_bias_params
    score_params, bias_params, modifier_params = params[:ns], params[ns : ns + nb], params[ns + nb :]
    need_bias_params = any(need[5 + ns : 5 + ns + nb])
    need_modifier_params = any(need[5 + ns + nb :])
    qo, ko = plan.q_offset, plan.k_offset

    def accumulate(offset: int, grads) -> None:
        for i, g_ in enumerate(grads, start=offset):
            if g_ is not None:
                dparams[i] += g_.to(dtype)

    for q0 in range(0, n_q, plan.tile_q):
        q1 = min(n_q, q0 + plan.tile_q)
        lse_t = lse[..., q0:q1, None]  # (..., Tq, 1)
        do_t = do[..., q0:q1, :]  # (..., Tq, Dv)
        delta_t = delta[..., q0:q1, None]  # (..., Tq, 1)
        for k0, k1, allowed in _tiles(plan, q0, q1, n_k, device):
            qf_t, kf_t = qf[..., q0:q1, :], kf[..., k0:k1, :]
            if plan.kind == "pairwise":  # scores once, with the graph kept for the score's backward
                with torch.enable_grad():
                    qt = qf_t.detach().requires_grad_()
                    kt = kf_t.detach().requires_grad_()
                    st = _tile_scores(plan, qt, kt, params)
                raw = st.detach()
            else:
                raw = _tile_scores(plan, qf_t, kf_t, params)
            s = _masked_scores(plan, raw, bias_t, q0, q1, k0, k1, allowed)
            p = torch.exp(s - lse_t)  # (..., Tq, Tk): the normalised softmax weights
            dp = torch.matmul(do_t, vc[..., k0:k1, :].transpose(-1, -2))  # (..., Tq, Tk)
            if plan.modifier is not None:
                g = plan.lazy_tile(plan.modifier, q0, q1, k0, k1, device).to(dtype)
                w = p * g  # (..., Tq, Tk)
                if need_modifier_params:  # d loss / d g = p * dP
                    accumulate(ns + nb, _lazy_grads(plan.modifier, q0, q1, k0, k1, plan, modifier_params,
                                                    p * dp, device))
                ds = p * (g * dp - delta_t)
            else:
                w = p
                ds = p * (dp - delta_t)
            dv[..., k0:k1, :] += torch.matmul(w.transpose(-1, -2), do_t)
            if dbias is not None:
                idx = _slices(bias_t.shape, q0 + qo, q1 + qo, k0 + ko, k1 + ko)
                dbias[idx] += _reduce_to(ds, dbias[idx].shape)
            if need_bias_params:
                accumulate(ns, _lazy_grads(plan.bias, q0, q1, k0, k1, plan, bias_params, ds, device))
            # the score's backward on this tile
            if plan.kind == "dot":
                dsc = ds.to(qf.dtype)
                dqf[..., q0:q1, :] += torch.matmul(dsc, kf_t)
                dkf[..., k0:k1, :] += torch.matmul(dsc.transpose(-1, -2), qf_t)
            elif plan.kind == "additive":
                # s = sigmoid(u_i + u_j)^T w: dw = sum_ij ds_ij h_ij, du = ds_ij h (1 - h) w per query / key
                dw, duq, duk = _additive_grads(plan, qf_t, kf_t, params[0], ds.to(qf.dtype))
                dparams[0] += dw.to(dtype)
                dqf[..., q0:q1, :] += duq
                dkf[..., k0:k1, :] += duk
            else:
                g_st = _reduce_to(ds, st.shape).to(st.dtype)
                grads = torch.autograd.grad(st, [qt, kt, *score_params], g_st, allow_unused=True)
                if grads[0] is not None:
                    dqf[..., q0:q1, :] += grads[0].to(dtype)
                if grads[1] is not None:
                    dkf[..., k0:k1, :] += grads[1].to(dtype)
                accumulate(0, grads[2:])
    return dqf, dkf, dv, dbias, dparams


class _TiledAttention(torch.autograd.Function):
    """Forward keeps ``o`` and ``lse``; backward recomputes the scores tile by tile.

    Inputs: ``plan, qf, kf, v, bias_t, *params`` with ``params`` = score parameters, lazy-bias
    parameters, modifier parameters (counted by the plan).
    """

    @staticmethod
    def forward(ctx, plan: TilePlan, qf, kf, v, bias_t, *params):
        out, lse = forward_block(plan, qf, kf, v, bias_t, params)
        out = out.to(v.dtype)  # (..., L, Dv)
        ctx.plan = plan
        ctx.save_for_backward(qf, kf, v, bias_t, out, lse, *params)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        plan: TilePlan = ctx.plan
        qf, kf, v, bias_t, out, lse, *params = ctx.saved_tensors
        params = tuple(params)
        need = ctx.needs_input_grad  # (plan, qf, kf, v, bias_t, *params)
        do = grad_out.to(plan.compute_dtype)
        delta = (do * out.to(plan.compute_dtype)).sum(dim=-1)  # (..., L)
        dqf, dkf, dv, dbias, dparams = backward_block(plan, qf, kf, v, bias_t, params, do, delta, lse, need)
        return (
            None,
            dqf.to(qf.dtype) if need[1] else None,
            dkf.to(kf.dtype) if need[2] else None,
            dv.to(v.dtype) if need[3] else None,
            None if dbias is None else dbias.to(bias_t.dtype),
            *(d.to(p.dtype) if need[5 + i] else None for i, (d, p) in enumerate(zip(dparams, params, strict=True))),
        )
