"""Trilinear score: a naive loop over W0[q; k; q∘k], its dot-kind features, the swapped view, kernels, errors."""

from __future__ import annotations

import pytest
import torch

from qkv.functional.attention import attend
from qkv.functional.scores import structure
from qkv.layers.trilinear import Trilinear, trilinear


def naive(q, k, w, b=None):
    out = torch.zeros(*q.shape[:-2], q.shape[-2], k.shape[-2], dtype=q.dtype)
    for idx in torch.cartesian_prod(*[torch.arange(s) for s in q.shape[:-2]]).reshape(-1, q.dim() - 2):
        for i in range(q.shape[-2]):
            for j in range(k.shape[-2]):
                qi, kj = q[(*idx, i)], k[(*idx, j)]
                out[(*idx, i, j)] = w @ torch.cat((qi, kj, qi * kj)) + (0 if b is None else b)
    return out


def test_matches_the_naive_loop_and_the_dot_features():
    torch.manual_seed(0)
    score = Trilinear(4, bias=True).double()
    with torch.no_grad():
        score.bias.fill_(0.3)
    q, k = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 5, 4, dtype=torch.float64)
    want = naive(q, k, score.weight, score.bias)
    torch.testing.assert_close(score(q, k), want)
    qf, kf, c = score.dot_features(q, k)
    torch.testing.assert_close(c * qf @ kf.transpose(-1, -2), want)
    assert structure(score) == "dot" and qf.shape[-1] == 6


def test_swapped_is_the_transpose_and_shares_parameters():
    torch.manual_seed(1)
    score = Trilinear(3).double()
    q, k = torch.randn(4, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    sw = score.swapped()
    assert sw.weight is score.weight
    torch.testing.assert_close(sw(k, q), score(q, k).T)
    qf, kf, c = sw.dot_features(k, q)
    torch.testing.assert_close(c * qf @ kf.T, score(q, k).T)
    torch.testing.assert_close(sw.swapped()(q, k), score(q, k))


@pytest.mark.parametrize("backend", ["sdpa", "tiled"])
def test_fast_kernels_take_it_and_agree_with_naive(backend):
    torch.manual_seed(2)
    score = Trilinear(8)
    q, k, v = torch.randn(2, 5, 8), torch.randn(2, 7, 8), torch.randn(2, 7, 3)
    mask = torch.rand(2, 5, 7) > 0.3
    ref = attend(q, k, v, score=score, mask=mask, backend="naive").output
    torch.testing.assert_close(attend(q, k, v, score=score, mask=mask, backend=backend).output, ref,
                               atol=1e-5, rtol=1e-5)


def test_float64_gradcheck():
    torch.manual_seed(3)
    q = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: trilinear(a, b, weight=c), (q, k, w))


def test_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"weight must have shape \(3 D,\) = \(12,\).*got weight \(9,\)"):
        trilinear(torch.randn(2, 4), torch.randn(3, 4), weight=torch.randn(9))
    with pytest.raises(ValueError, match="same width"):
        Trilinear(4)(torch.randn(2, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="dim must be a positive int"):
        Trilinear(0)
