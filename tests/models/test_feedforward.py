"""The position-wise feed-forward network against its equations (Vaswani et al. 2017 eq. 2; Shazeer 2020 eq. 6)."""

from __future__ import annotations

import math

import pytest
import torch

from qkv.models.feedforward import FeedForward


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "swiglu"])
def test_equals_the_equation(activation):
    torch.manual_seed(0)
    ff = FeedForward(6, 10, activation=activation).double()
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    h = x @ ff.linear1.weight.T + ff.linear1.bias
    if activation == "relu":
        h = h.clamp(min=0)
    elif activation == "gelu":  # x Φ(x)
        h = h * 0.5 * (1 + torch.erf(h / math.sqrt(2)))
    elif activation == "gelu_tanh":
        h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    else:  # Swish(x W) ⊙ (x V)
        g = x @ ff.gate.weight.T + ff.gate.bias
        h = g * torch.sigmoid(g) * h
    torch.testing.assert_close(ff(x), h @ ff.linear2.weight.T + ff.linear2.bias)
    assert (ff.gate is not None) == (activation == "swiglu")


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="activation"):
        FeedForward(4, 8, activation="tanh")
    with pytest.raises(ValueError, match="hidden_dim"):
        FeedForward(4, 0)
    with pytest.raises(ValueError, match="dropout"):
        FeedForward(4, 8, dropout=1.5)
