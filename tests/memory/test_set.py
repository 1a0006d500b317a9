"""The content-addressed set: the read against its formula and an independent ``attend`` call (cosine score),
membership, the empty set, float64 gradcheck, the model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qkv.functional.attention import attend
from qkv.memory import MEMORY_MODELS, NeuralSet
from qkv.memory.content_set import SetState, add, membership, read

M = 5


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _filled(B=2, S=4, seed=0):
    e = _randn(B, S, M, seed=seed)
    a = 0.2 + 0.8 * torch.rand(B, S, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    st = SetState.empty(B, dim=M, dtype=torch.float64)
    for i in range(S):
        st = add(st, e[:, i], a[:, i])
    return st, e, a


def _formula(e, a, q, beta):
    """w_i = a_i exp(beta cos(q, e_i)) / sum_j a_j exp(beta cos(q, e_j)); r = sum_i w_i e_i (loops)."""
    B, S, _ = e.shape
    out, weights = torch.zeros(B, M, dtype=e.dtype), torch.zeros(B, S, dtype=e.dtype)
    for b in range(B):
        num = [float(a[b, i]) * torch.exp(beta * F.cosine_similarity(q[b], e[b, i], dim=0)) for i in range(S)]
        total = sum(num)
        for i in range(S):
            weights[b, i] = num[i] / total
            out[b] += weights[b, i] * e[b, i]
    return out, weights


def test_read_equals_the_formula_and_an_attend_call_with_the_cosine_score():
    st, e, a = _filled()
    q = _randn(2, 1, M, seed=5)
    out = read(st, q, 3.0, return_weights=True)
    ref_out, ref_w = _formula(e, a, q[:, 0], 3.0)
    torch.testing.assert_close(out.output[:, 0], ref_out)
    torch.testing.assert_close(out.weights[:, 0], ref_w)
    # the same read through attend's own cosine score with the key strength as its scale
    alt = attend(q, e, e, score="cosine", scale=3.0, bias=torch.log(a)[:, None, :], return_weights=True)
    torch.testing.assert_close(out.weights, alt.weights)
    torch.testing.assert_close(out.output, alt.output)


def test_a_stored_element_is_found_and_membership_counts_it():
    st, e, _ = _filled(B=1, S=6, seed=2)
    st = add(st, e[:, 3] * 2.0, 1.0)  # the same direction again, strength 1
    out = read(st, e[:, 3:4] * 0.5, 100.0, return_weights=True)  # scale does not matter to the cosine
    assert int(out.weights[0, 0].argmax()) in (3, 6)
    m = membership(st, e[:, 3:4], 100.0)
    assert m.shape == (1, 1) and float(m) == pytest.approx(1.0)  # clipped soft count 1 + a_3
    stranger = _randn(1, 1, M, seed=9)
    assert float(membership(st, stranger, 100.0)) < 1e-3
    # the formula: min(1, sum_i a_i exp(beta (cos - 1)))
    half = add(SetState.empty(1, dim=M, dtype=torch.float64), e[:, 0], 0.5)
    assert float(membership(half, e[:, :1], 50.0)) == pytest.approx(0.5)
    q = _randn(1, 2, M, seed=3)
    cos = F.cosine_similarity(q[0][:, None], st.elements[0][None], dim=-1)  # (L, S)
    expected = (st.strengths[0] * torch.exp(4.0 * (cos - 1))).sum(-1).clamp(max=1)
    torch.testing.assert_close(membership(st, q, 4.0)[0], expected)


def test_per_example_key_strength_and_the_empty_set():
    st, e, a = _filled()
    q = _randn(2, 1, M, seed=4)
    beta = torch.tensor([1.0, 7.0], dtype=torch.float64)
    out = read(st, q, beta)
    for b in range(2):
        ref, _ = _formula(e[b:b + 1], a[b:b + 1], q[b:b + 1, 0], float(beta[b]))
        torch.testing.assert_close(out.output[b, 0], ref[0])
    empty = SetState.empty(2, dim=M, dtype=torch.float64)
    assert torch.all(read(empty, q).output == 0) and torch.all(membership(empty, q) == 0)


def test_gradcheck():
    e = _randn(2, 3, M, seed=1).requires_grad_()
    a = (0.2 + 0.6 * torch.rand(2, 3, dtype=torch.float64)).requires_grad_()
    q = _randn(2, 2, M, seed=2).requires_grad_()
    beta = torch.tensor([2.0, 3.0], dtype=torch.float64, requires_grad=True)

    def run(e, a, q, beta):
        st = SetState.empty(2, dim=M, dtype=torch.float64)
        for i in range(3):
            st = add(st, e[:, i], a[:, i])
        return read(st, q, beta).output, membership(st, q, beta * 0.1)  # small beta: membership below the clip

    assert torch.autograd.gradcheck(run, (e, a, q, beta))


def test_errors_name_the_argument():
    st = SetState.empty(2, dim=M)
    with pytest.raises(ValueError, match="element"):
        add(st, torch.zeros(2, M + 1), 1.0)
    with pytest.raises(ValueError, match="strength"):
        add(st, torch.zeros(2, M), torch.ones(3))
    with pytest.raises(ValueError, match="query"):
        read(add(st, torch.zeros(2, M), 1.0), torch.zeros(2, 1, M + 1))
    with pytest.raises(ValueError, match="beta"):
        read(add(st, torch.zeros(2, M), 1.0), torch.zeros(2, 1, M), torch.ones(3))


def test_model_reads_by_attend_and_feeds_back_membership():
    assert NeuralSet in MEMORY_MODELS
    torch.manual_seed(0)
    model = NeuralSet(4, 3, memory_dim=M, controller_dim=8).double()
    x = _randn(2, 5, 4, seed=7)
    out = model(x, return_trace=True)
    y, trace = out.output, out.trace
    assert y.shape == (2, 5, 3) and trace["membership"].shape == (2, 5) and trace["strengths"].shape == (2, 5, 5)
    assert torch.all((trace["membership"] >= 0) & (trace["membership"] <= 1))
    torch.testing.assert_close(trace["read_weights"].sum(-1), torch.ones(2, 5, dtype=torch.float64))
    torch.testing.assert_close(trace["strengths"].diagonal(dim1=1, dim2=2), trace["add"])
    small = NeuralSet(2, 2, memory_dim=2, controller_dim=3, controller="feedforward").double()
    xs = _randn(1, 3, 2, seed=8).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: small(x).output, (xs,))
