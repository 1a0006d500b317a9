"""Context-query attention against a transcription of QANet §2.2; the attend identities; masking; gradcheck."""

from __future__ import annotations

import pytest
import torch

from qkv.functional.attention import attend
from qkv.layers.context_query import ContextQueryAttention


def transcription(layer, C, Q, ck, qk):
    """The paper's equations, one batch row at a time, with explicit loops for S and masked softmaxes."""
    w = layer.score.weight
    outs, s_bars, s_dbars = [], [], []
    for b in range(C.shape[0]):
        c, q = C[b][ck[b]], Q[b][qk[b]]  # real words only
        n, m = len(c), len(q)
        S = torch.zeros(n, m, dtype=C.dtype)
        for i in range(n):
            for j in range(m):
                # f(q, c) = W0[q, c, q ⊙ c], with the context word first in this library's (query, key) order
                S[i, j] = w @ torch.cat((c[i], q[j], c[i] * q[j]))
        s_bar = torch.softmax(S, dim=1)
        s_dbar = torch.softmax(S, dim=0)
        A = s_bar @ q
        Bm = s_bar @ s_dbar.T @ c
        out = torch.zeros(C.shape[1], 4 * C.shape[2], dtype=C.dtype)
        out[:n] = torch.cat((c, A, c * A, c * Bm), dim=-1)
        full_bar = torch.zeros(C.shape[1], Q.shape[1], dtype=C.dtype)
        full_dbar = torch.zeros_like(full_bar)
        idx = torch.nonzero(ck[b]).squeeze(1)[:, None], torch.nonzero(qk[b]).squeeze(1)[None, :]
        full_bar[idx], full_dbar[idx] = s_bar, s_dbar
        outs.append(out)
        s_bars.append(full_bar)
        s_dbars.append(full_dbar)
    return torch.stack(outs), torch.stack(s_bars), torch.stack(s_dbars)


def _inputs(seed=0):
    torch.manual_seed(seed)
    layer = ContextQueryAttention(4).double()
    C, Q = torch.randn(3, 6, 4, dtype=torch.float64), torch.randn(3, 4, 4, dtype=torch.float64)
    ck = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] * 5 + [False]])
    qk = torch.tensor([[True] * 4, [True, True, True, False], [True, True, False, False]])
    return layer, C, Q, ck, qk


def test_matches_the_papers_equations_with_padding():
    layer, C, Q, ck, qk = _inputs()
    out = layer(C, Q, context_keep=ck, question_keep=qk, return_weights=True)
    want, s_bar, s_dbar = transcription(layer, C, Q, ck, qk)
    torch.testing.assert_close(out.output, want)
    torch.testing.assert_close(out.row_weights, s_bar)
    torch.testing.assert_close(out.column_weights, s_dbar)
    fast = layer(C, Q, context_keep=ck, question_keep=qk)  # auto backend, no weights
    torch.testing.assert_close(fast.output, want)


def test_c2q_is_one_attend_call_with_the_trilinear_score():
    layer, C, Q, ck, qk = _inputs(1)
    out = layer(C, Q, context_keep=ck, question_keep=qk, return_weights=True)
    ref = attend(C, Q, Q, score=layer.score, mask=ck[:, :, None] & qk[:, None, :], return_weights=True,
                 backend="naive")
    torch.testing.assert_close(out.c2q, ref.output)
    torch.testing.assert_close(out.row_weights, ref.weights)
    x = attend(Q, C, C, score=layer.score.swapped(), mask=qk[:, :, None] & ck[:, None, :]).output
    torch.testing.assert_close(out.q2c, torch.einsum("bnm,bmd->bnd", ref.weights, x))


def test_float64_gradcheck():
    torch.manual_seed(2)
    layer = ContextQueryAttention(2).double()
    C = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    Q = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    ck = torch.tensor([[True] * 4, [True, True, True, False]])
    qk = torch.tensor([[True] * 3, [True, True, False]])
    assert torch.autograd.gradcheck(lambda c, q: layer(c, q, context_keep=ck, question_keep=qk).output, (C, Q))


def test_no_masks_means_every_word_is_real():
    layer, C, Q, _, _ = _inputs(3)
    ones_c, ones_q = torch.ones(3, 6, dtype=torch.bool), torch.ones(3, 4, dtype=torch.bool)
    torch.testing.assert_close(layer(C, Q).output, transcription(layer, C, Q, ones_c, ones_q)[0])


def test_errors_name_arguments_and_shapes():
    layer = ContextQueryAttention(4)
    with pytest.raises(ValueError, match=r"D = dim = 4, got context \(2, 3, 5\) and question \(2, 2, 4\)"):
        layer(torch.randn(2, 3, 5), torch.randn(2, 2, 4))
    with pytest.raises(ValueError, match=r"question_keep must have shape \(B, L\) = \(2, 2\)"):
        layer(torch.randn(2, 3, 4), torch.randn(2, 2, 4), question_keep=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="context must be a floating-point tensor"):
        layer(torch.ones(2, 3, 4, dtype=torch.long), torch.randn(2, 2, 4))
    with pytest.raises(ValueError, match=r"backend must be one of .*, got 'fast'"):
        ContextQueryAttention(4, backend="fast")
