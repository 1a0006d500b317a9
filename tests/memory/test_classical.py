"""The classical Hopfield network: storage rules, energy, updates, fixed points, exercise 8-6."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qkv.memory import ClassicalHopfield
from qkv.memory.hopfield import classical as cl
from qkv.tasks.corruption import corrupt, random_patterns


def _patterns(p: int, n: int, seed: int = 0) -> torch.Tensor:
    return random_patterns(p, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_hebbian_is_the_books_sum_with_a_zero_diagonal():
    x = _patterns(4, 7)
    w = cl.hebbian(x)
    ref = torch.zeros(7, 7, dtype=torch.float64)
    for i in range(7):
        for j in range(7):
            if i != j:
                ref[i, j] = sum(x[n, i] * x[n, j] for n in range(4)) / 7  # w_ij = 1/N sum_n x_i x_j
    torch.testing.assert_close(w, ref)


def test_energy_is_the_books_double_sum():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 6, generator=g, dtype=torch.float64)
    w = w + w.T
    b = torch.randn(6, generator=g, dtype=torch.float64)
    s = _patterns(3, 6)
    ref = torch.stack([-0.5 * sum(w[i, j] * si[i] * si[j] for i in range(6) for j in range(6))
                       - sum(b[i] * si[i] for i in range(6)) for si in s])
    torch.testing.assert_close(cl.energy(s, w, b), ref)


def test_stored_patterns_are_fixed_points_below_capacity():
    x = _patterns(5, 200)  # alpha = 0.025
    net = ClassicalHopfield.store(x)
    assert net.is_fixed_point(x).all()
    noisy = corrupt(x, 0.15, generator=torch.Generator().manual_seed(0))
    out = net.run(noisy, mode="async", generator=torch.Generator().manual_seed(0))
    assert out.converged.all()
    torch.testing.assert_close(out.states, x)  # each probe falls back into its pattern


def test_pseudo_inverse_stores_correlated_patterns_that_hebbian_cannot():
    g = torch.Generator().manual_seed(0)
    base = random_patterns(1, 64, generator=g, dtype=torch.float64)
    x = corrupt(base.expand(8, 64), 0.1, generator=g)  # 8 patterns, each 10 % away from a common one
    w = cl.pseudo_inverse(x)
    torch.testing.assert_close(x @ w, x)  # W projects onto the span: W xi = xi
    assert ClassicalHopfield.store(x, rule="pseudo_inverse").is_fixed_point(x).all()
    assert not ClassicalHopfield.store(x).is_fixed_point(x).all()  # Hebbian: the patterns merge


def test_sync_step_is_vectorised_over_probes():
    x = _patterns(10, 50)
    net = ClassicalHopfield.store(x[:4])
    batch = net.step(x, mode="sync")
    for i in range(10):
        torch.testing.assert_close(batch[i], net.step(x[i], mode="sync"))  # one (N,) state -> (N,)


def test_async_updates_are_reproducible_from_the_generator():
    x = _patterns(12, 80)
    net = ClassicalHopfield.store(x)
    probes = corrupt(x, 0.3, generator=torch.Generator().manual_seed(3))
    a = net.run(probes, generator=torch.Generator().manual_seed(7)).states
    b = net.run(probes, generator=torch.Generator().manual_seed(7)).states
    torch.testing.assert_close(a, b)


def test_book_threshold_sends_a_zero_field_to_plus_one():
    assert cl.threshold(torch.tensor([-1e-9, 0.0, 2.0])).tolist() == [-1.0, 1.0, 1.0]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 24), p=st.integers(1, 6), probes=st.integers(1, 4), seed=st.integers(0, 2**16),
       kind=st.sampled_from(["hebbian", "pseudo_inverse", "random"]), zeros=st.booleans())
def test_exercise_8_6_async_updates_never_increase_the_energy(n, p, probes, seed, kind, zeros):
    """Every single-neuron update, on random networks (symmetric, diagonal >= 0) and random probes."""
    g = torch.Generator().manual_seed(seed)
    x = random_patterns(p, n, generator=g, dtype=torch.float64)
    bias = None
    if kind == "hebbian":
        w = cl.hebbian(x)
    elif kind == "pseudo_inverse":
        w = cl.pseudo_inverse(x)
    else:
        a = torch.randn(n, n, generator=g, dtype=torch.float64)
        w = (a + a.T) / 2
        w.diagonal().copy_(torch.rand(n, generator=g, dtype=torch.float64))  # any diagonal >= 0
        bias = torch.randn(n, generator=g, dtype=torch.float64)
    s = random_patterns(probes, n, generator=g, dtype=torch.float64)
    if zeros:  # unknown (masked) neurons
        s = corrupt(s, 0.3, kind="mask", generator=g)
    e = cl.energy(s, w, bias)
    for _ in range(3):
        order = torch.rand(probes, n, generator=g).argsort(-1)
        for t in range(n):
            cl.update_neuron(s, order[:, t], w, bias)
            e_new = cl.energy(s, w, bias)
            assert torch.all(e_new <= e + 1e-9), (e, e_new)
            e = e_new
    net = ClassicalHopfield(w, bias)
    out = net.run(s, mode="async", max_steps=50, generator=g)
    assert torch.all(out.energies[1:] <= out.energies[:-1] + 1e-9)


def test_exercise_8_6_sync_updates_can_oscillate_with_period_two():
    net, s = cl.period_two_example()
    s1 = net.step(s, mode="sync")
    s2 = net.step(s1, mode="sync")
    assert s1.tolist() == [[-1.0, -1.0]] and torch.equal(s2, s)
    assert float(net.energy(s)) == float(net.energy(s1)) == 1.0
    out = net.run(s, mode="sync", max_steps=10)
    assert out.cycled.all() and not out.converged.any() and out.steps == 2
    settled = net.run(s, mode="async", generator=torch.Generator().manual_seed(0))
    assert settled.converged.all() and float(net.energy(settled.states)) == -1.0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="patterns"):
        cl.hebbian(torch.tensor([[1.0, 0.5]]))
    with pytest.raises(ValueError, match="weight"):
        ClassicalHopfield(torch.tensor([[0.0, 1.0], [2.0, 0.0]]))
    net = ClassicalHopfield.store(_patterns(2, 5))
    with pytest.raises(ValueError, match="states"):
        net.run(torch.ones(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="mode"):
        net.step(torch.ones(1, 5, dtype=torch.float64), mode="parallel")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rule"):
        ClassicalHopfield.store(_patterns(2, 5), rule="storkey")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_steps"):
        net.run(torch.ones(1, 5, dtype=torch.float64), max_steps=-1)
    with pytest.raises(TypeError, match="weight"):
        ClassicalHopfield([[0.0, 1.0], [1.0, 0.0]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bias"):
        ClassicalHopfield(torch.zeros(2, 2), bias=[0.0, 0.0])  # type: ignore[arg-type]


def test_a_negative_diagonal_is_rejected():
    """Exercise 8-6's argument (Delta E = -2|h_i| - 2 w_ii <= 0) needs w_ii >= 0; with w_ii < 0 energy can rise."""
    w = torch.tensor([[-1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="diagonal"):
        ClassicalHopfield(w)
    # why: s = (+1, .) has field h_0 = -1, so the update flips it, yet the energy does not fall
    # (Delta E = -2|h_0| - 2 w_00 = 0); a more negative w_00 would make it rise
    s = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    flipped = cl.update_neuron(s.clone(), torch.tensor([0]), w)
    assert flipped[0, 0] == -1 and float(cl.energy(flipped, w)) >= float(cl.energy(s, w))
    ClassicalHopfield(torch.zeros(2, 2, dtype=torch.float64))  # a zero diagonal is fine


def test_mode_and_max_steps_are_checked_even_when_nothing_runs():
    net = ClassicalHopfield.store(_patterns(2, 5))
    x = _patterns(2, 5)
    assert net.is_fixed_point(x).all()  # nothing would be updated
    with pytest.raises(ValueError, match="mode"):
        net.run(x, mode="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        net.run(x, mode="bogus", max_steps=0)  # type: ignore[arg-type]
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="max_steps"):
            net.run(x, max_steps=bad)  # type: ignore[arg-type]


def test_one_unbatched_state_gives_unbatched_results():
    x = _patterns(3, 20)
    net = ClassicalHopfield.store(x)
    s = corrupt(x[:1], 0.2, generator=torch.Generator().manual_seed(0))[0]  # (N,)
    assert net.step(s, mode="sync").shape == (20,)
    assert net.step(s, mode="async", generator=torch.Generator().manual_seed(0)).shape == (20,)
    assert net.energy(s).shape == () == cl.energy(s, net.weight).shape
    torch.testing.assert_close(net.energy(s), cl.energy(s, net.weight))
    assert net.is_fixed_point(s).shape == ()
    out = net.run(s, mode="sync")
    assert out.states.shape == (20,) and out.converged.shape == () and out.energies.shape == (out.steps + 1,)
    batched = net.run(s[None], mode="sync")
    torch.testing.assert_close(out.states, batched.states[0])
    assert net.step(s[None], mode="sync").shape == (1, 20) and net.energy(s[None]).shape == (1,)


def _book_update(s: list[float], w: torch.Tensor, b: torch.Tensor, i: int) -> float:
    """Seed 001 §8.6.1, neuron i: s_i <- +1 if sum_j w_ij s_j + b_i >= 0, else -1 (a tie goes to +1)."""
    total = b[i].item()
    for j in range(len(s)):
        total += w[i, j].item() * s[j]
    return 1.0 if total >= 0 else -1.0


def _random_net(n: int, seed: int, ties: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if ties:  # small integer weights and biases: zero fields (ties) are frequent
        a = torch.randint(-1, 2, (n, n), generator=g).double()
        b = torch.randint(-1, 2, (n,), generator=g).double()
    else:
        a = torch.randn(n, n, generator=g, dtype=torch.float64)
        b = torch.randn(n, generator=g, dtype=torch.float64)
    w = (a + a.T) / 2 if not ties else torch.triu(a, 1) + torch.triu(a, 1).T
    w.diagonal().abs_()  # w_ii >= 0 (ClassicalHopfield rejects a negative one)
    return w, b


@pytest.mark.parametrize("ties", [False, True])
def test_sync_and_async_steps_follow_the_books_rule_transcribed(ties):
    n, probes = 9, 6
    w, b = _random_net(n, 3, ties)
    net = ClassicalHopfield(w, b)
    s = random_patterns(probes, n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    s[0, :3] = 0  # unknown neurons too
    # synchronous: every neuron from the same old state
    ref = [[_book_update(row, w, b, i) for i in range(n)] for row in s.tolist()]
    assert net.step(s, mode="sync").tolist() == ref
    if ties:
        assert any(abs(sum(w[i, j].item() * r[j] for j in range(n)) + b[i].item()) == 0
                   for r in s.tolist() for i in range(n))  # the tie rule was exercised
    # asynchronous: the documented order, torch.rand(B, N, generator).argsort(-1), neuron after neuron
    order = torch.rand(probes, n, generator=torch.Generator().manual_seed(5)).argsort(-1).tolist()
    ref = []
    for row, o in zip(s.tolist(), order, strict=True):
        cur = list(row)
        for i in o:
            cur[i] = _book_update(cur, w, b, i)  # later neurons see the new value
        ref.append(cur)
    assert net.step(s, mode="async", generator=torch.Generator().manual_seed(5)).tolist() == ref


def test_async_orders_depend_on_the_generator_and_differ_between_probes():
    """The 2-neuron antiferromagnet from (+1, +1): whichever neuron goes first wins, so the result shows the order."""
    net, s = cl.period_two_example()
    many = s.expand(64, 2)  # 64 identical probes
    outs = {seed: net.step(many, mode="async", generator=torch.Generator().manual_seed(seed)) for seed in range(4)}
    for out in outs.values():
        assert {tuple(r) for r in out.tolist()} == {(-1.0, 1.0), (1.0, -1.0)}  # orders differ between probes
    assert len({tuple(map(tuple, o.tolist())) for o in outs.values()}) == 4  # and between seeds
    torch.manual_seed(0)
    a = net.step(many, mode="async", generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)  # the global generator must not matter
    b = net.step(many, mode="async", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(a, outs[1])
