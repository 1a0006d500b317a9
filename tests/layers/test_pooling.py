"""Pooling layers with learned queries (``qkv.layers.POOLING_LAYERS``): references, gradcheck, the contract's checks."""

from __future__ import annotations

import pytest
import torch

import qkv
from qkv import layers
from qkv.functional.attention import attend
from qkv.layers.structured import SegmentationCRF

B, S, D = 2, 6, 8

FACTORIES = {
    "AttentionPooling-additive": lambda: layers.AttentionPooling(D),
    "AttentionPooling-scaled-dot-3": lambda: layers.AttentionPooling(D, score="scaled_dot", num_queries=3),
    "AttentionPooling-structured": lambda: layers.AttentionPooling(D, normalize=SegmentationCRF()),
    "MultiDimensionalAttention": lambda: layers.MultiDimensionalAttention(D, hidden_dim=5),
    "MultiDimensionalAttention-elu": lambda: layers.MultiDimensionalAttention(D, activation="elu"),
}


def test_every_pooling_layer_has_a_factory():
    assert {type(f()) for f in FACTORIES.values()} == set(layers.POOLING_LAYERS)


def _inputs(dtype=torch.float32, requires_grad=False):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, S, D, generator=g, dtype=dtype).requires_grad_(requires_grad),
            torch.randn(B, S, D, generator=g, dtype=dtype).requires_grad_(requires_grad))


@pytest.fixture(params=sorted(FACTORIES))
def layer(request):
    torch.manual_seed(0)
    return FACTORIES[request.param]().eval()


def _shape(layer) -> tuple[int, int]:
    """(H, Q) of the layer's weights."""
    if isinstance(layer, layers.MultiDimensionalAttention):
        return layer.value_dim, 1
    return 1, layer.num_queries


def test_weights_shape_mask_polarity_and_empty_rows(layer):
    k, v = _inputs(requires_grad=True)
    H, Q = _shape(layer)
    out = layer(k, v, return_weights=True)
    assert out.weights.shape == (B, H, Q, S) and out.output.shape[:2] == (B, Q)
    assert layer(k, v).weights is None
    torch.testing.assert_close(layer(k).output, layer(k, k).output)
    keep = torch.tensor([[True] * S, [True, True, True, False, False, False]])
    w = layer(k, v, mask=qkv.masks.key_padding(keep), return_weights=True).weights
    assert torch.all(w[1, ..., 3:] == 0) and torch.all(w.sum(-1) > 0)
    bias = torch.zeros(S)
    bias[2] = float("-inf")
    w = layer(k, v, bias=bias, return_weights=True).weights
    assert torch.all(w[..., 2] == 0) and torch.isfinite(w).all()
    empty = keep.clone()
    empty[0] = False  # batch row 0 sees nothing
    out = layer(k, v, mask=qkv.masks.key_padding(empty), return_weights=True)
    assert torch.all(out.weights[0] == 0) and torch.all(out.output[0] == 0)
    out.output[0].sum().backward()
    assert torch.all(k.grad == 0) and torch.all(v.grad == 0)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in layer.parameters())


def test_gradcheck_float64(layer):
    layer = layer.double()
    k, v = (t[:, :4].detach().requires_grad_() for t in _inputs(torch.float64))
    keep = torch.tensor([[True] * 4, [True] * 3 + [False]])
    assert torch.autograd.gradcheck(lambda k, v: layer(k, v, mask=qkv.masks.key_padding(keep)).output, (k, v),
                                    fast_mode=True)


def test_errors_name_the_argument_and_shape(layer):
    k, v = _inputs()
    with pytest.raises(ValueError, match=r"key.*\(2, 6, 7\)"):
        layer(k[..., :-1])
    with pytest.raises(ValueError, match=r"key.*\(6, 8\)"):
        layer(k[0])
    with pytest.raises(ValueError, match=r"value.*\(1, 6, 8\)"):
        layer(k, v[:1])
    with pytest.raises(TypeError, match="key"):
        layer(k.int())
    with pytest.raises(TypeError, match="mask"):
        layer(k, v, mask=torch.ones(B, 1, 1, S))
    with pytest.raises(ValueError, match="mask"):
        layer(k, v, mask=torch.ones(B + 1, 1, 1, S, dtype=torch.bool))


def test_constructor_errors_name_the_option():
    with pytest.raises(ValueError, match="num_queries"):
        layers.AttentionPooling(D, num_queries=0)
    with pytest.raises(ValueError, match="score"):
        layers.AttentionPooling(D, score="nope")
    with pytest.raises(ValueError, match="activation"):
        layers.MultiDimensionalAttention(D, activation="relu6")
    with pytest.raises(ValueError, match="hidden_dim"):
        layers.MultiDimensionalAttention(D, hidden_dim=0)


@torch.no_grad()
def test_attention_pooling_equals_a_naive_loop_of_yangs_equations():
    torch.manual_seed(0)
    pool = layers.AttentionPooling(D, num_queries=2, hidden_dim=5).double()
    k, v = _inputs(torch.float64)
    lengths = [S, 4]
    out = pool(k, v, mask=qkv.masks.padding(torch.tensor(lengths)), return_weights=True)
    sc = pool.score
    for b in range(B):
        for q in range(2):
            u = pool.query[q]
            # Yang eq. 5-6: score_i = v^T tanh(W_k h_i + W_q u) (W_q u plays Yang's bias b, v his u_w)
            s = [float(sc.v @ torch.tanh(sc.w_k @ k[b, i] + sc.w_q @ u)) for i in range(lengths[b])]
            e = [float(torch.tensor(x).exp()) for x in s]
            a = [x / sum(e) for x in e]
            ref = sum(a[i] * v[b, i] for i in range(lengths[b]))  # eq. 7
            torch.testing.assert_close(out.output[b, q], ref)
            torch.testing.assert_close(out.weights[b, 0, q, : lengths[b]], torch.tensor(a, dtype=torch.float64))


@torch.no_grad()
def test_multidimensional_equals_a_naive_loop_over_features():
    torch.manual_seed(0)
    md = layers.MultiDimensionalAttention(D, hidden_dim=5).double()
    k, v = _inputs(torch.float64)
    lengths = [S, 3]
    out = md(k, v, mask=qkv.masks.padding(torch.tensor(lengths)), return_weights=True)
    for b in range(B):
        n = lengths[b]
        f = [md.features.weight @ torch.tanh(md.hidden.weight @ k[b, i] + md.hidden.bias) for i in range(n)]  # f(x_i)
        for d in range(D):
            e = [float(f[i][d].exp()) for i in range(n)]
            a = [x / sum(e) for x in e]  # softmax over tokens, feature d alone
            ref = sum(a[i] * float(v[b, i, d]) for i in range(n))
            assert float(out.output[b, 0, d]) == pytest.approx(ref, abs=1e-12)
            torch.testing.assert_close(out.weights[b, d, 0, :n], torch.tensor(a, dtype=torch.float64))
        assert torch.all(out.weights[b, :, 0, n:] == 0)


def test_weights_are_the_attend_call_in_the_docstring():
    torch.manual_seed(0)
    k, v = _inputs()
    mask = qkv.masks.padding(torch.tensor([S, 4]))
    pool = layers.AttentionPooling(D, num_queries=2, score="scaled_dot")
    ref = attend(pool.query[None, None], k.unsqueeze(1), v.unsqueeze(1), score=pool.score, mask=mask,
                 return_weights=True)
    out = pool(k, v, mask=mask, return_weights=True)
    torch.testing.assert_close(out.weights, ref.weights)
    torch.testing.assert_close(out.output, ref.output.squeeze(1))
    crf = SegmentationCRF()
    with torch.no_grad():
        crf.transition.copy_(torch.tensor([[0.5, -1.0], [0.0, 2.0]]))
    spool = layers.AttentionPooling(D, normalize=crf)
    ref = attend(spool.query[None, None], k.unsqueeze(1), v.unsqueeze(1), score=spool.score, mask=mask,
                 normalize=crf.normalizer(), return_weights=True)
    torch.testing.assert_close(spool(k, v, mask=mask, return_weights=True).weights, ref.weights)
    md = layers.MultiDimensionalAttention(D, hidden_dim=5)
    h = torch.tanh(md.hidden(k))
    ref = attend(md.features.weight[None, :, None, :], h[:, None], v.transpose(1, 2).unsqueeze(-1), score="dot",
                 mask=mask, return_weights=True)
    torch.testing.assert_close(md(k, v, mask=mask, return_weights=True).weights, ref.weights)


def test_structured_pooling_learns_its_transition():
    crf = SegmentationCRF()
    pool = layers.AttentionPooling(D, normalize=crf)
    assert any(p is crf.transition for p in pool.parameters())
    k, _ = _inputs()
    pool(k).output.sum().backward()
    assert crf.transition.grad is not None and crf.transition.grad.abs().sum() > 0
