"""MultiHeadAttention(window=w): truncated self-attention equals the layer with an explicit window mask."""

from __future__ import annotations

import pytest
import torch

import qkv
from qkv import masks as M


def _pair(window):
    torch.manual_seed(0)
    windowed = qkv.MultiHeadAttention(16, 2, window=window)
    plain = qkv.MultiHeadAttention(16, 2)
    plain.load_state_dict(windowed.state_dict())
    return windowed, plain


def test_window_option_equals_an_explicit_band_mask():
    windowed, plain = _pair(2)
    x = torch.randn(2, 9, 16)
    got = windowed(x, return_weights=True)
    i = torch.arange(9)
    band = (i[:, None] - i[None, :]).abs() <= 2  # the reference: |i - j| <= w, built by hand
    want = plain(x, mask=band, return_weights=True)
    torch.testing.assert_close(got.output, want.output)
    torch.testing.assert_close(got.weights, want.weights)
    assert (got.weights[..., ~band] == 0).all()


def test_window_intersects_the_callers_mask():
    windowed, plain = _pair(1)
    x = torch.randn(2, 7, 16)
    keep = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    user = M.key_padding(keep) & M.causal()
    got = windowed(x, mask=user, return_weights=True).weights
    want = plain(x, mask=user & M.window(1), return_weights=True).weights
    torch.testing.assert_close(got, want)


def test_window_zero_attends_only_to_itself_and_errors():
    windowed, _ = _pair(0)
    w = windowed(torch.randn(1, 5, 16), return_weights=True).weights
    torch.testing.assert_close(w, torch.eye(5).expand(1, 2, 5, 5))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="window"):
            qkv.MultiHeadAttention(16, 2, window=bad)
