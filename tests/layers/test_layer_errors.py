"""Bad arguments to the layers give errors that name the argument (issue 8, defect 11, and review)."""

from __future__ import annotations

import pytest
import torch

import qkv


def test_defaulted_key_and_value_are_width_checked_and_named():
    x = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match=r"key \(defaulted to query\).*6"):
        qkv.MultiHeadAttention(8, 2, key_dim=6)(x)
    with pytest.raises(ValueError, match=r"value \(defaulted to key\).*4"):
        qkv.MultiHeadAttention(8, 2, key_dim=6, value_dim=4)(x, torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match=r"key \(defaulted to query\)"):
        qkv.Attention(8, key_dim=6, score="additive")(x)


def test_steps_are_validated():
    layer = qkv.LocalAttention(8, mode="local-m", window=1)
    q, k = torch.randn(2, 1, 8), torch.randn(2, 5, 8)
    for bad in (torch.tensor([[1, 2, 3]]), torch.tensor([0.5]), "a"):
        with pytest.raises(ValueError, match="steps"):
            layer(q, k, steps=bad)
    assert layer(q, k, steps=torch.tensor([3])).output.shape == (2, 1, 8)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: qkv.Attention(8, score="dot", hidden_dim=-3), "hidden_dim"),
        (lambda: qkv.LocalAttention(8, window=0), "window"),
        (lambda: qkv.MultiHeadAttention(8, 3), "num_heads"),
        (lambda: qkv.MultiHeadAttention(8, 2, num_kv_heads=3), "num_kv_heads"),
        (lambda: qkv.MultiHeadAttention(8, 2, proj_bias="yes"), "proj_bias"),
        (lambda: qkv.positional.relative(2, max_distance=-1), "max_distance"),
    ],
)
def test_constructor_errors_name_the_argument(make, name):
    with pytest.raises((ValueError, TypeError), match=name):
        make()


def test_key_dim_is_keyword_only_everywhere():
    for cls in (qkv.Attention, qkv.LocalAttention):
        with pytest.raises(TypeError):
            cls(8, 6)
