"""DepthwiseSeparableConv1d against a naive loop over positions, channels and taps; masking; gradcheck; errors."""

from __future__ import annotations

import pytest
import torch

from qkv.layers.depthwise_conv import DepthwiseSeparableConv1d


def naive(conv: DepthwiseSeparableConv1d, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    B, L, C = x.shape
    K = conv.kernel_size
    wd, bd = conv.depthwise.weight[:, 0, :], conv.depthwise.bias  # (C, K), (C,)
    wp, bp = conv.pointwise.weight[:, :, 0], conv.pointwise.bias  # (Co, C), (Co,)
    left = (K - 1) // 2
    out = torch.zeros(B, L, wp.shape[0], dtype=x.dtype)
    for b in range(B):
        for t in range(L):
            h = [bd[c].clone() for c in range(C)]
            for c in range(C):
                for j in range(K):
                    src = t + j - left
                    if 0 <= src < L and (keep is None or keep[b, src]):
                        h[c] = h[c] + wd[c, j] * x[b, src, c]
            for o in range(wp.shape[0]):
                val = bp[o] + sum(wp[o, c] * h[c] for c in range(C))
                out[b, t, o] = val if keep is None or keep[b, t] else 0.0
    return out


@pytest.mark.parametrize("K", [1, 3, 4, 7])
def test_matches_the_naive_loop_with_same_padding_and_masking(K):
    torch.manual_seed(K)
    conv = DepthwiseSeparableConv1d(3, 5, kernel_size=K).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    keep = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    torch.testing.assert_close(conv(x, keep=keep), naive(conv, x, keep))
    torch.testing.assert_close(conv(x), naive(conv, x, None))


def test_padding_never_leaks_into_real_positions():
    torch.manual_seed(0)
    conv = DepthwiseSeparableConv1d(4, kernel_size=5)
    x = torch.randn(1, 7, 4)
    keep = torch.tensor([[True] * 5 + [False] * 2])
    y = x.clone()
    y[0, 5:] = 1e3  # garbage in the padding
    torch.testing.assert_close(conv(x, keep=keep), conv(y, keep=keep))
    assert conv(y, keep=keep)[0, 5:].abs().max() == 0


def test_float64_gradcheck():
    torch.manual_seed(1)
    conv = DepthwiseSeparableConv1d(2, 3, kernel_size=3).double()
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([[True] * 4, [True, True, True, False]])
    assert torch.autograd.gradcheck(lambda t: conv(t, keep=keep), (x,))


def test_parameter_count_is_separable():
    conv = DepthwiseSeparableConv1d(8, 16, kernel_size=7, bias=False)
    assert sum(p.numel() for p in conv.parameters()) == 7 * 8 + 8 * 16


def test_errors_name_the_argument_and_shape():
    conv = DepthwiseSeparableConv1d(4)
    with pytest.raises(ValueError, match=r"x must have shape \(B, L, channels=4\), got \(2, 3, 5\)"):
        conv(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"keep must have shape \(B, L\) = \(2, 3\).*got \(2, 4\)"):
        conv(torch.randn(2, 3, 4), keep=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="keep must be a bool tensor"):
        conv(torch.randn(2, 3, 4), keep=torch.ones(2, 3))
    with pytest.raises(ValueError, match="kernel_size must be a positive int, got 0"):
        DepthwiseSeparableConv1d(4, kernel_size=0)
