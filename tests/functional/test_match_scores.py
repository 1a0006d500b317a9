"""ABCNN's match score and the sentence-pair attention matrix: naive loops, the attend identity, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from qkv.functional.attention import attend
from qkv.functional.match_scores import EuclideanMatch, euclidean_match
from qkv.functional.pair_attention import pair_attention_matrix


def _naive(x0, x1, score):
    B, L, S = x0.shape[0], x0.shape[1], x1.shape[1]
    out = torch.zeros(B, L, S, dtype=x0.dtype)
    for b in range(B):
        for i in range(L):
            for j in range(S):
                x, y = x0[b, i].tolist(), x1[b, j].tolist()
                if score == "euclid":
                    out[b, i, j] = 1.0 / (1.0 + math.sqrt(sum((p - q) ** 2 for p, q in zip(x, y, strict=True))))
                else:
                    dot = sum(p * q for p, q in zip(x, y, strict=True))
                    out[b, i, j] = dot / (math.sqrt(sum(p * p for p in x)) * math.sqrt(sum(q * q for q in y)))
    return out


def test_euclidean_match_is_the_papers_formula():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    k = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(euclidean_match(q, k), _naive(q, k, "euclid"))
    assert torch.equal(euclidean_match(q, q).diagonal(dim1=-2, dim2=-1), torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"same width.*\(2, 3, 4\).*\(2, 5, 3\)"):
        euclidean_match(q, k[..., :3])


def test_euclidean_match_gradcheck_including_identical_vectors():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(euclidean_match, (q, k))
    same = euclidean_match(q, q)  # zero distances on the diagonal: finite gradients, no NaN
    same.sum().backward()
    assert torch.isfinite(q.grad).all()


@pytest.mark.parametrize("score", ["euclid", "cosine"])
def test_pair_attention_matrix_against_naive_loop_and_attend(score):
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    x1 = torch.randn(2, 6, 3, generator=g, dtype=torch.float64)
    keep0 = torch.tensor([[True] * 4, [True, True, False, False]])
    keep1 = torch.tensor([[True] * 5 + [False], [True] * 6])
    fn = EuclideanMatch() if score == "euclid" else "cosine"
    a = pair_attention_matrix(x0, x1, score=fn, keep0=keep0, keep1=keep1)
    expected = _naive(x0, x1, score) * keep0[:, :, None] * keep1[:, None, :]
    torch.testing.assert_close(a, expected)
    # the identity the docstring states: the scores of one attend call, padding zeroed
    scores = attend(x0, x1, x1, score=fn, return_scores=True, backend="naive").scores
    torch.testing.assert_close(a, scores * keep0[:, :, None] * keep1[:, None, :])


def test_pair_attention_matrix_gradcheck_and_errors():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(1, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    x1 = torch.randn(1, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: pair_attention_matrix(a, b, score=EuclideanMatch()), (x0, x1))
    with pytest.raises(ValueError, match=r"keep0.*\(1, 3\).*got shape \(1, 4\)"):
        pair_attention_matrix(x0, x1, score="cosine", keep0=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"x0 and x1.*\(3, 2\)"):
        pair_attention_matrix(x0[0], x1, score="cosine")
