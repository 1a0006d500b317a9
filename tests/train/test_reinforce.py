"""REINFORCE (surrogate loss) and the moving-average baseline against an exact gradient."""

from __future__ import annotations

import pytest
import torch

from qkv.functional.normalize import sample
from qkv.train.baseline import MovingAverageBaseline
from qkv.train.reinforce import reinforce_loss

K, N = 5, 20000


def _estimates(theta: torch.Tensor, rewards: torch.Tensor, baseline: float | None, seed: int) -> torch.Tensor:
    """``(N, K)``: one REINFORCE estimate of grad E[r] per sample (each row its own copy of the logits)."""
    logits = theta.expand(N, K).clone().requires_grad_(True)  # (N, K): sample n's gradient lands in row n
    _, log_prob = sample(logits[:, None], generator=torch.Generator().manual_seed(seed))  # (N, 1)
    one_hot, _ = sample(logits[:, None].detach(), generator=torch.Generator().manual_seed(seed))
    r = (one_hot[:, 0] * rewards).sum(-1)  # (N,) the reward of the sampled action
    loss = reinforce_loss(log_prob[:, 0], r, baseline=baseline, reduction="sum")
    (grad,) = torch.autograd.grad(loss, logits)
    return -grad  # the surrogate's gradient is minus the estimate


def test_reinforce_is_unbiased_and_the_baseline_cuts_its_variance():
    theta = torch.tensor([0.3, -1.0, 0.8, 0.0, -0.4], dtype=torch.float64)
    rewards = torch.tensor([10.0, 12.0, 9.0, 11.5, 10.5], dtype=torch.float64)
    p = torch.softmax(theta, 0)
    exact = p * (rewards - (p * rewards).sum())  # sum_a p_a (r_a - E r) d log p_a / d theta, for softmax logits
    traces = {}
    for name, b in (("none", None), ("baseline", float((p * rewards).sum()) - 0.3)):
        g = _estimates(theta, rewards, b, seed=1)
        mean, se = g.mean(0), g.std(0) / N**0.5
        assert torch.all((mean - exact).abs() <= 4 * se), (name, mean, exact, se)
        traces[name] = float(g.var(0).sum())
    assert traces["baseline"] < traces["none"] / 20  # rewards around 10: b ~ E r removes most of the variance


def test_reinforce_loss_sums_the_steps_of_a_sample_and_detaches_the_reward():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]], requires_grad=True)
    r = torch.tensor([3.0, 1.0], requires_grad=True)
    loss = reinforce_loss(logp, r, baseline=torch.tensor(1.0), reduction="none")
    torch.testing.assert_close(loss, torch.tensor([-(3 - 1) * -3.0, -(1 - 1) * -1.0]))
    loss.sum().backward()
    assert r.grad is None or torch.all(r.grad == 0)
    torch.testing.assert_close(logp.grad, torch.tensor([[-2.0, -2.0], [0.0, 0.0]]))
    with torch.no_grad():
        assert float(reinforce_loss(logp, r, reduction="sum")) == pytest.approx(float(reinforce_loss(logp, r)) * 2)


def test_reinforce_loss_errors_name_the_argument():
    with pytest.raises(ValueError, match="rewards"):
        reinforce_loss(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="reduction"):
        reinforce_loss(torch.zeros(3), torch.zeros(3), reduction="max")
    with pytest.raises(ValueError, match="sample_dims"):
        reinforce_loss(torch.zeros(3), torch.zeros(3), sample_dims=2)
    with pytest.raises(TypeError, match="log_probs"):
        reinforce_loss([0.0], torch.zeros(1))


def test_moving_average_baseline_follows_the_paper_and_checkpoints():
    base = MovingAverageBaseline(decay=0.9)
    rewards = [torch.tensor([-4.0, -6.0]), torch.tensor([-2.0]), torch.tensor([-1.0, -3.0])]
    used, b = [], None
    for r in rewards:  # b_k = 0.9 b_{k-1} + 0.1 mean(r_k); the first sets b to the first mean
        used.append(float(base.update(r)))
        b = float(r.mean()) if b is None else 0.9 * b + 0.1 * float(r.mean())
    assert used == pytest.approx([0.0, -5.0, 0.9 * -5.0 + 0.1 * -2.0])
    assert float(base.value) == pytest.approx(b)
    other = MovingAverageBaseline(decay=0.9)
    other.load_state_dict(base.state_dict())  # buffers: saved with a model's state_dict
    assert float(other.value) == pytest.approx(b) and int(other.count) == 3
    with pytest.raises(ValueError, match="decay"):
        MovingAverageBaseline(decay=1.0)
