"""Segmentation attention (Kim et al. 2017 §3.2): marginals by enumeration, the attend identity, gradcheck."""

from __future__ import annotations

import itertools

import pytest
import torch

import qkv
from qkv.functional.attention import attend
from qkv.layers import StructuredAttention


def _enumerate(unary: list[float], table: torch.Tensor) -> list[float]:
    """p(z_i = 1) over all 2^n assignments of one chain."""
    n, total, marg = len(unary), 0.0, [0.0] * len(unary)
    for z in itertools.product((0, 1), repeat=n):
        e = sum(u * zi for u, zi in zip(unary, z, strict=True)) + sum(float(table[z[t - 1], z[t]]) for t in range(1, n))
        w = torch.tensor(e, dtype=torch.float64).exp().item()
        total += w
        marg = [m + w * zi for m, zi in zip(marg, z, strict=True)]
    return [m / total for m in marg]


@torch.no_grad()
def test_weights_are_marginals_by_enumeration_with_padding():
    torch.manual_seed(0)
    layer = StructuredAttention(4).double()
    layer.crf.transition.copy_(torch.tensor([[0.3, -0.7], [-0.2, 1.5]]))
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(2, 3, 4, generator=g, dtype=torch.float64), torch.randn(
        2, 7, 4, generator=g, dtype=torch.float64), torch.randn(2, 7, 5, generator=g, dtype=torch.float64)
    lengths = [7, 5]
    out = layer(q, k, v, mask=qkv.masks.padding(torch.tensor(lengths)), return_weights=True)
    for b in range(2):
        n = lengths[b]
        for i in range(3):
            unary = [float(layer.score(q[b, i][None], k[b, j][None])) for j in range(n)]  # the bilinear unary
            ref = _enumerate(unary, layer.crf.transition)
            torch.testing.assert_close(out.weights[b, 0, i, :n], torch.tensor(ref, dtype=torch.float64))
            torch.testing.assert_close(out.output[b, i], sum(ref[j] * v[b, j] for j in range(n)))
        assert torch.all(out.weights[b, :, :, n:] == 0)


def test_the_read_is_the_attend_call_in_the_docstring():
    torch.manual_seed(0)
    layer = StructuredAttention(4, score="additive", renormalize=True)
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(2, 3, 4, generator=g), torch.randn(2, 6, 4, generator=g)
    mask = qkv.masks.padding(torch.tensor([6, 2]))
    ref = attend(q[:, None], k[:, None], k[:, None], score=layer.score, mask=mask, normalize=layer.crf.normalizer(),
                 return_weights=True)
    out = layer(q, k, mask=mask, return_weights=True)
    torch.testing.assert_close(out.weights, ref.weights)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(2, 1, 3))


def test_gradcheck_float64_reaches_the_transition():
    torch.manual_seed(0)
    layer = StructuredAttention(3).double()
    g = torch.Generator().manual_seed(3)
    q, k = (torch.randn(1, 2, 3, generator=g, dtype=torch.float64).requires_grad_(),
            torch.randn(1, 5, 3, generator=g, dtype=torch.float64).requires_grad_())
    assert torch.autograd.gradcheck(lambda q, k: layer(q, k).output, (q, k))
    layer(q, k).output.sum().backward()
    assert layer.crf.transition.grad.abs().sum() > 0


def test_constructor_errors_name_the_option():
    with pytest.raises(TypeError, match="renormalize"):
        StructuredAttention(4, renormalize="yes")
    with pytest.raises(ValueError, match="query_dim"):
        StructuredAttention(0)
