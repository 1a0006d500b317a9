"""Properties of `qkv.attend` (hypothesis): weights form a distribution over the allowed keys,
masked keys get exactly zero, fully masked rows are zero and NaN-free in forward and backward on
every backend and dtype, self-attention is permutation-equivariant, causal outputs ignore the
future."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qkv
from qkv import masks
from qkv.functional import normalize as nz

DTYPES = [torch.float32, torch.float64, torch.bfloat16]


def _randn(*shape, gen, dtype=torch.float32):
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)


@st.composite
def problems(draw, *, min_S=1):
    B, H = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    L, S = draw(st.integers(1, 6)), draw(st.integers(min_S, 6))
    D = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    p = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    mask = torch.rand(B, H, L, S, generator=gen) < p
    return B, H, L, S, D, gen, mask


# ----------------------------------------------------------------------------------------------
# weights: a distribution over the allowed keys; masked keys exactly zero
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", ["softmax", "sparsemax", "hard", "sample", "relu"])
@pytest.mark.parametrize("score", ["scaled_dot", "cosine"])
@settings(max_examples=25, deadline=None)
@given(problem=problems())
def test_weights_on_simplex_over_allowed_keys(normalize, score, problem):
    B, H, L, S, D, gen, mask = problem
    q, k, v = _randn(B, H, L, D, gen=gen), _randn(B, 1, S, D, gen=gen), _randn(B, 1, S, 3, gen=gen)
    norm = nz.Sample(generator=gen) if normalize == "sample" else normalize
    out = qkv.attend(q, k, v, score=score, mask=mask, normalize=norm, return_weights=True, return_scores=True)
    w = out.weights
    assert w.shape == (B, H, L, S)
    assert torch.isfinite(w).all() and torch.isfinite(out.output).all()
    assert (w >= 0).all()
    assert (w[~mask] == 0).all()  # exactly zero, not tiny
    nonempty = mask.any(-1)
    assert (w.sum(-1)[~nonempty] == 0).all()
    assert (out.output[~nonempty] == 0).all()
    if normalize != "relu":  # relu: ReLU(s)/n is not a distribution
        torch.testing.assert_close(w.sum(-1)[nonempty], torch.ones(int(nonempty.sum())))
    else:
        n = mask.sum(-1, keepdim=True).clamp_min(1)
        torch.testing.assert_close(w, torch.where(mask, torch.relu(out.scores), 0.0) / n)
    if normalize in ("hard", "sample"):
        assert ((w == 0) | (w == 1)).all()
    # the output is the weighted read of the values
    torch.testing.assert_close(out.output, w @ v.expand(B, H, S, 3), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# fully masked rows: zeros and no NaN, forward and backward, every dtype and backend
# ----------------------------------------------------------------------------------------------

# every registered backend with softmax (the one normalizer all of them support), plus every
# normalizer on the reference backend and on "auto"
CASES = [
    *[(b, "softmax") for b in ("auto", *qkv.kernels.BACKENDS)],
    *[(b, n) for b in ("naive", "auto") for n in ("relu", "sparsemax", "hard", "hard_st", "sample")],
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("backend", "normalize"), CASES)
@settings(max_examples=8, deadline=None)
@given(problem=problems(), how=st.sampled_from(["mask", "bias", "padding", "causal_br"]))
def test_fully_masked_rows_zero_and_nan_free(backend, normalize, dtype, problem, how):
    B, H, L, S, D, gen, mask = problem
    q = _randn(B, H, L, D, gen=gen, dtype=dtype).requires_grad_()
    k = _randn(B, H, S, D, gen=gen, dtype=dtype).requires_grad_()
    v = _randn(B, H, S, 2, gen=gen, dtype=dtype).requires_grad_()
    mask[:, :, 0] = False  # query 0 sees nothing
    bias = None
    if how == "bias":  # forbid by -inf bias instead of mask
        bias = torch.zeros(B, H, L, S, dtype=dtype).masked_fill(~mask, -math.inf).requires_grad_()
        allowed, m = mask, None
    elif how == "padding":
        lengths = torch.randint(0, S + 1, (B,), generator=gen)
        lengths[0] = 0
        m = masks.padding(lengths)
        allowed = (torch.arange(S) < lengths[:, None])[:, None, None, :].expand(B, H, L, S)
    elif how == "causal_br":
        if L <= S:  # bottom-right causal leaves a row empty only when L > S
            return
        m = masks.causal(align="bottom_right")
        allowed = torch.tensor([[j <= i + S - L for j in range(S)] for i in range(L)]).expand(B, H, L, S)
    else:
        allowed, m = mask, mask
    empty = ~allowed.any(-1)  # (B, H, L)
    assert empty.any()
    kw = {"normalize": normalize}
    if normalize == "hard_st":
        kw = {"normalize": nz.Hard(straight_through=True)}
    if normalize == "sample":
        kw["normalize"] = nz.Sample(generator=gen)
    out = qkv.attend(q, k, v, mask=m, bias=bias, backend=backend, **kw)
    o = out.output
    assert o.dtype == dtype
    assert torch.isfinite(o).all()
    assert (o[empty] == 0).all()
    target = o.float().sum() if out.log_prob is None else out.log_prob.float().sum() + o.float().sum()
    inputs = [t for t in (q, k, v, bias) if t is not None]
    grads = torch.autograd.grad(target, inputs, allow_unused=True)
    for t, g in zip(inputs, grads, strict=True):
        if g is not None:
            assert torch.isfinite(g.float()).all(), f"NaN/inf gradient for input of shape {tuple(t.shape)}"
    gq = grads[0]
    if gq is not None:
        assert (gq[empty] == 0).all()


@pytest.mark.parametrize("backend", ["auto", *qkv.kernels.BACKENDS])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_all_rows_masked_and_zero_keys(backend, dtype):
    gen = torch.Generator().manual_seed(0)
    q = _randn(2, 3, 4, gen=gen, dtype=dtype).requires_grad_()
    k = _randn(2, 5, 4, gen=gen, dtype=dtype).requires_grad_()
    v = _randn(2, 5, 6, gen=gen, dtype=dtype).requires_grad_()
    out = qkv.attend(q, k, v, mask=torch.zeros(3, 5, dtype=torch.bool), backend=backend).output
    assert out.shape == (2, 3, 6) and (out == 0).all()
    gs = torch.autograd.grad(out.float().sum(), (q, k, v), allow_unused=True)
    for g in gs:
        assert g is None or (g == 0).all()
    # no keys at all
    out0 = qkv.attend(q, k[:, :0], v[:, :0], backend=backend).output
    assert out0.shape == (2, 3, 6) and (out0 == 0).all()


# ----------------------------------------------------------------------------------------------
# self-attention without positions is permutation-equivariant
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", ["softmax", "relu", "sparsemax", "hard"])
@pytest.mark.parametrize("score", ["dot", "scaled_dot", "cosine", "additive"])
@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 7), seed=st.integers(0, 2**31 - 1), masked=st.booleans())
def test_self_attention_permutation_equivariant(score, normalize, n, seed, masked):
    gen = torch.Generator().manual_seed(seed)
    D = 4
    x = _randn(2, n, D, gen=gen, dtype=torch.float64)
    wq, wk, wv = (_randn(D, D, gen=gen, dtype=torch.float64) for _ in range(3))
    if score == "additive":
        torch.manual_seed(seed)
        score_fn = qkv.scores.Additive(D, hidden_dim=3).double()
    else:
        score_fn = score
    mask = torch.rand(2, n, n, generator=gen) < 0.6 if masked else None
    perm = torch.randperm(n, generator=gen)

    def run(x, mask):
        return qkv.attend(x @ wq, x @ wk, x @ wv, score=score_fn, mask=mask, normalize=normalize).output

    y = run(x, mask)
    mp = None if mask is None else mask[:, perm][:, :, perm]
    yp = run(x[:, perm], mp)
    torch.testing.assert_close(yp, y[:, perm])
    # and the property has teeth: a positional bias breaks it (unless n is tiny and symmetric)
    if normalize == "softmax" and score != "cosine":
        pos = torch.arange(n, dtype=torch.float64)
        bias = -(pos[:, None] - pos[None, :]).abs() * 3.0
        yb = qkv.attend(x @ wq, x @ wk, x @ wv, score=score_fn, bias=bias).output
        ybp = qkv.attend(x[:, perm] @ wq, x[:, perm] @ wk, x[:, perm] @ wv, score=score_fn, bias=bias).output
        if not torch.equal(perm, torch.arange(n)) and not torch.equal(perm, torch.arange(n).flip(0)):
            assert not torch.allclose(ybp, yb[:, perm])


# ----------------------------------------------------------------------------------------------
# causality: outputs do not change when future inputs change
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", *qkv.kernels.BACKENDS])
@pytest.mark.parametrize("align", ["top_left", "bottom_right"])
@settings(max_examples=15, deadline=None)
@given(
    L=st.integers(1, 6),
    extra=st.integers(0, 3),
    t=st.integers(0, 5),
    seed=st.integers(0, 2**31 - 1),
    windowed=st.booleans(),
)
def test_causal_output_ignores_future(backend, align, L, extra, t, seed, windowed):
    gen = torch.Generator().manual_seed(seed)
    S = L + extra if align == "bottom_right" else L
    off = 0 if align == "top_left" else S - L
    t = min(t, L - 1)  # the query whose output must not move
    D = 3
    q = _randn(2, 2, L, D, gen=gen, dtype=torch.float64)
    k = _randn(2, 2, S, D, gen=gen, dtype=torch.float64)
    v = _randn(2, 2, S, 2, gen=gen, dtype=torch.float64)
    mask = masks.causal(align=align)
    if windowed:
        mask = mask & masks.window(2, align=align)
    y = qkv.attend(q, k, v, mask=mask, backend=backend).output
    # change every key/value after position t + off, and every query after t
    k2, v2, q2 = k.clone(), v.clone(), q.clone()
    k2[..., t + off + 1 :, :] = _randn(*k2[..., t + off + 1 :, :].shape, gen=gen, dtype=torch.float64) * 5
    v2[..., t + off + 1 :, :] = _randn(*v2[..., t + off + 1 :, :].shape, gen=gen, dtype=torch.float64) * 5
    q2[..., t + 1 :, :] = _randn(*q2[..., t + 1 :, :].shape, gen=gen, dtype=torch.float64)
    y2 = qkv.attend(q2, k2, v2, mask=mask, backend=backend).output
    torch.testing.assert_close(y2[..., : t + 1, :], y[..., : t + 1, :], rtol=0, atol=1e-12)
    # without the mask the same change does move the output of query t (when there is a future)
    if t + off + 1 < S:
        y3 = qkv.attend(q, k, v, backend=backend).output
        y4 = qkv.attend(q2, k2, v2, backend=backend).output
        assert not torch.allclose(y3[..., t, :], y4[..., t, :])
