"""ALiBi and the learned relative-position bias against naive loops and the papers' values."""

from __future__ import annotations

import pytest
import torch

import qkv
from qkv.positional import alibi, alibi_slopes, relative


def test_alibi_slopes_are_the_papers_geometric_sequence():
    # Press et al. 2022, §3: for 8 heads the slopes are 1/2, 1/4, ..., 1/256
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)]))
    with pytest.raises(ValueError, match="num_heads"):
        alibi_slopes(0)


@pytest.mark.parametrize("align", ["top_left", "bottom_right"])
def test_alibi_matches_a_naive_loop(align):
    H, L, S = 3, 4, 6
    bias = alibi(H, align=align).materialize(L, S)  # (H, L, S)
    m = alibi_slopes(H)
    off = 0 if align == "top_left" else S - L
    for h in range(H):
        for i in range(L):
            for j in range(S):
                assert bias[h, i, j] == pytest.approx(-m[h].item() * abs(j - (i + off)))


def test_alibi_with_causal_mask_is_the_papers_linear_penalty():
    # with a causal mask ALiBi adds m_h (j - i) for j <= i
    H, L = 2, 5
    b = alibi(H).materialize(L, L)
    i, j = torch.arange(L)[:, None], torch.arange(L)[None, :]
    lower = j <= i
    expected = alibi_slopes(H)[:, None, None] * (j - i)
    torch.testing.assert_close(b[:, lower], expected[:, lower])


@pytest.mark.parametrize("align", ["top_left", "bottom_right"])
def test_relative_matches_a_naive_loop(align):
    H, L, S, R = 2, 5, 7, 2
    table = torch.randn(H, 2 * R + 1)
    bias = relative(table, max_distance=R, align=align).materialize(L, S)
    off = 0 if align == "top_left" else S - L
    for h in range(H):
        for i in range(L):
            for j in range(S):
                assert bias[h, i, j] == table[h, max(-R, min(R, j - (i + off))) + R]


@pytest.mark.parametrize("backend", ["naive", "tiled"])
def test_relative_table_gets_the_same_gradient_on_every_kernel(backend):
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 9, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    table = torch.nn.Parameter(torch.randn(2, 7, dtype=torch.float64))
    out = qkv.attend(q, k, v, bias=relative(table, max_distance=3), backend=backend).output
    (grad,) = torch.autograd.grad(out.sum(), [table])
    table_ref = table.detach().clone().requires_grad_()
    ref = qkv.attend(q, k, v, bias=relative(table_ref, max_distance=3).materialize(9, 9), backend="naive").output
    (grad_ref,) = torch.autograd.grad(ref.sum(), [table_ref])
    torch.testing.assert_close(grad, grad_ref)


def test_flex_forms_equal_the_tiles_with_size_one_heads_broadcast():
    L, S, H = 3, 5, 4
    b, h = torch.arange(2)[:, None, None, None], torch.arange(H)[None, :, None, None]
    q, kv = torch.arange(L)[None, None, :, None], torch.arange(S)[None, None, None, :]
    for bias in (alibi(1), relative(torch.randn(1, 5), max_distance=2), alibi(H)):
        fn = bias.flex(B=2, H=H, L=L, S=S, device=torch.device("cpu"))
        torch.testing.assert_close(fn(b, h, q, kv).expand(2, H, L, S), bias.materialize(L, S).expand(2, H, L, S))
