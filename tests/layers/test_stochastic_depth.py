"""Stochastic depth: the survival schedule p_l = 1 - (l/L)(1 - p_L), eval = the full residual, training drops
the whole sublayer with frequency 1 - p_l (within Monte Carlo error) and is unbiased with ``scale``."""

from __future__ import annotations

import math

import pytest
import torch

from qkv.layers.stochastic_depth import StochasticDepth, survival_probability


def test_survival_schedule_is_the_papers_linear_decay():
    L = 8
    got = [survival_probability(l, L, p_last=0.9) for l in range(1, L + 1)]
    want = [1 - l / L * 0.1 for l in range(1, L + 1)]
    assert got == pytest.approx(want)
    assert got[-1] == pytest.approx(0.9) and got[0] == pytest.approx(1 - 0.1 / 8)
    assert survival_probability(3, 3, p_last=1.0) == 1.0


def test_eval_is_the_full_residual_unscaled():
    sd = StochasticDepth(0.5).eval()
    x = torch.randn(3, 4)
    for _ in range(20):
        torch.testing.assert_close(sd(x, lambda h: 2 * h), 3 * x)


def test_training_drop_frequency_and_expectation_within_monte_carlo_error():
    p, n = 0.7, 4000
    sd = StochasticDepth(p).train()
    g = torch.Generator().manual_seed(0)
    calls = []
    x = torch.ones(2)
    outs = [sd(x, lambda h: calls.append(1) or 2 * h, generator=g) for _ in range(n)]
    kept = sum(not torch.equal(o, x) for o in outs)
    assert len(calls) == kept  # a dropped sublayer is never evaluated
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept / n - p) < 4 * sigma
    mean = torch.stack(outs).mean(0)
    # kept: 1 + 2/p, dropped: 1; the mean is 1 + 2 = the eval output, within 4 sigma
    assert torch.allclose(mean, torch.full((2,), 3.0), atol=4 * (2 / p) * sigma)
    unscaled = StochasticDepth(p, scale=False).train()
    vals = {float(unscaled(x, lambda h: 2 * h, generator=g)[0]) for _ in range(50)}
    assert vals == {1.0, 3.0}


def test_one_decision_for_the_whole_batch():
    sd = StochasticDepth(0.5).train()
    g = torch.Generator().manual_seed(3)
    x = torch.zeros(5, 3)
    for _ in range(30):
        out = sd(x, lambda h: torch.ones_like(h), generator=g)
        assert bool((out == 0).all()) or bool((out == 2).all())


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"survival must be a probability in \(0, 1\], got 0"):
        StochasticDepth(0)
    with pytest.raises(ValueError, match=r"layer must be an int in 1..num_layers=4, got 5"):
        survival_probability(5, 4)
    with pytest.raises(ValueError, match="p_last"):
        survival_probability(1, 4, p_last=1.5)
    with pytest.raises(TypeError, match="scale must be a bool"):
        StochasticDepth(0.5, scale=1)
    with pytest.raises(TypeError, match="branch must be a callable"):
        StochasticDepth(0.5)(torch.zeros(1), 3)
