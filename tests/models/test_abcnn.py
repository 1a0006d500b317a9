"""BCNN / ABCNN-1/2/3 against a loop transcription of Yin et al. 2016's equations; gradcheck; errors."""

from __future__ import annotations

import math

import pytest
import torch

from qkv.functional.attention import attend
from qkv.functional.match_scores import EuclideanMatch
from qkv.models.abcnn import ABCNN, ABCNNLayer, attention_features, attention_pool, conv_word_view, w_ap


def _match(x, y):
    return 1.0 / (1.0 + math.sqrt(sum((p - q) ** 2 for p, q in zip(x.tolist(), y.tolist(), strict=True))))


def _naive_layer(layer, f0, f1, n0, n1):
    """One pair, paper layout: f (d, s) feature maps with real lengths n0, n1 -> pooled, conv, attention."""
    s = f0.shape[1]
    w = layer.width
    out = {}
    if layer.attention_input:  # eq. 1-2
        a = torch.zeros(s, s, dtype=f0.dtype)
        for i in range(n0):
            for j in range(n1):
                a[i, j] = _match(f0[:, i], f1[:, j])
        out["input"] = a
        f0a, f1a = layer.w0 @ a.T, layer.w1 @ a
        f0a[:, n0:] = 0
        f1a[:, n1:] = 0
        f0, f1 = torch.cat([f0, f0a]), torch.cat([f1, f1a])
    weight, bias = layer.conv.weight, layer.conv.bias  # (E, channels, w), (E,)
    sc = s + w - 1

    def conv(f, n):
        zeros = torch.zeros(f.shape[0], w - 1, dtype=f.dtype)
        pad = torch.cat([zeros, f, zeros], 1)
        c = torch.zeros(weight.shape[0], sc, dtype=f.dtype)
        for i in range(n + w - 1):  # columns past the sentence's wide extent are zero
            c[:, i] = torch.tanh(sum(weight[:, :, k] @ pad[:, i + k] for k in range(w)) + bias)
        return c

    c0, c1 = conv(f0, n0), conv(f1, n1)
    if layer.attention_pooling:  # eq. 3-5
        ac = torch.zeros(sc, sc, dtype=f0.dtype)
        for i in range(n0 + w - 1):
            for j in range(n1 + w - 1):
                ac[i, j] = _match(c0[:, i], c1[:, j])
        out["conv"] = ac
        a0, a1 = ac.sum(1), ac.sum(0)
    else:
        a0 = a1 = torch.full((sc,), 1.0 / w, dtype=f0.dtype)  # w-ap: the plain average
    p0 = torch.zeros(c0.shape[0], s, dtype=f0.dtype)
    p1 = torch.zeros(c1.shape[0], s, dtype=f0.dtype)
    for j in range(n0):
        p0[:, j] = sum(a0[k] * c0[:, k] for k in range(j, j + w))
    for j in range(n1):
        p1[:, j] = sum(a1[k] * c1[:, k] for k in range(j, j + w))
    return p0, p1, c0, c1, out


@pytest.mark.parametrize("att_in,att_pool", [(False, False), (True, False), (False, True), (True, True)])
def test_layer_matches_the_papers_equations(att_in, att_pool):
    torch.manual_seed(0)
    s, d, e, w = 6, 3, 4, 3
    layer = ABCNNLayer(d, e, width=w, length=s, attention_input=att_in, attention_pooling=att_pool).double()
    lengths0, lengths1 = torch.tensor([6, 4]), torch.tensor([5, 6])
    keep0 = torch.arange(s) < lengths0[:, None]
    keep1 = torch.arange(s) < lengths1[:, None]
    x0 = torch.randn(2, s, d, dtype=torch.float64) * keep0[..., None]
    x1 = torch.randn(2, s, d, dtype=torch.float64) * keep1[..., None]
    p0, p1, c0, c1, attn = layer(x0, x1, keep0, keep1)
    with torch.no_grad():
        for b in range(2):
            n0, n1 = int(lengths0[b]), int(lengths1[b])
            q0, q1, r0, r1, ref = _naive_layer(layer, x0[b].T, x1[b].T, n0, n1)
            torch.testing.assert_close(p0[b].T, q0)
            torch.testing.assert_close(p1[b].T, q1)
            torch.testing.assert_close(c0[b].T, r0)
            torch.testing.assert_close(c1[b].T, r1)
            assert set(attn) == set(ref)
            for k in ref:
                torch.testing.assert_close(attn[k][b], ref[k])


def test_pieces_match_loops_and_errors():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 7, 3, generator=g, dtype=torch.float64)
    a = torch.rand(2, 7, generator=g, dtype=torch.float64)
    got = attention_pool(x, a, 3)
    for j in range(5):
        torch.testing.assert_close(got[:, j], sum(a[:, k, None] * x[:, k] for k in range(j, j + 3)))
        torch.testing.assert_close(w_ap(x, 3)[:, j], x[:, j: j + 3].mean(1))
    with pytest.raises(ValueError, match=r"weights must be \(B, Lc\) = \(2, 7\).*got \(2, 6\)"):
        attention_pool(x, a[:, :6], 3)
    att = torch.rand(2, 4, 5, generator=g, dtype=torch.float64)
    w0, w1 = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    f0a, f1a = attention_features(att, w0, w1)
    torch.testing.assert_close(f0a, (w0 @ att.transpose(1, 2)).transpose(1, 2))  # W0 Aᵀ, columns as rows
    torch.testing.assert_close(f1a, (w1 @ att).transpose(1, 2))  # W1 A
    with pytest.raises(ValueError, match=r"w0 must be \(D, L1\)"):
        attention_features(att, w1, w1)
    big = torch.arange(2 * 9 * 9.0).reshape(2, 9, 9)
    assert torch.equal(conv_word_view(big, 3, 7), big[:, 1:8, 1:8])


def test_model_attention_is_the_attend_scores_and_gradcheck():
    torch.manual_seed(2)
    model = ABCNN(12, variant="abcnn3", length=5, embed_dim=3, hidden_dim=3, width=2, num_layers=2).double()
    t0 = torch.tensor([[4, 5, 6, 0, 0], [7, 8, 9, 10, 11]])
    t1 = torch.tensor([[6, 5, 4, 7, 0], [8, 7, 0, 0, 0]])
    n0, n1 = torch.tensor([3, 5]), torch.tensor([4, 2])
    out = model(t0, t1, n0, n1)
    assert out.logits.shape == (2, 2) and len(out.attention) == 2
    e0, e1 = model.embed(t0), model.embed(t1)
    keep = (torch.arange(5) < n0[:, None])[:, :, None] & (torch.arange(5) < n1[:, None])[:, None, :]
    scores = attend(e0, e1, e1, score=EuclideanMatch(), return_scores=True).scores
    torch.testing.assert_close(out.attention[0]["input"], scores * keep)

    emb = model.embed.embed.weight.detach().clone().requires_grad_()

    def logits(weight):
        x0, x1 = torch.nn.functional.embedding(t0, weight), torch.nn.functional.embedding(t1, weight)
        keep0, keep1 = torch.arange(5) < n0[:, None], torch.arange(5) < n1[:, None]
        p0, p1, *_ = model.layers[0](x0, x1, keep0, keep1)
        _, _, c0, c1, _ = model.layers[1](p0, p1, keep0, keep1)
        return c0.sum(-1) + c1.sum(-1)

    assert torch.autograd.gradcheck(logits, (emb,))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"variant must be one of.*'abcnn4'"):
        ABCNN(10, variant="abcnn4", length=5)
    model = ABCNN(10, variant="abcnn1", length=5, embed_dim=4, hidden_dim=4)
    t = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"length L = 5.*\(2, 6\)"):
        model(torch.ones(2, 6, dtype=torch.long), torch.ones(2, 6, dtype=torch.long), torch.tensor([1, 1]),
              torch.tensor([1, 1]))
    with pytest.raises(ValueError, match=r"lengths1 must be \(B,\) = \(2,\), got \(3,\)"):
        model(t, t, torch.tensor([1, 1]), torch.tensor([1, 1, 1]))
    with pytest.raises(ValueError, match=r"lengths0 must be in \[1, L = 5\], got min 0"):
        model(t, t, torch.tensor([0, 1]), torch.tensor([1, 1]))
