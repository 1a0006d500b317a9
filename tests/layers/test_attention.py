"""qkv.Attention (single-head key-value attention) against a naive loop."""

from __future__ import annotations

import math

import pytest
import torch

import qkv


def loop_attention(score, q, k, v, allowed):
    """o_i = sum_j softmax_j(score(k_j, q_i)) v_j over allowed j, one (i, j) at a time."""
    B, L, _ = q.shape
    S = k.shape[1]
    out = torch.zeros(B, L, v.shape[-1], dtype=q.dtype)
    w = torch.zeros(B, L, S, dtype=q.dtype)
    for b in range(B):
        for i in range(L):
            s = [score(q[b, i], k[b, j]) for j in range(S) if allowed[b, i, j]]
            if not s:
                continue
            z = torch.stack(s)
            p = torch.exp(z - z.max())
            p = p / p.sum()
            js = [j for j in range(S) if allowed[b, i, j]]
            for pj, j in zip(p, js, strict=True):
                w[b, i, j] = pj
                out[b, i] += pj * v[b, j]
    return out, w


@pytest.mark.parametrize("name", ["additive", "concat", "general", "dot", "scaled_dot", "cosine"])
def test_attention_matches_loop(name: str) -> None:
    dq = 6
    dk = 6 if name in ("dot", "scaled_dot", "cosine") else 4
    layer = qkv.Attention(dq, key_dim=dk, score=name).double()
    q, k, v = torch.randn(2, 3, dq).double(), torch.randn(2, 5, dk).double(), torch.randn(2, 5, 3).double()
    allowed = torch.ones(2, 3, 5, dtype=torch.bool)
    allowed[1, :, 3:] = False
    allowed[0, 2] = False  # a fully masked row

    if name in ("additive", "concat"):
        sc = layer.score

        def score(qi, kj):
            return sc.v @ torch.tanh(sc.w_k @ kj + sc.w_q @ qi)
    elif name == "general":

        def score(qi, kj):
            return kj @ layer.score.weight @ qi
    elif name == "dot":

        def score(qi, kj):
            return kj @ qi
    elif name == "scaled_dot":

        def score(qi, kj):
            return kj @ qi / math.sqrt(dq)
    else:

        def score(qi, kj):
            return kj @ qi / (kj.norm() * qi.norm())

    out = layer(q, k, v, mask=allowed.unsqueeze(1), return_weights=True)  # (B, 1, L, S): one head
    exp_out, exp_w = loop_attention(score, q, k, v, allowed)
    assert out.weights.shape == (2, 1, 3, 5)
    torch.testing.assert_close(out.output, exp_out.detach())
    torch.testing.assert_close(out.weights, exp_w.detach().unsqueeze(1))


def test_one_step_query_and_key_mask() -> None:
    layer = qkv.Attention(4, score="bilinear")
    q, k = torch.randn(3, 1, 4), torch.randn(3, 6, 4)  # one decoder step: (B, 1, D)
    key_mask = torch.arange(6)[None] < torch.tensor([6, 2, 4])[:, None]  # (B, S), True = a real key
    step = layer(q, k, mask=qkv.masks.key_padding(key_mask), return_weights=True)
    assert step.output.shape == (3, 1, 4) and step.weights.shape == (3, 1, 1, 6)
    full = layer(torch.cat([q, torch.randn(3, 2, 4)], dim=1), k, mask=qkv.masks.key_padding(key_mask),
                 return_weights=True)  # the step is row 0 of a longer query
    torch.testing.assert_close(step.output, full.output[:, :1])
    lazy = layer(q, k, mask=qkv.masks.padding(torch.tensor([6, 2, 4])), return_weights=True)
    torch.testing.assert_close(lazy.weights, step.weights)
    assert (step.weights[1, ..., 2:] == 0).all()


def test_gradcheck_additive_layer() -> None:
    layer = qkv.Attention(3, key_dim=2, score="additive", hidden_dim=4).double()
    q = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, k: layer(q, k).output, (q, k))


def test_errors() -> None:
    layer = qkv.Attention(4, key_dim=5, score="additive")
    with pytest.raises(ValueError, match=r"key must have last dim 5, got shape \(2, 3, 4\)"):
        layer(torch.randn(2, 1, 4), torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"query must have 3 dims, got shape \(4,\)"):
        layer(torch.randn(4), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"query must have 3 dims, got shape \(2, 4\)"):  # no (B, D) form
        layer(torch.randn(2, 4), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"mask .*\(4,\) does not broadcast to the scores' shape \(2, 1, 1, 3\)"):
        layer(torch.randn(2, 1, 4), torch.randn(2, 3, 5), mask=torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="dropout"):
        qkv.Attention(4, dropout=1.5)
    with pytest.raises(ValueError, match="score 'dot' needs queries and keys of the same width"):
        qkv.Attention(4, key_dim=5, score="dot")(torch.randn(2, 1, 4), torch.randn(2, 3, 5))
    # issue 8 (11): constructor arguments are checked and named
    with pytest.raises(ValueError, match="query_dim"):
        qkv.Attention(0)
    with pytest.raises(ValueError, match="key_dim"):
        qkv.Attention(4, key_dim=0)
    with pytest.raises(TypeError, match="dropout"):
        qkv.Attention(4, dropout="0.1")


def test_a_2d_mask_is_read_as_queries_by_keys_even_when_batch_equals_length():
    # issue 8, defect 12: with B = L, a (L, S) causal mask must not be read as a (B, S) key mask
    B = L = S = 4
    layer = qkv.Attention(6, score="dot")
    x = torch.randn(B, L, 6)
    causal = torch.ones(L, S, dtype=torch.bool).tril()  # (L, S): query i sees keys j <= i
    w = layer(x, mask=causal, return_weights=True).weights  # (B, 1, L, S)
    assert w.shape == (B, 1, L, S)
    assert torch.all(w.masked_select(~causal.expand_as(w)) == 0)
    torch.testing.assert_close(w, layer(x, mask=qkv.masks.causal(), return_weights=True).weights)
