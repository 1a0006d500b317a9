"""Normalizers of `qkv.functional.normalize` against naive per-row loops written here, their
gradients (float64 gradcheck), and the masking convention (True = may attend; fully masked rows
give zeros and zero gradient, never NaN)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qkv.functional import normalize as nz

# ----------------------------------------------------------------------------------------------
# references: one row at a time, in Python floats
# ----------------------------------------------------------------------------------------------


def ref_softmax_row(s, ok):
    fin = [x for x, a in zip(s, ok, strict=True) if a and x != -math.inf]
    if not fin:
        return [0.0] * len(s)
    m = max(fin)
    e = [math.exp(x - m) if a and x != -math.inf else 0.0 for x, a in zip(s, ok, strict=True)]
    z = sum(e)
    return [x / z for x in e]


def ref_relu_row(s, ok):
    n = sum(ok)
    return [max(x, 0.0) / n if a else 0.0 for x, a in zip(s, ok, strict=True)]


def ref_sparsemax_row(s, ok):
    """Sort-based projection onto the simplex over the allowed entries (Martins & Astudillo, alg. 1)."""
    vals = [x for x, a in zip(s, ok, strict=True) if a]
    if not vals:
        return [0.0] * len(s)
    z = sorted(vals, reverse=True)
    csum, tau = 0.0, None
    for r, zr in enumerate(z, start=1):
        csum += zr
        if 1 + r * zr > csum:
            tau = (csum - 1) / r
    return [max(x - tau, 0.0) if a else 0.0 for x, a in zip(s, ok, strict=True)]


def ref_hard_row(s, ok):
    best = None
    for j, (x, a) in enumerate(zip(s, ok, strict=True)):
        if a and (best is None or x > s[best]):
            best = j
    return [1.0 if j == best else 0.0 for j in range(len(s))]


REFS = {"softmax": ref_softmax_row, "relu": ref_relu_row, "sparsemax": ref_sparsemax_row, "hard": ref_hard_row}


def apply_rows(ref, scores, mask):
    """Apply a row reference over (..., L, S); mask broadcast to scores (or None)."""
    m = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask.expand_as(scores)
    s2, m2 = scores.reshape(-1, scores.shape[-1]), m.reshape(-1, scores.shape[-1])
    rows = [ref(s2[r].tolist(), m2[r].tolist()) for r in range(s2.shape[0])]
    return torch.tensor(rows, dtype=torch.float64).reshape(scores.shape)


def call(name, scores, mask):
    """The named normaliser (built with default options); ``(weights, log_prob)`` for "sample"."""
    weights, log_prob = nz.NORMALIZERS[name]().normalize(scores, mask)
    if name == "sample":
        return weights, log_prob
    assert log_prob is None
    return weights


# ----------------------------------------------------------------------------------------------
# values against the loops
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["softmax", "relu", "sparsemax", "hard"])
@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 6)),
    seed=st.integers(0, 2**31 - 1),
    mask_shape=st.sampled_from(["none", "full", "keys", "rows"]),
    spread=st.sampled_from([0.1, 1.0, 5.0]),
)
def test_normalizer_matches_loop(name, shape, seed, mask_shape, spread):
    gen = torch.Generator().manual_seed(seed)
    B, L, S = shape
    scores = spread * torch.randn(B, L, S, generator=gen, dtype=torch.float64)
    mask = {
        "none": None,
        "full": torch.rand(B, L, S, generator=gen) < 0.6,
        "keys": torch.rand(B, 1, S, generator=gen) < 0.6,
        "rows": torch.rand(L, 1, generator=gen) < 0.6,
    }[mask_shape]
    got = call(name, scores, mask)
    assert got.shape == scores.shape and got.dtype == scores.dtype
    torch.testing.assert_close(got, apply_rows(REFS[name], scores, mask))


def test_softmax_known_values_and_minus_inf_scores():
    s = torch.tensor([[0.0, math.log(3.0), -math.inf, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False]])
    torch.testing.assert_close(nz.softmax(s, mask), torch.tensor([[0.25, 0.75, 0.0, 0.0]], dtype=torch.float64))
    # a row whose only allowed scores are -inf is empty: zeros
    s2 = torch.tensor([[-math.inf, -math.inf, 1.0]])
    mask2 = torch.tensor([[True, True, False]])
    assert (nz.softmax(s2, mask2) == 0).all()
    # large scores do not overflow
    big = torch.tensor([[1000.0, 1000.0, -1000.0]])
    torch.testing.assert_close(nz.softmax(big), torch.tensor([[0.5, 0.5, 0.0]]))


def test_relu_divides_by_number_of_allowed_keys():
    s = torch.tensor([[2.0, -1.0, 3.0, 4.0, 6.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    torch.testing.assert_close(nz.relu(s, mask), torch.tensor([[0.5, 0.0, 0.75, 1.0, 0.0]]))
    torch.testing.assert_close(nz.relu(s), torch.tensor([[0.4, 0.0, 0.6, 0.8, 1.2]]))


def test_sparsemax_known_values():
    # s = (1, 0.8, 0.1): tau = (1.8 - 1)/2 = 0.4 -> (0.6, 0.4, 0)
    s = torch.tensor([[1.0, 0.8, 0.1]], dtype=torch.float64)
    torch.testing.assert_close(nz.sparsemax(s), torch.tensor([[0.6, 0.4, 0.0]], dtype=torch.float64))
    # uniform scores -> uniform weights; one dominant score -> one-hot
    torch.testing.assert_close(nz.sparsemax(torch.zeros(1, 4)), torch.full((1, 4), 0.25))
    torch.testing.assert_close(nz.sparsemax(torch.tensor([[0.0, 3.0, 0.5]])), torch.tensor([[0.0, 1.0, 0.0]]))
    # masking the dominant key redistributes over the rest
    m = torch.tensor([[True, False, True]])
    torch.testing.assert_close(nz.sparsemax(torch.tensor([[0.0, 3.0, 0.5]]), m), torch.tensor([[0.25, 0.0, 0.75]]))


@settings(max_examples=40, deadline=None)
@given(
    S=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
    spread=st.sampled_from([0.05, 0.5, 2.0, 20.0]),
)
def test_sparsemax_kkt_conditions(S, seed, spread):
    gen = torch.Generator().manual_seed(seed)
    s = spread * torch.randn(6, S, generator=gen, dtype=torch.float64)
    mask = torch.rand(6, S, generator=gen) < 0.7
    mask[:, 0] = True  # every row non-empty
    w = nz.sparsemax(s, mask)
    assert (w >= 0).all()
    assert (w[~mask] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(6, dtype=torch.float64))
    for r in range(6):
        support = (w[r] > 0) & mask[r]
        assert support.any()
        tau = s[r][support] - w[r][support]
        torch.testing.assert_close(tau, tau[0].expand_as(tau))  # s_j - w_j = tau on the support
        off = mask[r] & ~support
        assert (s[r][off] <= tau[0] + 1e-12).all()  # off-support scores at most tau


def test_hard_ties_go_to_first_and_masked_max_is_skipped():
    s = torch.tensor([[1.0, 3.0, 3.0, 0.0], [5.0, 1.0, 2.0, 2.0]])
    mask = torch.tensor([[True, True, True, True], [False, True, True, True]])
    torch.testing.assert_close(nz.hard(s, mask), torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))


def test_hard_straight_through_forward_is_one_hot_backward_is_softmax():
    gen = torch.Generator().manual_seed(4)
    s = torch.randn(3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True, False, True, False, True], [False] * 5])
    w = nz.hard(s, mask, straight_through=True)
    torch.testing.assert_close(w.detach(), apply_rows(ref_hard_row, s.detach(), mask))
    g = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    (got,) = torch.autograd.grad(w, s, g)
    s2 = s.detach().clone().requires_grad_()
    (want,) = torch.autograd.grad(nz.softmax(s2, mask), s2, g)
    torch.testing.assert_close(got, want)
    assert (got[2] == 0).all()
    # without straight-through: no gradient
    assert not nz.hard(s, mask).requires_grad


def test_sample_is_one_hot_on_allowed_key_with_log_prob():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(2, 50, 6, generator=gen, dtype=torch.float64)
    mask = torch.rand(2, 50, 6, generator=gen) < 0.5
    mask[0, 0] = False
    w, logp = nz.sample(s, mask, generator=gen)
    assert w.shape == s.shape and logp.shape == (2, 50)
    assert ((w == 0) | (w == 1)).all()
    nonempty = mask.any(-1)
    torch.testing.assert_close(w.sum(-1), nonempty.double())
    assert (w[~mask] == 0).all()
    for b in range(2):
        for i in range(50):
            if nonempty[b, i]:
                j = int(w[b, i].argmax())
                ref = ref_softmax_row(s[b, i].tolist(), mask[b, i].tolist())
                assert logp[b, i].item() == pytest.approx(math.log(ref[j]), rel=1e-9, abs=1e-12)
            else:
                assert logp[b, i] == 0


# ----------------------------------------------------------------------------------------------
# gradients (float64 gradcheck)
# ----------------------------------------------------------------------------------------------

MASK = torch.tensor([[True, True, False, True, True], [False] * 5, [True, False, False, False, False], [True] * 5])


@pytest.mark.parametrize("name", ["softmax", "relu", "sparsemax"])
def test_normalizer_gradcheck(name):
    gen = torch.Generator().manual_seed(1)
    # distinct, well-separated scores away from 0 (relu kink) and from sparsemax ties/boundaries
    base = torch.tensor([0.9, -0.7, 0.35, 0.6, -0.2], dtype=torch.float64)
    perm = torch.stack([torch.randperm(5, generator=gen) for _ in range(4)])
    s = base[perm].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: call(name, x, MASK), (s,))
    assert torch.autograd.gradcheck(lambda x: call(name, x, None), (s,))


def test_hard_straight_through_gradient_is_finite_difference_softmax_jacobian():
    """gradcheck cannot apply as is (the forward is piecewise constant, its numerical gradient is 0);
    the straight-through Jacobian must equal the finite-difference Jacobian of the masked softmax."""
    s = torch.tensor([[0.9, -0.7, 0.35, 0.6, -0.2]] * 4, dtype=torch.float64)
    got = torch.autograd.functional.jacobian(lambda x: nz.hard(x, MASK, straight_through=True), s)
    eps = 1e-6
    want = torch.zeros(4, 5, 4, 5, dtype=torch.float64)
    for r in range(4):
        for el in range(5):
            hi, lo = s[r].tolist(), s[r].tolist()
            hi[el] += eps
            lo[el] -= eps
            d = [
                (a - b) / (2 * eps)
                for a, b in zip(
                    ref_softmax_row(hi, MASK[r].tolist()), ref_softmax_row(lo, MASK[r].tolist()), strict=True
                )
            ]
            want[r, :, r, el] = torch.tensor(d, dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-8)


def test_sample_log_prob_gradcheck():
    s = torch.tensor([[0.9, -0.7, 0.35, 0.6, -0.2]] * 4, dtype=torch.float64, requires_grad=True)

    def f(x):
        return nz.sample(x, MASK, generator=torch.Generator().manual_seed(3))[1]

    assert torch.autograd.gradcheck(f, (s,))


def test_sparsemax_gradient_matches_closed_form():
    # d w_j / d s_l = [j, l in support] (delta_jl - 1/|support|)
    s = torch.tensor([[1.0, 0.8, 0.1, 0.7]], dtype=torch.float64, requires_grad=True)
    w = nz.sparsemax(s)
    support = w.detach()[0] > 0
    n = int(support.sum())
    J = torch.zeros(4, 4, dtype=torch.float64)
    for j in range(4):
        for el in range(4):
            if support[j] and support[el]:
                J[j, el] = (1.0 if j == el else 0.0) - 1.0 / n
    got = torch.autograd.functional.jacobian(lambda x: nz.sparsemax(x)[0], s.detach())[:, 0, :]
    torch.testing.assert_close(got, J)


# ----------------------------------------------------------------------------------------------
# fully masked rows: zeros, zero gradient, never NaN, in every dtype
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["softmax", "relu", "sparsemax", "hard", "hard_st", "sample"])
def test_fully_masked_rows_are_zero_without_nan(name, dtype):
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(2, 3, 4, generator=gen).to(dtype).requires_grad_()
    mask = torch.tensor([[True, False, True, True], [False] * 4, [False, False, False, True]])
    if name == "sample":
        w, logp = nz.sample(s, mask, generator=gen)
        y = logp
        assert (logp[:, 1] == 0).all()
        assert torch.isfinite(logp).all()
    elif name == "hard_st":
        w = y = nz.hard(s, mask, straight_through=True)
    else:
        w = y = call(name, s, mask)
    assert w.dtype == dtype
    assert torch.isfinite(w).all()
    assert (w[:, 1] == 0).all()
    assert (w.masked_select(~mask.expand_as(w)) == 0).all()
    if y.requires_grad:
        weights = torch.arange(y.numel(), dtype=torch.float32).reshape(y.shape)
        (g,) = torch.autograd.grad((y.float() * weights).sum(), s)
        assert torch.isfinite(g).all()
        assert (g[:, 1] == 0).all()


@pytest.mark.parametrize("name", ["softmax", "relu", "sparsemax", "hard", "sample"])
def test_all_minus_inf_row_without_mask_is_zero(name):
    """A key forbidden by a -inf score (e.g. bias) is masked too: an all -inf row is empty."""
    s = torch.tensor([[0.5, -math.inf, 1.0], [-math.inf, -math.inf, -math.inf]], requires_grad=True)
    out = call(name, s, None)
    w = out[0] if name == "sample" else out
    assert torch.isfinite(w).all()
    assert (w[:, 1] == 0).all(), "a -inf score must get zero weight"
    if name != "relu":  # relu: ReLU(-inf) = 0 everywhere anyway
        assert (w[1] == 0).all(), f"{name}: a row of -inf scores must get zero weights, got {w[1].tolist()}"
