"""Learned absolute positions: the table added at an offset, and a clear error past max_length."""

from __future__ import annotations

import pytest
import torch

from qkv.positional import LearnedPositions


def test_adds_the_table_rows_at_the_offset():
    torch.manual_seed(0)
    pos = LearnedPositions(10, 4)
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(pos(x), x + pos.weight[:3])
    torch.testing.assert_close(pos(x, offset=7), x + pos.weight[7:10])
    positions = torch.tensor([[0, 5, 9], [1, 1, 2]])
    torch.testing.assert_close(pos(x, positions=positions), x + pos.weight[positions])


def test_gradient_reaches_only_the_rows_used():
    pos = LearnedPositions(6, 3)
    pos(torch.zeros(1, 2, 3), offset=1).sum().backward()
    used = pos.weight.grad.abs().sum(-1) > 0
    assert used.tolist() == [False, True, True, False, False, False]


def test_past_max_length_is_a_clear_error():
    pos = LearnedPositions(8, 4)
    with pytest.raises(ValueError, match=r"positions 6\.\.8 go past max_length=8"):
        pos(torch.zeros(1, 3, 4), offset=6)
    with pytest.raises(ValueError, match="max_length=8"):
        pos(torch.zeros(1, 1, 4), positions=torch.tensor([[8]]))
    with pytest.raises(ValueError, match="max_length"):
        LearnedPositions(0, 4)
    with pytest.raises(TypeError, match="positions"):
        pos(torch.zeros(1, 1, 4), positions=torch.tensor([[0.0]]))
