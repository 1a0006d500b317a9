"""``clip_state_grad``: the identity forward; backward, each batch element's gradient scaled to norm <= max_norm —
checked against the rule written out with a loop over the batch."""

from __future__ import annotations

import pytest
import torch

from qkv.memory.ntm.gradclip import clip_state_grad


def test_forward_is_the_identity_and_backward_clips_each_sequence_to_the_bound():
    x = torch.randn(3, 4, 5, requires_grad=True)
    y = clip_state_grad(x, 2.0)
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    g = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    g[1] *= 1e-3  # below the bound: unchanged
    g[2] *= 1e30  # far above: scaled to norm 2 (no overflow)
    y.backward(g)
    for b in range(3):  # the rule, one sequence at a time
        n = float(g[b].double().norm())
        expected = g[b] if n <= 2.0 else g[b] * (2.0 / n)
        torch.testing.assert_close(x.grad[b], expected.float(), rtol=1e-5, atol=0)
    assert float(x.grad[2].norm()) == pytest.approx(2.0, rel=1e-5)
    assert torch.equal(x.grad[1], g[1])


def test_no_graph_no_op_and_bad_bound_is_named():
    x = torch.randn(2, 3)
    assert clip_state_grad(x, 1.0) is x
    for bad in (0.0, -1.0, True, "1"):
        with pytest.raises(ValueError, match="max_norm"):
            clip_state_grad(x, bad)


@pytest.mark.parametrize("shape", [(4,), (2, 3, 2)])
def test_half_precision_and_any_rank_are_scaled_not_zeroed(shape):
    x = torch.zeros(shape, dtype=torch.float16, requires_grad=True)
    g = torch.full(shape, 6e4, dtype=torch.float16)  # near float16's limit: the norm itself overflows float16
    clip_state_grad(x, 1.0).backward(g)
    per_sequence = x.grad.double().reshape(shape[0], -1).norm(dim=1)  # (B,)
    torch.testing.assert_close(per_sequence, torch.ones(shape[0], dtype=torch.float64), rtol=2e-3, atol=0)
