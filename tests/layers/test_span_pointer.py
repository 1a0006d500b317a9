"""Span pointer: p1/p2 against their equations; the exact band argmax against a brute-force loop; errors."""

from __future__ import annotations

import pytest
import torch

from qkv.layers.span_pointer import SpanPointer, best_span, span_nll


def brute_force(p1, p2, max_len):
    out = []
    for b in range(p1.shape[0]):
        best, arg = -1.0, (0, 0)
        n = p1.shape[1]
        for s in range(n):
            for e in range(s, n):
                if max_len is not None and e - s >= max_len:
                    continue
                v = float(p1[b, s] * p2[b, e])
                if v > best:
                    best, arg = v, (s, e)
        out.append((*arg, best))
    return out


@pytest.mark.parametrize("max_len", [None, 1, 3, 50])
def test_best_span_equals_the_brute_force_loop(max_len):
    g = torch.Generator().manual_seed(0)
    p1 = torch.softmax(torch.randn(16, 9, generator=g, dtype=torch.float64) * 3, -1)
    p2 = torch.softmax(torch.randn(16, 9, generator=g, dtype=torch.float64) * 3, -1)
    s, e, p = best_span(p1, p2, max_len=max_len)
    for b, (bs, be, bp) in enumerate(brute_force(p1, p2, max_len)):
        assert (int(s[b]), int(e[b])) == (bs, be)
        assert float(p[b]) == pytest.approx(bp)
    assert bool((e >= s).all())


def test_best_span_is_not_the_separate_argmaxes():
    p1 = torch.tensor([[0.1, 0.0, 0.0, 0.9]])
    p2 = torch.tensor([[0.6, 0.0, 0.0, 0.4]])  # separate argmaxes give start 3 > end 0
    s, e, p = best_span(p1, p2)
    assert (int(s), int(e)) == (3, 3) and float(p) == pytest.approx(0.36)


def test_pointer_matches_its_equations_and_masks_padding():
    torch.manual_seed(0)
    ptr = SpanPointer(3).double()
    m0, m1, m2 = (torch.randn(2, 5, 3, dtype=torch.float64) for _ in range(3))
    keep = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    out = ptr(m0, m1, m2, keep=keep)
    for b in range(2):
        n = int(keep[b].sum())
        z1 = torch.stack([ptr.w1.weight[0] @ torch.cat((m0[b, i], m1[b, i])) + ptr.w1.bias[0] for i in range(n)])
        z2 = torch.stack([ptr.w2.weight[0] @ torch.cat((m0[b, i], m2[b, i])) + ptr.w2.bias[0] for i in range(n)])
        torch.testing.assert_close(out.start[b, :n].exp(), torch.softmax(z1, 0))
        torch.testing.assert_close(out.end[b, :n].exp(), torch.softmax(z2, 0))
        assert bool(torch.isinf(out.start[b, n:]).all())
    loss = span_nll(out, torch.tensor([1, 2]), torch.tensor([3, 2]))
    want = -(out.start[0, 1] + out.end[0, 3] + out.start[1, 2] + out.end[1, 2]) / 2
    torch.testing.assert_close(loss, want)
    m0.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ptr(x, m1, m2, keep=keep).start[:, :3], (m0,))


def test_errors_name_arguments_and_shapes():
    with pytest.raises(ValueError, match=r"p_start and p_end must both be \(B, n\), got \(2, 3\) and \(2, 4\)"):
        best_span(torch.rand(2, 3), torch.rand(2, 4))
    with pytest.raises(ValueError, match="max_len must be a positive int, got 0"):
        best_span(torch.rand(2, 3), torch.rand(2, 3), max_len=0)
    with pytest.raises(ValueError, match=r"share the shape \(B, n, dim=3\)"):
        SpanPointer(3)(torch.randn(1, 2, 3), torch.randn(1, 2, 3), torch.randn(1, 3, 3))
