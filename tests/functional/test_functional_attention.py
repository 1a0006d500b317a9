"""`qkv.attend` against independent references: a naive double loop over (i, j) written here,
and `torch.nn.functional.scaled_dot_product_attention` (hypothesis over shapes and masks).

Conventions checked: bool masks (True = may attend), fully masked rows give zeros, never NaN.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import qkv
from qkv import masks
from qkv.functional import normalize as nz

BACKENDS = ["auto", *qkv.kernels.BACKENDS]  # every registered backend


# ----------------------------------------------------------------------------------------------
# Independent references (plain Python loops over (i, j); no library code)
# ----------------------------------------------------------------------------------------------


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return sum(float(a[d]) * float(b[d]) for d in range(a.shape[0]))


def ref_attention(q, k, v, *, score_ij, allowed=None, bias=None, normalize="softmax"):
    """Naive loop reference. q (N, L, D), k (N, S, Dk), v (N, S, Dv) float64, allowed (N, L, S) bool,
    bias (N, L, S). Returns (output (N, L, Dv), weights (N, L, S), scores (N, L, S))."""
    N, L, S, Dv = q.shape[0], q.shape[1], k.shape[1], v.shape[2]
    out = torch.zeros(N, L, Dv, dtype=torch.float64)
    W = torch.zeros(N, L, S, dtype=torch.float64)
    SC = torch.zeros(N, L, S, dtype=torch.float64)
    for n in range(N):
        for i in range(L):
            s = []
            for j in range(S):
                x = score_ij(q[n, i], k[n, j])
                if bias is not None:
                    x += float(bias[n, i, j])
                SC[n, i, j] = x
                s.append(x)
            ok = [allowed is None or bool(allowed[n, i, j]) for j in range(S)]
            w = [0.0] * S
            if normalize == "softmax":
                fin = [s[j] for j in range(S) if ok[j] and s[j] != -math.inf]
                if fin:
                    m = max(fin)
                    e = [math.exp(s[j] - m) if ok[j] and s[j] != -math.inf else 0.0 for j in range(S)]
                    z = sum(e)
                    w = [x / z for x in e]
            elif normalize == "relu":
                ok = [ok[j] and s[j] != -math.inf for j in range(S)]  # -inf forbids, as a mask
                n_ok = max(sum(ok), 1)
                w = [max(s[j], 0.0) / n_ok if ok[j] else 0.0 for j in range(S)]
            elif normalize == "hard":
                best = None
                for j in range(S):
                    if ok[j] and (best is None or s[j] > s[best]):
                        best = j
                if best is not None:
                    w[best] = 1.0
            elif normalize == "sparsemax":
                idx = [j for j in range(S) if ok[j]]
                if idx:
                    z = sorted((s[j] for j in idx), reverse=True)
                    kk, csum, tau = 0, 0.0, 0.0
                    for r, zr in enumerate(z, start=1):
                        csum += zr
                        if 1 + r * zr > csum:
                            kk, tau = r, (csum - 1) / r
                    assert kk >= 1
                    w = [max(s[j] - tau, 0.0) if ok[j] else 0.0 for j in range(S)]
            else:
                raise AssertionError(normalize)
            for j in range(S):
                W[n, i, j] = w[j]
            for c in range(Dv):
                out[n, i, c] = sum(w[j] * float(v[n, j, c]) for j in range(S))
    return out, W, SC


def flat(t: torch.Tensor, batch: tuple[int, ...]) -> torch.Tensor:
    """Broadcast t to (*batch, a, b) and flatten the batch: (N, a, b), float64 or bool."""
    t = t.expand(*batch, *t.shape[-2:])
    return t.reshape(-1, *t.shape[-2:])


def causal_ref(L: int, S: int, align: str) -> torch.Tensor:
    off = 0 if align == "top_left" else S - L
    return torch.tensor([[j <= i + off for j in range(S)] for i in range(L)])


def window_ref(L: int, S: int, w: int, align: str) -> torch.Tensor:
    off = 0 if align == "top_left" else S - L
    return torch.tensor([[abs(j - (i + off)) <= w for j in range(S)] for i in range(L)])


def padding_ref(lengths: list[int], S: int) -> torch.Tensor:
    return torch.tensor([[[[j < n for j in range(S)]]] for n in lengths])  # (B, 1, 1, S)


def sdpa_ref(q, k, v, allowed, bias, scale):
    """The expected output by torch's SDPA in float64; rows with no allowed key are zeros (qkv's
    convention; SDPA itself gives NaN there). `allowed` and `bias` full (B, H, L, S) or None."""
    q, k, v = (t.double() for t in (q, k, v))
    shape = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    q, k, v = (t.expand(*shape, *t.shape[-2:]) for t in (q, k, v))
    L, S = q.shape[-2], k.shape[-2]
    full = torch.ones(*shape, L, S, dtype=torch.bool)
    if allowed is not None:
        full = full & allowed
    b = torch.zeros(*shape, L, S, dtype=torch.float64)
    if bias is not None:
        b = b + bias.double()
        full = full & (b > -math.inf)
    rows = full.any(-1, keepdim=True)
    attn = torch.where(full, b, torch.tensor(-math.inf, dtype=torch.float64))
    attn = torch.where(rows, attn, torch.zeros_like(attn))  # keep SDPA finite on empty rows
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn, scale=scale)
    return torch.where(rows, out, torch.zeros_like(out))


def randn(*shape, gen, dtype=torch.float64, requires_grad=False):
    t = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
    return t.requires_grad_(requires_grad)


# ----------------------------------------------------------------------------------------------
# attend vs naive double loop: every score x every normalizer, with masks and bias
# ----------------------------------------------------------------------------------------------

SCORE_REFS = {
    "dot": lambda D: lambda a, b: _dot(a, b),
    "scaled_dot": lambda D: lambda a, b: _dot(a, b) / math.sqrt(D),
    "cosine": lambda D: lambda a, b: _dot(a, b) / (math.sqrt(_dot(a, a)) * math.sqrt(_dot(b, b))),
}


@pytest.mark.parametrize("normalize", ["softmax", "relu", "sparsemax", "hard"])
@pytest.mark.parametrize("score", ["dot", "scaled_dot", "cosine"])
def test_attend_matches_naive_loop(score, normalize):
    gen = torch.Generator().manual_seed(len(score) * 31 + len(normalize))
    B, H, L, S, D, Dv = 2, 2, 4, 5, 3, 2
    q = randn(B, H, L, D, gen=gen)
    k = randn(B, 1, S, D, gen=gen)  # broadcast over heads
    v = randn(1, H, S, Dv, gen=gen)
    mask = torch.rand(B, 1, L, S, generator=gen) < 0.7
    mask[0, 0, 1] = False  # one fully masked row
    bias = randn(L, S, gen=gen)
    bias[2, 3] = -math.inf  # forbid one key through the bias
    got = qkv.attend(
        q,
        k,
        v,
        score=score,
        mask=mask,
        bias=bias,
        normalize=normalize,
        return_weights=True,
        return_scores=True,
    )
    batch = (B, H)
    out, w, sc = ref_attention(
        flat(q, batch),
        flat(k, batch),
        flat(v, batch),
        score_ij=SCORE_REFS[score](D),
        allowed=flat(mask, batch),
        bias=flat(bias, batch),
        normalize=normalize,
    )
    torch.testing.assert_close(got.weights.reshape(-1, L, S), w)
    torch.testing.assert_close(got.output.reshape(-1, L, Dv), out)
    torch.testing.assert_close(got.scores.reshape(-1, L, S), sc)
    assert got.output.shape == (B, H, L, Dv)


@pytest.mark.parametrize("normalize", ["softmax", "relu", "sparsemax", "hard"])
def test_attend_user_callable_score_matches_loop(normalize):
    gen = torch.Generator().manual_seed(7)
    L, S, D = 3, 6, 4
    q, k, v = randn(2, L, D, gen=gen), randn(2, S, D, gen=gen), randn(2, S, 3, gen=gen)

    def neg_sq_dist(a, b):  # (..., L, D), (..., S, D) -> (..., L, S)
        return -((a.unsqueeze(-2) - b.unsqueeze(-3)) ** 2).sum(-1)

    def ref(a, b):
        return -sum((float(a[d]) - float(b[d])) ** 2 for d in range(D))

    got = qkv.attend(q, k, v, score=neg_sq_dist, normalize=normalize, return_weights=True)
    out, w, _ = ref_attention(q, k, v, score_ij=ref, normalize=normalize)
    torch.testing.assert_close(got.weights, w)
    torch.testing.assert_close(got.output, out)


@pytest.mark.parametrize("score", ["dot", "scaled_dot", "cosine"])
def test_attend_explicit_scale_multiplies_scores(score):
    gen = torch.Generator().manual_seed(3)
    q, k, v = randn(3, 4, gen=gen), randn(5, 4, gen=gen), randn(5, 2, gen=gen)
    got = qkv.attend(q, k, v, score=score, scale=0.37, return_scores=True, return_weights=True)
    ref = SCORE_REFS["dot" if score != "cosine" else "cosine"](4)
    out, _, sc = ref_attention(q[None], k[None], v[None], score_ij=lambda a, b: 0.37 * ref(a, b), normalize="softmax")
    torch.testing.assert_close(got.scores, sc[0])
    torch.testing.assert_close(got.output, out[0])


def test_attend_parametric_score_modules_match_loop():
    gen = torch.Generator().manual_seed(11)
    torch.manual_seed(0)
    Dq, Dk, A, L, S = 3, 5, 4, 2, 4
    q, k, v = randn(L, Dq, gen=gen), randn(S, Dk, gen=gen), randn(S, 2, gen=gen)
    bil = qkv.scores.Bilinear(Dq, Dk).double()
    add = qkv.scores.Additive(Dq, Dk, hidden_dim=A, hidden_bias=True).double()
    with torch.no_grad():
        add.hidden_bias.normal_(generator=gen)
    W = bil.weight.detach()

    def bil_ref(a, b):
        return sum(float(b[e]) * float(W[e, d]) * float(a[d]) for e in range(Dk) for d in range(Dq))

    Wq, Wk, vv, bb = (t.detach() for t in (add.w_q, add.w_k, add.v, add.hidden_bias))

    def add_ref(a, b):
        tot = 0.0
        for h in range(A):
            pre = _dot(Wk[h], b) + _dot(Wq[h], a) + float(bb[h])
            tot += float(vv[h]) * math.tanh(pre)
        return tot

    for module, ref in ((bil, bil_ref), (add, add_ref)):
        got = qkv.attend(q, k, v, score=module, return_weights=True)
        out, w, _ = ref_attention(q[None], k[None], v[None], score_ij=ref)
        torch.testing.assert_close(got.weights, w[0])
        torch.testing.assert_close(got.output, out[0])


# ----------------------------------------------------------------------------------------------
# attend == torch SDPA over random shapes, masks and biases, on every backend
# ----------------------------------------------------------------------------------------------


@st.composite
def sdpa_problems(draw):
    B = draw(st.integers(1, 2))
    H = draw(st.integers(1, 3))
    L = draw(st.integers(1, 6))
    S = draw(st.integers(1, 7))
    D = draw(st.integers(1, 5))
    Dv = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)

    # broadcasting leading dims: each of q, k, v independently drops B or H to 1 (or drops dims)
    def lead():
        return draw(st.sampled_from([(B, H), (B, 1), (1, H), (1, 1), (H,), ()]))

    lq, lk, lv = lead(), lead(), lead()
    # make sure the broadcast batch is (B, H) when some input has 4 dims
    q = randn(*lq, L, D, gen=gen)
    k = randn(*lk, S, D, gen=gen)
    v = randn(*lv, S, Dv, gen=gen)
    batch = tuple(torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
    full_batch = batch == (B, H)

    kind = draw(
        st.sampled_from(
            ["none", "bool", "causal", "window", "padding", "causal&padding", "window|bool", "causal&window"]
        )
    )
    align = draw(st.sampled_from(["top_left", "bottom_right"]))
    mask, ref = None, None
    if kind == "none":
        pass
    elif kind in ("bool", "window|bool"):
        mshape = draw(st.sampled_from([(L, S), (1, S), (L, 1), *([(B, H, L, S), (B, 1, 1, S)] if full_batch else [])]))
        mask = torch.rand(*mshape, generator=gen) < draw(st.sampled_from([0.3, 0.6, 0.9]))
        ref = mask
        if kind == "window|bool":
            w = draw(st.integers(0, 2))
            mask = masks.window(w, align=align) | mask
            ref = window_ref(L, S, w, align) | ref
    elif kind == "causal":
        mask, ref = masks.causal(align=align), causal_ref(L, S, align)
    elif kind == "window":
        w = draw(st.integers(0, 3))
        mask, ref = masks.window(w, align=align), window_ref(L, S, w, align)
    elif kind == "causal&window":
        w = draw(st.integers(0, 3))
        mask = masks.and_(masks.causal(align=align), masks.window(w, align=align))
        ref = causal_ref(L, S, align) & window_ref(L, S, w, align)
    else:  # padding (needs batch dims B)
        if not full_batch:
            q = q.expand(B, H, L, D)
            full_batch = True
            batch = (B, H)
        lengths = draw(st.lists(st.integers(0, S + 1), min_size=B, max_size=B))
        lt = torch.tensor(lengths)
        mask, ref = masks.padding(lt), padding_ref(lengths, S)
        if kind == "causal&padding":
            mask = masks.causal(align=align) & mask
            ref = causal_ref(L, S, align) & ref

    bias = None
    if draw(st.booleans()):
        bshape = draw(st.sampled_from([(L, S), (1, S), *([(B, H, L, S), (B, 1, L, S)] if full_batch else [])]))
        bias = randn(*bshape, gen=gen)
        if draw(st.booleans()):
            bias = bias.masked_fill(torch.rand(*bshape, generator=gen) < 0.2, -math.inf)
    score = draw(st.sampled_from(["dot", "scaled_dot"]))
    scale = draw(st.sampled_from([None, 0.5]))
    return q, k, v, mask, ref, bias, score, scale


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(problem=sdpa_problems())
def test_attend_equals_torch_sdpa(backend, problem):
    q, k, v, mask, ref, bias, score, scale = problem
    sdpa_scale = scale if scale is not None else (1.0 if score == "dot" else None)
    expected = sdpa_ref(q, k, v, ref, bias, sdpa_scale)
    got = qkv.attend(q, k, v, score=score, scale=scale, mask=mask, bias=bias, backend=backend).output
    assert got.shape == expected.shape
    assert got.dtype == q.dtype
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=20, deadline=None)
@given(problem=sdpa_problems())
def test_attend_float32_equals_torch_sdpa_forward_and_backward(backend, problem):
    q, k, v, mask, ref, bias, score, scale = problem
    q32, k32, v32 = (t.float().requires_grad_() for t in (q, k, v))
    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    sdpa_scale = scale if scale is not None else (1.0 if score == "dot" else None)
    expected = sdpa_ref(q64, k64, v64, ref, bias, sdpa_scale)
    b32 = None if bias is None else bias.float()
    got = qkv.attend(q32, k32, v32, score=score, scale=scale, mask=mask, bias=b32, backend=backend).output
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exp_grads = torch.autograd.grad(expected, (q64, k64, v64), g)
    got_grads = torch.autograd.grad(got, (q32, k32, v32), g.float())
    for a, b in zip(got_grads, exp_grads, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# float64 gradcheck of attend end-to-end
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["naive", "sdpa"])
@pytest.mark.parametrize("mask_kind", ["bool", "causal_br", "padding", "window"])
def test_attend_gradcheck_with_masks(backend, mask_kind):
    gen = torch.Generator().manual_seed(5)
    B, H, L, S, D = 2, 1, 3, 4, 3
    q = randn(B, H, L, D, gen=gen, requires_grad=True)
    k = randn(B, H, S, D, gen=gen, requires_grad=True)
    v = randn(B, H, S, 2, gen=gen, requires_grad=True)
    bias = randn(1, 1, L, S, gen=gen, requires_grad=True)
    mask = {
        "bool": torch.tensor([[True, False, True, True], [False] * 4, [True, True, False, False]]),
        "causal_br": masks.causal(align="bottom_right"),
        "padding": masks.padding(torch.tensor([2, 0])),  # batch row 1 fully masked
        "window": masks.window(1, align="top_left"),
    }[mask_kind]

    def f(q, k, v, bias):
        return qkv.attend(q, k, v, mask=mask, bias=bias, backend=backend).output

    assert torch.autograd.gradcheck(f, (q, k, v, bias))


@pytest.mark.parametrize("normalize", ["softmax", "relu", "sparsemax"])
@pytest.mark.parametrize("score", ["dot", "scaled_dot", "cosine"])
def test_attend_gradcheck_scores_and_normalizers(score, normalize):
    gen = torch.Generator().manual_seed(9)
    q = randn(2, 3, 4, gen=gen, requires_grad=True)
    k = randn(2, 5, 4, gen=gen, requires_grad=True)
    v = randn(2, 5, 3, gen=gen, requires_grad=True)
    mask = torch.tensor([[True, True, False, True, True], [False] * 5, [True] * 5])

    def f(q, k, v):
        return qkv.attend(q, k, v, score=score, normalize=normalize, mask=mask, backend="naive").output

    assert torch.autograd.gradcheck(f, (q, k, v))


def test_attend_gradcheck_parametric_scores():
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    q = randn(3, 2, gen=gen, requires_grad=True)
    k = randn(4, 3, gen=gen, requires_grad=True)
    v = randn(4, 2, gen=gen, requires_grad=True)
    mask = masks.causal(align="bottom_right")
    for module in (qkv.scores.Bilinear(2, 3).double(), qkv.scores.Additive(2, 3, hidden_bias=True).double()):

        def f(q, k, v, module=module):
            return qkv.attend(q, k, v, score=module, mask=mask).output

        assert torch.autograd.gradcheck(f, (q, k, v))


# ----------------------------------------------------------------------------------------------
# normalize="sample": reproducible with a Generator; frequencies follow the softmax
# ----------------------------------------------------------------------------------------------


def test_sample_reproducible_with_generator():
    gen = torch.Generator().manual_seed(1)
    q, k, v = randn(2, 8, 4, gen=gen), randn(2, 16, 4, gen=gen), randn(2, 16, 3, gen=gen)

    def run(seed):
        return qkv.attend(
            q, k, v, normalize=nz.Sample(generator=torch.Generator().manual_seed(seed)), return_weights=True
        )

    a, b, c = run(123), run(123), run(124)
    torch.testing.assert_close(a.weights, b.weights, rtol=0, atol=0)
    torch.testing.assert_close(a.output, b.output, rtol=0, atol=0)
    torch.testing.assert_close(a.log_prob, b.log_prob, rtol=0, atol=0)
    assert not torch.equal(a.weights, c.weights)  # 16 rows x 16 keys: a different seed differs
    # one-hot rows, output = the chosen value, log_prob = log softmax of the chosen key
    assert ((a.weights == 0) | (a.weights == 1)).all()
    assert (a.weights.sum(-1) == 1).all()
    idx = a.weights.argmax(-1)  # (2, 8)
    torch.testing.assert_close(a.output, torch.gather(v, 1, idx[..., None].expand(-1, -1, 3)))
    ref_logp = torch.log_softmax(q @ k.transpose(-1, -2) / 2.0, -1).gather(-1, idx[..., None])[..., 0]
    torch.testing.assert_close(a.log_prob, ref_logp)


def test_sample_frequencies_match_softmax():
    gen = torch.Generator().manual_seed(0)
    S, N = 5, 4000
    scores_row = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5])
    # N identical query rows with dot scores equal to scores_row: q = 1, k_j = scores_row[j]
    q = torch.ones(N, 1)
    k = scores_row[:, None]
    v = torch.eye(S)
    mask = torch.tensor([True, True, False, True, True])  # key 2 masked: never drawn
    out = qkv.attend(q, k, v, score="dot", mask=mask, normalize=nz.Sample(generator=gen))
    counts = out.output.sum(0)  # one-hot reads of the identity values
    assert counts[2] == 0
    assert counts.sum() == N
    logits = scores_row.masked_fill(~mask, -math.inf)
    p = torch.softmax(logits, -1)
    ok = mask
    chi2 = (((counts[ok] - N * p[ok]) ** 2) / (N * p[ok])).sum().item()
    assert chi2 < 18.5  # chi-square, 3 dof: P(chi2 > 16.3) = 0.001
    # and it is not uniform: a tautology check of the test's power
    uni = torch.full((4,), N / 4)
    assert (((counts[ok] - uni) ** 2) / uni).sum().item() > 100


def test_sample_fully_masked_rows_give_zero_log_prob_and_no_nan():
    gen = torch.Generator().manual_seed(0)
    q = randn(3, 2, gen=gen, requires_grad=True)
    k, v = randn(4, 2, gen=gen), randn(4, 2, gen=gen)
    mask = torch.tensor([[True] * 4, [False] * 4, [False, True, False, True]])
    out = qkv.attend(q, k, v, mask=mask, normalize=nz.Sample(generator=gen), return_weights=True)
    assert out.log_prob.shape == (3,)
    assert out.log_prob[1] == 0
    assert (out.weights[1] == 0).all() and (out.output[1] == 0).all()
    assert out.weights[2, 0] == 0 and out.weights[2, 2] == 0
    (g,) = torch.autograd.grad(out.log_prob.sum(), q)
    assert torch.isfinite(g).all()
    assert (g[1] == 0).all()


# ----------------------------------------------------------------------------------------------
# errors: type AND message naming the argument and what was received
# ----------------------------------------------------------------------------------------------


def _qkv(L=3, S=5, D=4, Dv=2, lead=(2, 1), dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    return (
        randn(*lead, L, D, gen=gen, dtype=dtype),
        randn(*lead, S, D, gen=gen, dtype=dtype),
        randn(*lead, S, Dv, gen=gen, dtype=dtype),
    )


def _raises(exc, *fragments, fn):
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in message {msg!r}"
    return msg


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("score", ["dot", "scaled_dot", "cosine"])
def test_error_q_k_width_mismatch(score, backend):
    q, _, v = _qkv(D=4)
    k = torch.randn(2, 1, 5, 6)
    _raises(ValueError, "(2, 1, 3, 4)", "(2, 1, 5, 6)", fn=lambda: qkv.attend(q, k, v, score=score, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_error_k_v_length_mismatch(backend):
    q, k, _ = _qkv()
    v = torch.randn(2, 1, 4, 2)
    msg = _raises(ValueError, "(2, 1, 5, 4)", "(2, 1, 4, 2)", fn=lambda: qkv.attend(q, k, v, backend=backend))
    assert "k" in msg and "v" in msg


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.uint8, torch.float16])
def test_error_mask_wrong_dtype(dtype):
    q, k, v = _qkv()
    mask = torch.ones(3, 5, dtype=dtype)
    _raises(TypeError, "mask", str(dtype), fn=lambda: qkv.attend(q, k, v, mask=mask))


@pytest.mark.parametrize("shape", [(3, 4), (5, 3), (3, 2, 3, 5), (4, 1, 1, 5), (1, 2, 1, 3, 5)])
def test_error_mask_unbroadcastable(shape):
    q, k, v = _qkv()
    mask = torch.ones(*shape, dtype=torch.bool)
    _raises(ValueError, "mask", str(shape), fn=lambda: qkv.attend(q, k, v, mask=mask))


def test_error_mask_not_a_tensor():
    q, k, v = _qkv()
    _raises(TypeError, "mask", "list", fn=lambda: qkv.attend(q, k, v, mask=[[True] * 5] * 3))


def test_error_padding_mask_batch_mismatch():
    q, k, v = _qkv(lead=(2, 1))
    # the message names the padding mask's real shape (B, 1, 1, S), not one expanded to L
    _raises(
        ValueError,
        "mask",
        "padding",
        "(3, 1, 1, 5)",
        "(2, 1, 3, 5)",
        fn=lambda: qkv.attend(q, k, v, mask=masks.padding(torch.tensor([1, 2, 3]))),
    )


@pytest.mark.parametrize("shape", [(3, 4), (2, 2, 3, 5), (4, 5)])
def test_error_bias_unbroadcastable(shape):
    q, k, v = _qkv()
    _raises(ValueError, "bias", str(shape), fn=lambda: qkv.attend(q, k, v, bias=torch.zeros(shape)))


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_error_bias_not_float(dtype):
    q, k, v = _qkv()
    _raises(TypeError, "bias", str(dtype), fn=lambda: qkv.attend(q, k, v, bias=torch.zeros(3, 5, dtype=dtype)))


@pytest.mark.parametrize("which", ["q", "k", "v"])
def test_error_integer_inputs(which):
    t = dict(zip("qkv", _qkv(), strict=True))
    t[which] = t[which].to(torch.int64)
    _raises(TypeError, which, "torch.int64", fn=lambda: qkv.attend(t["q"], t["k"], t["v"]))


def test_error_qkv_dtype_mismatch():
    q, k, v = _qkv()
    _raises(TypeError, "torch.float32", "torch.float64", fn=lambda: qkv.attend(q, k.double(), v))
    _raises(TypeError, "torch.float32", "torch.bfloat16", fn=lambda: qkv.attend(q, k, v.bfloat16()))


def test_error_non_tensor_and_too_few_dims():
    q, k, v = _qkv()
    _raises(TypeError, "q", "list", fn=lambda: qkv.attend([[1.0]], k, v))
    _raises(ValueError, "k", "(5,)", fn=lambda: qkv.attend(q, torch.zeros(5), v))


def test_error_leading_dims_do_not_broadcast():
    q, _, v = _qkv(lead=(2, 1))
    k3 = torch.randn(3, 1, 5, 4)
    _raises(ValueError, "(2, 1, 3, 4)", "(3, 1, 5, 4)", fn=lambda: qkv.attend(q, k3, v[:1].expand(3, 1, 5, 2)))


def test_error_unknown_score_name():
    q, k, v = _qkv()
    msg = _raises(ValueError, "score", "'dott'", fn=lambda: qkv.attend(q, k, v, score="dott"))
    assert "scaled_dot" in msg  # lists the valid names


@pytest.mark.parametrize("name", ["additive", "bilinear", "general", "concat", "mlp"])
def test_error_parametric_score_name_suggests_make(name):
    q, k, v = _qkv()
    _raises(ValueError, repr(name), "qkv.layers.scores.make", fn=lambda: qkv.attend(q, k, v, score=name))


def test_error_score_not_callable():
    q, k, v = _qkv()
    _raises(TypeError, "score", "int", fn=lambda: qkv.attend(q, k, v, score=3))


def test_error_callable_score_wrong_shape():
    q, k, v = _qkv(L=3, S=5)
    _raises(
        ValueError,
        "score",
        "(2, 1, 5, 3)",
        fn=lambda: qkv.attend(q, k, v, score=lambda a, b: b @ a.transpose(-1, -2), backend="naive"),
    )
    _raises(
        ValueError, "score", "(2, 1, 3)", fn=lambda: qkv.attend(q, k, v, score=lambda a, b: a.sum(-1), backend="naive")
    )


def test_error_unknown_normalizer():
    q, k, v = _qkv()
    msg = _raises(ValueError, "normalize", "'softmaxx'", fn=lambda: qkv.attend(q, k, v, normalize="softmaxx"))
    assert "sparsemax" in msg
    _raises(TypeError, "normalize", "int", fn=lambda: qkv.attend(q, k, v, normalize=1))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_error_bad_dropout(p):
    q, k, v = _qkv()
    _raises(ValueError, "dropout", repr(p), fn=lambda: qkv.attend(q, k, v, dropout=p))


@pytest.mark.parametrize("p", [True, "0.1"])
def test_error_dropout_wrong_type(p):
    q, k, v = _qkv()
    _raises(TypeError, "dropout", repr(p), fn=lambda: qkv.attend(q, k, v, dropout=p))


def test_error_unknown_backend():
    q, k, v = _qkv()
    msg = _raises(ValueError, "backend", "'cuda'", fn=lambda: qkv.attend(q, k, v, backend="cuda"))
    assert "naive" in msg and "sdpa" in msg


def test_user_normalizer_cannot_leak_onto_masked_keys():
    q, k, v = _qkv()
    mask = torch.tensor([True, False, True, False, True]).expand(3, 5)
    out = qkv.attend(q, k, v, mask=mask, normalize=lambda s, m: torch.full_like(s, 0.2), return_weights=True)
    assert (out.weights[..., ~mask] == 0).all()
    torch.testing.assert_close(out.weights[..., mask], torch.full_like(out.weights[..., mask], 0.2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_1d_key_mask_broadcasts(backend):
    """A (S,) bool mask is broadcastable to (..., L, S) and is accepted by attend's check."""
    q, k, v = _qkv()
    m1 = torch.tensor([True, False, True, True, False])
    got = qkv.attend(q, k, v, mask=m1, backend=backend).output
    want = qkv.attend(q, k, v, mask=m1.expand(3, 5), backend="naive").output
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("normalize", ["softmax", "relu", "sparsemax", "hard", "sample"])
def test_minus_inf_bias_forbids_like_mask(normalize):
    """The docstring: bias ``-inf`` forbids a key. It must act exactly as a False mask entry."""
    q, k, v = _qkv()
    mask = torch.rand(2, 1, 3, 5, generator=torch.Generator().manual_seed(1)) < 0.5
    mask[0, 0, 1] = False
    bias = torch.zeros(2, 1, 3, 5).masked_fill(~mask, -math.inf)

    def norm():  # the same draws for both calls when sampling
        return nz.Sample(generator=torch.Generator().manual_seed(0)) if normalize == "sample" else normalize

    a = qkv.attend(q, k, v, mask=mask, normalize=norm(), return_weights=True, backend="naive")
    b = qkv.attend(q, k, v, bias=bias, normalize=norm(), return_weights=True, backend="naive")
    torch.testing.assert_close(b.weights, a.weights)
    torch.testing.assert_close(b.output, a.output)


@pytest.mark.parametrize(
    "mask",
    [
        lambda: torch.ones(8, 7, dtype=torch.bool) & qkv.masks.causal(),
        lambda: torch.ones(5, 7, dtype=torch.bool) | qkv.masks.window(1),
        lambda: qkv.masks.and_(qkv.masks.causal(), qkv.masks.or_(qkv.masks.window(2), torch.ones(3, 7).bool())),
    ],
    ids=["and_too_long", "or_too_short", "nested"],
)
def test_tensor_inside_a_combined_mask_is_shape_checked(mask):
    """A tensor nested in &/| must broadcast to (L, S) like a plain mask, not be silently sliced."""
    q, k = torch.randn(6, 4), torch.randn(7, 4)
    with pytest.raises(
        ValueError,
        match=r"mask TensorMask\(shape=\(\d, 7\)\) of shape \(\d, 7\) does not broadcast to the scores' shape \(6, 7\)",
    ):
        qkv.attend(q, k, k, mask=mask())


def test_tensor_inside_a_bias_sum_is_shape_checked():
    q, k = torch.randn(1, 1, 6, 4), torch.randn(1, 1, 7, 4)  # (B, H, L, D): ALiBi has a head axis
    bias = qkv.functional.biases.as_bias(torch.zeros(8, 7)) + qkv.positional.alibi(1)
    with pytest.raises(ValueError, match=r"bias TensorBias\(shape=\(8, 7\)\) of shape \(8, 7\) does not broadcast"):
        qkv.attend(q, k, k, bias=bias)
