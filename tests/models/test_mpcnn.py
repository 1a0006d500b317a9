"""Attention-based MPCNN: the interaction layer against loops, block B against a grouped Conv1d, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from qkv.functional.attention import attend
from qkv.models.mpcnn import MPCNN, PerDimensionConv, attention_reweight, masked_pool


def test_attention_reweight_matches_he_et_al_2016():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    x1 = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    n0, n1 = [5, 3], [4, 5]
    keep0, keep1 = torch.arange(5) < torch.tensor(n0)[:, None], torch.arange(5) < torch.tensor(n1)[:, None]
    y0, y1, a = attention_reweight(x0, x1, keep0, keep1)
    for b in range(2):
        cos = [[sum(p * q for p, q in zip(x0[b, i].tolist(), x1[b, j].tolist(), strict=True))
                / (x0[b, i].norm().item() * x1[b, j].norm().item()) for j in range(n1[b])] for i in range(n0[b])]
        e0 = [sum(row) for row in cos]
        e1 = [sum(cos[i][j] for i in range(n0[b])) for j in range(n1[b])]
        att0 = [math.exp(v) / sum(math.exp(u) for u in e0) for v in e0]
        att1 = [math.exp(v) / sum(math.exp(u) for u in e1) for v in e1]
        torch.testing.assert_close(a[b, : n0[b], : n1[b]], torch.tensor(cos, dtype=torch.float64))
        for i in range(n0[b]):
            torch.testing.assert_close(y0[b, i], torch.cat([x0[b, i], att0[i] * x0[b, i]]))
        for j in range(n1[b]):
            torch.testing.assert_close(y1[b, j], torch.cat([x1[b, j], att1[j] * x1[b, j]]))
    scores = attend(x0, x1, x1, score="cosine", return_scores=True).scores  # the docstring's identity
    torch.testing.assert_close(a, scores * keep0[:, :, None] * keep1[:, None, :])


def test_per_dimension_conv_is_a_grouped_conv1d():
    torch.manual_seed(1)
    conv = PerDimensionConv(4, 3, 2).double()
    ref = torch.nn.Conv1d(4, 12, 2, groups=4).double()
    with torch.no_grad():
        ref.weight.copy_(conv.weight.reshape(12, 1, 2))  # out channel d*M + m reads input channel d
        ref.bias.copy_(conv.bias.reshape(12))
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    expected = ref(x.transpose(1, 2)).reshape(2, 4, 3, 5).permute(0, 3, 1, 2)  # (B, L - 1, D, M)
    torch.testing.assert_close(conv(x), expected)


def test_masked_pool_and_errors():
    x = torch.tensor([[[1.0], [5.0], [-9.0]]])
    keep = torch.tensor([[True, True, False]])
    assert masked_pool(x, keep, "max").item() == 5.0 and masked_pool(x, keep, "min").item() == 1.0
    assert masked_pool(x, keep, "mean").item() == 3.0
    with pytest.raises(ValueError, match=r"how must be one of.*'median'"):
        masked_pool(x, keep, "median")
    with pytest.raises(ValueError, match="holistic_windows and per_dim_windows"):
        MPCNN(10, holistic_windows=())
    model = MPCNN(10, embed_dim=4, holistic_filters=2, per_dim_filters=1, hidden_dim=3)
    t = torch.ones(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="length 2 is shorter than the largest window 3"):
        model(t, t, torch.tensor([2]), torch.tensor([2]))


def test_mpcnn_gradcheck_and_padding_invariance():
    torch.manual_seed(2)
    model = MPCNN(9, embed_dim=3, holistic_filters=2, per_dim_filters=1, hidden_dim=3).double()
    t0 = torch.tensor([[4, 5, 6, 0], [7, 8, 4, 5]])
    t1 = torch.tensor([[6, 5, 4, 7], [8, 7, 6, 0]])
    n0, n1 = torch.tensor([3, 4]), torch.tensor([4, 3])
    out = model(t0, t1, n0, n1)
    assert out.logits.shape == (2, 2) and out.attention[0]["input"].shape == (2, 4, 4)
    wider = model(torch.cat([t0, torch.zeros(2, 2, dtype=torch.long)], 1),
                  torch.cat([t1, torch.zeros(2, 2, dtype=torch.long)], 1), n0, n1)
    torch.testing.assert_close(wider.logits, out.logits)  # padding changes nothing
    emb = model.embed.embed.weight.detach().clone().requires_grad_()

    def fn(weight):
        x0, x1 = torch.nn.functional.embedding(t0, weight), torch.nn.functional.embedding(t1, weight)
        keep0, keep1 = torch.arange(4) < n0[:, None], torch.arange(4) < n1[:, None]
        y0, y1, _ = attention_reweight(x0, x1, keep0, keep1)
        ga, gb = model._sentence(y0, n0)
        return torch.cat([*ga.values()], -1).sum(-1) + torch.stack([*gb.values()], -1).sum((1, 2, 3)) + y1.sum((1, 2))

    assert torch.autograd.gradcheck(fn, (emb,))
