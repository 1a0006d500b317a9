"""The neural queue (Grefenstette et al. 2015 §3.3): the equations transcribed with explicit loops, first in
first out, fractional strengths, the read as a call of ``attend``, float64 gradcheck."""

from __future__ import annotations

import pytest
import torch

from qkv.functional.attention import attend
from qkv.memory import MEMORY_MODELS, NeuralQueue
from qkv.memory.queue import QueueState, bottom_weights, enqueue_dequeue, read

M = 4


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _paper_step(V: list, s: list, v, d: float, u: float) -> tuple[list, list]:
    """s_t[i] = max(0, s_{t-1}[i] - max(0, u_t - sum_{j=1}^{i-1} s_{t-1}[j])) for i < t; s_t[t] = d_t."""
    new_s = []
    for i in range(len(s)):
        below = sum(s[j] for j in range(i))
        new_s.append(max(0.0, s[i] - max(0.0, u - below)))
    return [*V, v], [*new_s, d]


def _paper_read(V: list, s: list) -> tuple[torch.Tensor, list]:
    """r_t = sum_i min(s[i], max(0, 1 - sum_{j=1}^{i-1} s[j])) V[i]."""
    weights = [min(s[i], max(0.0, 1.0 - sum(s[j] for j in range(i)))) for i in range(len(s))]
    r = sum((w * V[i] for i, w in enumerate(weights)), torch.zeros(M, dtype=torch.float64))
    return r, weights


def test_the_worked_example_read_from_the_bottom():
    v = torch.eye(3, dtype=torch.float64)
    st = QueueState.empty(dim=3, dtype=torch.float64)
    expected_s = [[0.8], [0.7, 0.5], [0.0, 0.3, 0.9]]
    expected_r = [[0.8, 0, 0], [0.7, 0.3, 0], [0, 0.3, 0.7]]
    for t, (d, u) in enumerate([(0.8, 0.0), (0.5, 0.1), (0.9, 0.9)]):
        st = enqueue_dequeue(st, v[t], d, u)
        torch.testing.assert_close(st.strengths, torch.tensor(expected_s[t], dtype=torch.float64))
        torch.testing.assert_close(read(st).output[0], torch.tensor(expected_r[t], dtype=torch.float64))


def test_enqueue_then_dequeue_returns_what_was_enqueued_first_in_first_out():
    a, b, c = torch.randn(3, M, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = torch.zeros(M, dtype=torch.float64)
    st = QueueState.empty(dim=M, dtype=torch.float64)
    for x in (a, b, c):
        st = enqueue_dequeue(st, x, 1.0, 0.0)
        torch.testing.assert_close(read(st).output[0], a)  # the front stays the first value
    for expected in (b, c, z):
        st = enqueue_dequeue(st, z, 0.0, 1.0)
        torch.testing.assert_close(read(st).output[0], expected)


def test_fractional_strengths():
    a, b = torch.randn(2, M, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    st = enqueue_dequeue(QueueState.empty(dim=M, dtype=torch.float64), a, 0.5, 0.0)
    torch.testing.assert_close(read(st).output[0], 0.5 * a)
    st = enqueue_dequeue(st, b, 0.5, 0.0)
    torch.testing.assert_close(read(st).output[0], 0.5 * a + 0.5 * b)
    st = enqueue_dequeue(st, b, 0.0, 0.75)  # dequeue 0.75: all of a (0.5) and 0.25 of b
    torch.testing.assert_close(st.strengths, torch.tensor([0.0, 0.25, 0.0], dtype=torch.float64))
    torch.testing.assert_close(read(st).output[0], 0.25 * b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_update_and_read_equal_the_transcribed_equations(seed):
    B, T = 3, 7
    vals = torch.randn(B, T, M, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    d, u = _rand(B, T, seed=seed + 10), _rand(B, T, seed=seed + 20)
    st = QueueState.empty(B, dim=M, dtype=torch.float64)
    ref = [([], []) for _ in range(B)]
    for t in range(T):
        st = enqueue_dequeue(st, vals[:, t], d[:, t], u[:, t])
        out = read(st, return_weights=True)
        for b in range(B):
            ref[b] = _paper_step(*ref[b], vals[b, t], float(d[b, t]), float(u[b, t]))
            r, w = _paper_read(*ref[b])
            torch.testing.assert_close(st.strengths[b], torch.tensor(ref[b][1], dtype=torch.float64))
            torch.testing.assert_close(out.weights[b, 0], torch.tensor(w, dtype=torch.float64))
            torch.testing.assert_close(out.output[b, 0], r)


def test_the_read_is_a_call_of_attend():
    st = QueueState(torch.randn(2, 5, M, dtype=torch.float64), _rand(2, 5, seed=3))
    out = read(st, return_weights=True)
    q = torch.ones(2, 1, 1, dtype=torch.float64)
    ref = attend(q, st.strengths[..., None], st.values, score="dot", normalize=bottom_weights, return_weights=True)
    torch.testing.assert_close(out.weights, ref.weights)
    torch.testing.assert_close(out.output, ref.output)
    torch.testing.assert_close(out.output, out.weights @ st.values)


def test_gradcheck_through_several_steps():
    vals = torch.randn(2, 4, M, dtype=torch.float64, requires_grad=True)
    d = (0.1 + 0.8 * _rand(2, 4, seed=4)).requires_grad_()
    u = (0.1 + 0.8 * _rand(2, 4, seed=5)).requires_grad_()

    def run(vals, d, u):
        st = QueueState.empty(2, dim=M, dtype=torch.float64)
        reads = []
        for t in range(4):
            st = enqueue_dequeue(st, vals[:, t], d[:, t], u[:, t])
            reads.append(read(st).output)
        return torch.cat(reads, 1)

    assert torch.autograd.gradcheck(run, (vals, d, u))


def test_errors_name_the_argument():
    st = QueueState.empty(2, dim=M)
    with pytest.raises(ValueError, match="value"):
        enqueue_dequeue(st, torch.zeros(2, M + 1), 1.0, 0.0)
    with pytest.raises(ValueError, match="pop"):
        enqueue_dequeue(st, torch.zeros(2, M), 1.0, torch.ones(3))
    with pytest.raises(ValueError, match="controller_dim"):
        NeuralQueue(3, 2, controller_dim=0)


def test_model_runs_the_queue():
    assert NeuralQueue in MEMORY_MODELS
    torch.manual_seed(0)
    model = NeuralQueue(5, 3, memory_dim=6, controller_dim=8).double()
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    out = model(x, return_trace=True)
    y, trace = out.output, out.trace
    assert y.shape == (2, 6, 3) and trace["read_weights"].shape == (2, 6, 6)
    for t in range(6):
        s = trace["strengths"][:, t, : t + 1]
        torch.testing.assert_close(trace["read_weights"][:, t, : t + 1], bottom_weights(s))
    small = NeuralQueue(3, 2, memory_dim=2, controller_dim=3, controller="feedforward").double()
    x = torch.randn(1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: small(x).output, (x,))
