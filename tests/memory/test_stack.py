"""The neural stack: Grefenstette et al. 2015 eqs. 1-3 transcribed with explicit loops, the paper's worked
example, push/pop semantics, fractional strengths, the read as a call of ``attend``, float64 gradcheck."""

from __future__ import annotations

import pytest
import torch

from qkv.functional.attention import attend
from qkv.memory import MEMORY_MODELS, NeuralStack
from qkv.memory.ntm.controller import CONTROLLERS
from qkv.memory.stack import StackState, push_pop, read, top_weights

M = 4


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _paper_step(V: list, s: list, v, d: float, u: float) -> tuple[list, list]:
    """Eqs. 1 and 2, one example, element by element (1-based t: the new slot is index len(s))."""
    t = len(s)
    new_s = []
    for i in range(t):
        above = sum(s[j] for j in range(i + 1, t))  # sum_{j=i+1}^{t-1} s_{t-1}[j]
        new_s.append(max(0.0, s[i] - max(0.0, u - above)))
    return [*V, v], [*new_s, d]


def _paper_read(V: list, s: list) -> tuple[torch.Tensor, list]:
    """Eq. 3: r_t = sum_i min(s[i], max(0, 1 - sum_{j=i+1}^{t} s[j])) V[i]."""
    weights = []
    for i in range(len(s)):
        above = sum(s[j] for j in range(i + 1, len(s)))
        weights.append(min(s[i], max(0.0, 1.0 - above)))
    r = sum((w * V[i] for i, w in enumerate(weights)), torch.zeros(M, dtype=torch.float64))
    return r, weights


def test_the_papers_worked_example():
    """Fig. 1b: push v1 (0.8); pop 0.1, push v2 (0.5); pop 0.9, push v3 (0.9)."""
    v = torch.eye(3, dtype=torch.float64)
    st = StackState.empty(dim=3, dtype=torch.float64)
    expected_s = [[0.8], [0.7, 0.5], [0.3, 0.0, 0.9]]
    expected_r = [[0.8, 0, 0], [0.5, 0.5, 0], [0.1, 0, 0.9]]
    for t, (d, u) in enumerate([(0.8, 0.0), (0.5, 0.1), (0.9, 0.9)]):
        st = push_pop(st, v[t], d, u)
        torch.testing.assert_close(st.strengths, torch.tensor(expected_s[t], dtype=torch.float64))
        torch.testing.assert_close(read(st).output[0], torch.tensor(expected_r[t], dtype=torch.float64))


def test_push_then_pop_returns_what_was_pushed():
    a, b, c = torch.randn(3, M, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = torch.zeros(M, dtype=torch.float64)
    st = StackState.empty(dim=M, dtype=torch.float64)
    for x in (a, b, c):
        st = push_pop(st, x, 1.0, 0.0)
        torch.testing.assert_close(read(st).output[0], x)  # the top is what was just pushed
    for expected in (b, a, z):  # each full pop uncovers the value pushed before, last in first out
        st = push_pop(st, z, 0.0, 1.0)
        torch.testing.assert_close(read(st).output[0], expected)


def test_fractional_strengths():
    a, b = torch.randn(2, M, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    st = push_pop(StackState.empty(dim=M, dtype=torch.float64), a, 0.5, 0.0)
    torch.testing.assert_close(read(st).output[0], 0.5 * a)  # half of a on an empty stack reads 0.5 a
    st = push_pop(st, b, 0.5, 0.0)
    torch.testing.assert_close(read(st).output[0], 0.5 * b + 0.5 * a)  # the top unit spans both
    st = push_pop(st, b, 0.0, 0.75)  # pop 0.75: all of b (0.5) and 0.25 of a
    torch.testing.assert_close(st.strengths, torch.tensor([0.25, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(read(st).output[0], 0.25 * a)
    st = push_pop(st, b, 0.0, 2.0)  # popping more than is there empties the stack, never negative
    assert torch.all(st.strengths == 0) and torch.all(read(st).output == 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_update_and_read_equal_the_transcribed_equations(seed):
    B, T = 3, 7
    vals = torch.randn(B, T, M, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    d, u = _rand(B, T, seed=seed + 10), _rand(B, T, seed=seed + 20)
    st = StackState.empty(B, dim=M, dtype=torch.float64)
    ref = [([], []) for _ in range(B)]
    for t in range(T):
        st = push_pop(st, vals[:, t], d[:, t], u[:, t])
        out = read(st, return_weights=True)
        for b in range(B):
            ref[b] = _paper_step(*ref[b], vals[b, t], float(d[b, t]), float(u[b, t]))
            r, w = _paper_read(*ref[b])
            torch.testing.assert_close(st.strengths[b], torch.tensor(ref[b][1], dtype=torch.float64))
            torch.testing.assert_close(out.weights[b, 0], torch.tensor(w, dtype=torch.float64))
            torch.testing.assert_close(out.output[b, 0], r)


def test_the_read_is_a_call_of_attend():
    st = StackState(torch.randn(2, 5, M, dtype=torch.float64), _rand(2, 5, seed=3))
    out = read(st, return_weights=True)
    q = torch.ones(2, 1, 1, dtype=torch.float64)
    ref = attend(q, st.strengths[..., None], st.values, score="dot", normalize=top_weights, return_weights=True)
    torch.testing.assert_close(out.weights, ref.weights)
    torch.testing.assert_close(out.output, ref.output)
    torch.testing.assert_close(out.output, out.weights @ st.values)  # a weighted sum of the values
    assert float(out.weights.sum(-1).max()) <= 1 + 1e-12  # the top unit of strength, at most


def test_gradcheck_through_several_steps():
    vals = torch.randn(2, 4, M, dtype=torch.float64, requires_grad=True)
    d = (0.1 + 0.8 * _rand(2, 4, seed=4)).requires_grad_()
    u = (0.1 + 0.8 * _rand(2, 4, seed=5)).requires_grad_()

    def run(vals, d, u):
        st = StackState.empty(2, dim=M, dtype=torch.float64)
        reads = []
        for t in range(4):
            st = push_pop(st, vals[:, t], d[:, t], u[:, t])
            reads.append(read(st).output)
        return torch.cat(reads, 1)

    assert torch.autograd.gradcheck(run, (vals, d, u))


def test_errors_name_the_argument():
    st = StackState.empty(2, dim=M)
    with pytest.raises(ValueError, match="value"):
        push_pop(st, torch.zeros(2, M + 1), 1.0, 0.0)
    with pytest.raises(ValueError, match="push"):
        push_pop(st, torch.zeros(2, M), torch.ones(3), 0.0)
    with pytest.raises(TypeError, match="value"):
        push_pop(st, [0.0] * M, 1.0, 0.0)
    with pytest.raises(ValueError, match="controller"):
        NeuralStack(3, 2, controller="gru")
    with pytest.raises(ValueError, match="memory_dim"):
        NeuralStack(3, 2, memory_dim=0)
    with pytest.raises(ValueError, match="x must be"):
        NeuralStack(3, 2)(torch.zeros(1, 4, 5))


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_model_runs_the_stack_and_its_reads_are_attend_calls(controller):
    torch.manual_seed(0)
    model = NeuralStack(5, 3, memory_dim=6, controller_dim=8, controller=controller).double()
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    out = model(x, return_trace=True)
    y, trace = out.output, out.trace
    assert y.shape == (2, 6, 3) and trace["push"].shape == (2, 6) and trace["strengths"].shape == (2, 6, 6)
    torch.testing.assert_close(model(x).output, y)
    assert model(x).trace is None
    assert isinstance(model.controller, CONTROLLERS[controller])  # the NTM's controllers
    for t in range(6):  # row t holds the t + 1 slots after step t; the read weights are attend's
        s = trace["strengths"][:, t, : t + 1]
        ref = attend(torch.ones(2, 1, 1, dtype=torch.float64), s[..., None], torch.zeros(2, t + 1, 1,
                     dtype=torch.float64), score="dot", normalize=top_weights, return_weights=True)
        torch.testing.assert_close(trace["read_weights"][:, t, : t + 1], ref.weights[:, 0])
        assert torch.all(trace["strengths"][:, t, t + 1:] == 0)
    torch.testing.assert_close(trace["strengths"][:, :, :].diagonal(dim1=1, dim2=2), trace["push"])  # s_t[t] = d_t


def test_model_gradcheck_and_listing():
    assert NeuralStack in MEMORY_MODELS
    torch.manual_seed(0)
    model = NeuralStack(3, 2, memory_dim=2, controller_dim=3).double()
    x = torch.randn(1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: model(x).output, (x,))
