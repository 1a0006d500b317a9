"""Luong local attention (local-m, local-p) against a loop over Luong et al. 2015 eqs. 9-10."""

from __future__ import annotations

import math

import pytest
import torch

import qkv
from qkv.functional.local import local_attention


def loop_local(q, k, v, position, D, mode, lengths):
    """a_t(s) = softmax over s in [p - D, p + D] of h_t . h_s, times exp(-(s - p)^2 / (2 (D/2)^2)) for local-p."""
    B, L, _ = q.shape
    out = torch.zeros(B, L, v.shape[-1], dtype=q.dtype)
    w = torch.zeros(B, L, k.shape[1], dtype=q.dtype)
    for b in range(B):
        for t in range(L):
            p = float(position[b, t])
            window = [s for s in range(int(lengths[b])) if abs(s - p) <= D]
            if not window:
                continue
            z = torch.stack([q[b, t] @ k[b, s] for s in window])
            a = torch.softmax(z, dim=0)
            for a_s, s in zip(a, window, strict=True):
                g = math.exp(-((s - p) ** 2) / (2 * (D / 2) ** 2)) if mode == "local-p" else 1.0
                w[b, t, s] = a_s * g
                out[b, t] += a_s * g * v[b, s]
    return out, w


@pytest.mark.parametrize("mode", ["local-m", "local-p"])
def test_functional_local_matches_loop(mode: str) -> None:
    q, k, v = torch.randn(2, 4, 3).double(), torch.randn(2, 9, 3).double(), torch.randn(2, 9, 2).double()
    position = torch.tensor([[0.0, 1.7, 4.2, 8.9], [2.5, 3.0, 6.1, 7.0]]).double()
    lengths = torch.tensor([9, 7])
    mask = (torch.arange(9)[None] < lengths[:, None])[:, None, :]  # (B, 1, S)
    out = local_attention(q, k, v, position=position, window=2, mode=mode, score="dot", mask=mask,
                          return_weights=True)
    exp_out, exp_w = loop_local(q, k, v, position, 2, mode, lengths)
    torch.testing.assert_close(out.weights, exp_w)
    torch.testing.assert_close(out.output, exp_out)
    if mode == "local-p":  # eq. 10 does not renormalise: rows sum to less than 1
        assert (out.weights.sum(-1) < 1).all()


def test_local_m_layer_aligns_step_t_with_position_t() -> None:
    layer = qkv.LocalAttention(4, mode="local-m", window=1, score="dot")
    out = layer(torch.randn(1, 5, 4), torch.randn(1, 8, 4), return_weights=True)
    assert out.weights.shape == (1, 1, 5, 8)
    nonzero = out.weights[0, 0] > 0
    for t in range(5):
        assert nonzero[t].nonzero().flatten().tolist() == [s for s in range(8) if abs(s - t) <= 1]


def test_local_p_layer_predicts_positions_within_length_and_is_differentiable() -> None:
    layer = qkv.LocalAttention(4, mode="local-p", window=2, score="general")
    q, k = torch.randn(3, 2, 4), torch.randn(3, 6, 4)
    lengths = torch.tensor([6, 3, 1])
    out = layer(q, k, mask=qkv.masks.padding(lengths), return_weights=True)
    beyond = torch.arange(6)[None, None, None] >= lengths[:, None, None, None]  # (B, 1, 1, S)
    assert (out.weights[beyond.expand_as(out.weights)] == 0).all()
    out.output.sum().backward()
    assert layer.predictor[0].weight.grad.abs().sum() > 0  # the position predictor learns


def test_local_errors() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        qkv.LocalAttention(4, mode="local-x")
    q, k = torch.randn(1, 2, 3), torch.randn(1, 5, 3)
    with pytest.raises(ValueError, match=r"position must have shape q.shape\[:-1\] = \(1, 2\), got \(2,\)"):
        local_attention(q, k, k, position=torch.zeros(2), window=2)
    with pytest.raises(ValueError, match="window must be an int >= 1, got 0"):
        local_attention(q, k, k, position=torch.zeros(1, 2), window=0)


def test_window_centres_stay_exact_in_bfloat16() -> None:
    """bf16 cannot hold 301: the window of step 301 must still be [300, 302], as in float32."""
    layer = qkv.LocalAttention(4, mode="local-m", window=1, score="dot")
    q, k = torch.randn(1, 400, 4), torch.randn(1, 400, 4)
    w32 = layer(q, k, return_weights=True).weights
    w16 = layer.bfloat16()(q.bfloat16(), k.bfloat16(), return_weights=True).weights
    assert (w32[0, 0, 301] > 0).nonzero().flatten().tolist() == [300, 301, 302]
    assert (w16[0, 0, 301] > 0).nonzero().flatten().tolist() == [300, 301, 302]


def test_local_m_one_step_needs_the_step_index() -> None:
    layer = qkv.LocalAttention(4, mode="local-m", window=1, score="dot")
    with pytest.raises(ValueError, match="steps="):
        layer(torch.randn(2, 1, 4), torch.randn(2, 6, 4))
    out = layer(torch.randn(2, 1, 4), torch.randn(2, 6, 4), steps=torch.tensor([3]), return_weights=True)
    assert (out.weights[0, 0, 0] > 0).nonzero().flatten().tolist() == [2, 3, 4]


@pytest.mark.parametrize("mode", ["local-m", "local-p"])
def test_local_layer_mask_of_the_wrong_batch_is_a_value_error(mode: str) -> None:
    """Issue 8 (11): a padding mask for another batch size is the caller's error (ValueError naming mask)."""
    layer = qkv.LocalAttention(4, mode=mode, window=1, score="dot")
    q, k = torch.randn(2, 3, 4), torch.randn(2, 6, 4)
    bad = (qkv.masks.padding(torch.tensor([6, 4, 2])), qkv.masks.key_padding(torch.ones(3, 6, dtype=torch.bool)))
    for mask in bad:
        with pytest.raises(ValueError, match="mask"):
            layer(q, k, mask=mask)
