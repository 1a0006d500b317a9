"""Score functions of `qkv.functional.scores` against naive double loops over (i, j), float64
gradcheck, errors, and the book's exercise 8-2 (variance of q·k grows like d_k)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qkv.functional import scores as sc


def _dot(a, b):
    return sum(float(x) * float(y) for x, y in zip(a, b, strict=True))


def loop(q, k, f):
    """scores[..., i, j] = f(q[..., i, :], k[..., j, :]), by a double loop over (i, j) per batch."""
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    qb = q.expand(*batch, *q.shape[-2:]).reshape(-1, *q.shape[-2:])
    kb = k.expand(*batch, *k.shape[-2:]).reshape(-1, *k.shape[-2:])
    L, S = q.shape[-2], k.shape[-2]
    out = torch.zeros(qb.shape[0], L, S, dtype=torch.float64)
    for n in range(qb.shape[0]):
        for i in range(L):
            for j in range(S):
                out[n, i, j] = f(qb[n, i], kb[n, j])
    return out.reshape(*batch, L, S)


def _params(Dq, Dk, A, gen, bias):
    w_q = torch.randn(A, Dq, generator=gen, dtype=torch.float64)
    w_k = torch.randn(A, Dk, generator=gen, dtype=torch.float64)
    v = torch.randn(A, generator=gen, dtype=torch.float64)
    b = torch.randn(A, generator=gen, dtype=torch.float64) if bias else None
    return w_q, w_k, v, b


def additive_ref(w_q, w_k, v, b):
    A = v.shape[0]

    def f(x_q, x_k):
        return sum(
            float(v[a]) * math.tanh(_dot(w_k[a], x_k) + _dot(w_q[a], x_q) + (float(b[a]) if b is not None else 0.0))
            for a in range(A)
        )

    return f


shapes = st.tuples(
    st.sampled_from([(), (2,), (2, 1), (1, 3)]),  # q leading dims
    st.sampled_from([(), (2,), (1, 1), (2, 3)]),  # k leading dims (broadcast against q's)
    st.integers(1, 4),  # L
    st.integers(1, 5),  # S
    st.integers(1, 4),  # D
).filter(lambda t: _broadcastable(t[0], t[1]))


def _broadcastable(a, b):
    try:
        torch.broadcast_shapes(a, b)
    except RuntimeError:
        return False
    return True


@settings(max_examples=20, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
def test_parameter_free_scores_match_loop(shape, seed):
    lq, lk, L, S, D = shape
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(*lq, L, D, generator=gen, dtype=torch.float64)
    k = torch.randn(*lk, S, D, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(sc.dot(q, k), loop(q, k, _dot))
    torch.testing.assert_close(sc.scaled_dot(q, k), loop(q, k, lambda a, b: _dot(a, b) / math.sqrt(D)))
    torch.testing.assert_close(sc.scaled_dot(q, k, scale=0.25), loop(q, k, lambda a, b: 0.25 * _dot(a, b)))
    torch.testing.assert_close(
        sc.cosine(q, k), loop(q, k, lambda a, b: _dot(a, b) / math.sqrt(_dot(a, a) * _dot(b, b)))
    )


@settings(max_examples=15, deadline=None)
@given(shape=shapes, Dk=st.integers(1, 4), A=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_parametric_scores_match_loop(shape, Dk, A, seed):
    lq, lk, L, S, Dq = shape
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(*lq, L, Dq, generator=gen, dtype=torch.float64)
    k = torch.randn(*lk, S, Dk, generator=gen, dtype=torch.float64)
    W = torch.randn(Dk, Dq, generator=gen, dtype=torch.float64)
    bil = loop(q, k, lambda a, b: sum(float(b[e]) * float(W[e, d]) * float(a[d]) for e in range(Dk) for d in range(Dq)))
    torch.testing.assert_close(sc.bilinear(q, k, weight=W), bil)
    for with_bias in (False, True):
        w_q, w_k, v, b = _params(Dq, Dk, A, gen, with_bias)
        got = sc.additive(q, k, w_q=w_q, w_k=w_k, v=v, hidden_bias=b)
        torch.testing.assert_close(got, loop(q, k, additive_ref(w_q, w_k, v, b)))


def test_cosine_zero_vector_scores_zero_not_nan():
    q = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    k = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    s = sc.cosine(q, k)
    torch.testing.assert_close(s.detach(), torch.tensor([[0.0, 0.0], [0.6, 0.0]], dtype=torch.float64))
    (g,) = torch.autograd.grad(s.sum(), q)
    assert torch.isfinite(g).all()


def test_bilinear_with_identity_is_dot_and_additive_is_luong_concat():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    k = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(sc.bilinear(q, k, weight=torch.eye(4, dtype=torch.float64)), sc.dot(q, k))
    # Luong concat v^T tanh(W_a [q; x]) with W_a = [U, W]
    w_q, w_k, v, _ = _params(4, 4, 6, gen, False)
    Wa = torch.cat([w_q, w_k], dim=1)  # (A, Dq + Dk)
    concat = loop(q, k, lambda a, b: _dot(v, torch.tanh(Wa @ torch.cat([a, b]))))
    torch.testing.assert_close(sc.additive(q, k, w_q=w_q, w_k=w_k, v=v), concat)


# ----------------------------------------------------------------------------------------------
# gradcheck (float64), every score, including parameters
# ----------------------------------------------------------------------------------------------


def _gq(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("name", ["dot", "scaled_dot", "cosine"])
def test_parameter_free_gradcheck(name):
    gen = torch.Generator().manual_seed(1)
    q, k = _gq(gen, 2, 3, 4), _gq(gen, 1, 5, 4)
    score = sc.PARAMETER_FREE[name]()
    assert torch.autograd.gradcheck(score, (q, k))
    assert torch.autograd.gradgradcheck(score, (q, k))


def test_bilinear_gradcheck_inputs_and_weight():
    gen = torch.Generator().manual_seed(2)
    q, k, W = _gq(gen, 2, 3, 4), _gq(gen, 2, 5, 3), _gq(gen, 3, 4)
    assert torch.autograd.gradcheck(lambda q, k, W: sc.bilinear(q, k, weight=W), (q, k, W))


@pytest.mark.parametrize("with_bias", [False, True])
def test_additive_gradcheck_inputs_and_parameters(with_bias):
    gen = torch.Generator().manual_seed(3)
    q, k = _gq(gen, 2, 3, 4), _gq(gen, 2, 5, 3)
    w_q, w_k, v = _gq(gen, 6, 4), _gq(gen, 6, 3), _gq(gen, 6)
    args = [q, k, w_q, w_k, v] + ([_gq(gen, 6)] if with_bias else [])

    def f(q, k, w_q, w_k, v, b=None):
        return sc.additive(q, k, w_q=w_q, w_k=w_k, v=v, hidden_bias=b)

    assert torch.autograd.gradcheck(f, tuple(args))


def test_user_callable_score_gradcheck_through_attend():
    import qkv

    gen = torch.Generator().manual_seed(4)
    q, k, v = _gq(gen, 3, 2), _gq(gen, 4, 2), _gq(gen, 4, 2)

    def neg_dist(a, b):
        return -(torch.cdist(a, b) ** 2)

    assert torch.autograd.gradcheck(lambda q, k, v: qkv.attend(q, k, v, score=neg_dist).output, (q, k, v))


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dot", "scaled_dot", "cosine"])
def test_width_mismatch_names_shapes(name):
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 6)
    with pytest.raises(ValueError) as info:
        sc.PARAMETER_FREE[name]()(q, k)
    msg = str(info.value)
    assert "(2, 3, 4)" in msg and "(2, 5, 6)" in msg and name in msg


@pytest.mark.parametrize("wshape", [(4, 3), (3,), (2, 3, 4), (3, 3)])
def test_bilinear_bad_weight_shape(wshape):
    q, k = torch.randn(3, 4), torch.randn(5, 3)  # W must be (Dk, Dq) = (3, 4)
    with pytest.raises(ValueError) as info:
        sc.bilinear(q, k, weight=torch.randn(wshape))
    msg = str(info.value)
    assert "weight" in msg and str(wshape) in msg and "(3, 4)" in msg


@pytest.mark.parametrize(
    "bad",
    [{"w_q": (6, 3)}, {"w_k": (6, 4)}, {"v": (5,)}, {"v": (6, 1)}],
    ids=["w_q", "w_k", "v_len", "v_2d"],
)
def test_additive_bad_parameter_shapes(bad):
    q, k = torch.randn(3, 4), torch.randn(5, 2)
    shapes = {"w_q": (6, 4), "w_k": (6, 2), "v": (6,)}
    shapes.update(bad)
    params = {n: torch.randn(s) for n, s in shapes.items()}
    ((name, shape),) = bad.items()
    with pytest.raises(ValueError) as info:
        sc.additive(q, k, **params)
    msg = str(info.value)
    assert name in msg and str(shape) in msg


def test_additive_bad_bias_shape():
    q, k = torch.randn(3, 4), torch.randn(5, 2)
    with pytest.raises((ValueError, RuntimeError)):
        sc.additive(q, k, w_q=torch.randn(6, 4), w_k=torch.randn(6, 2), v=torch.randn(6), hidden_bias=torch.randn(4))


# ----------------------------------------------------------------------------------------------
# exercise 8-2: Var(q·k) = d_k for unit-variance entries; scaling by 1/sqrt(d_k) restores 1
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d_k", [4, 16, 64, 256])
def test_exercise_8_2_dot_variance_grows_like_dk(d_k):
    gen = torch.Generator().manual_seed(82)
    n = 20000  # sample pairs: std error of a variance estimate ~ sqrt(2/n) ~ 1% (plus kurtosis)
    q = torch.randn(n, 1, d_k, generator=gen, dtype=torch.float64)
    k = torch.randn(n, 1, d_k, generator=gen, dtype=torch.float64)
    raw = sc.dot(q, k).flatten()
    scaled = sc.scaled_dot(q, k).flatten()
    assert raw.var().item() / d_k == pytest.approx(1.0, abs=0.06)
    assert scaled.var().item() == pytest.approx(1.0, abs=0.06)
    assert raw.mean().item() == pytest.approx(0.0, abs=4 * math.sqrt(d_k / n))
    # the unscaled softmax saturates as d_k grows, the scaled one does not
    if d_k >= 64:
        rows_raw = torch.softmax(raw[: 100 * 10].reshape(100, 10), -1).amax(-1).mean()
        rows_scaled = torch.softmax(scaled[: 100 * 10].reshape(100, 10), -1).amax(-1).mean()
        assert rows_raw > 0.85 > 0.6 > rows_scaled
