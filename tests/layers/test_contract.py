"""The one calling convention, checked on every public attention layer (``qkv.layers.ATTENTION_LAYERS``).

``forward(query, key=None, value=None, *, mask=None, bias=None, return_weights=False, ...) ->
AttentionOutput``; ``mask`` means what it means in ``attend`` (True = may attend, broadcast to
``(B, H, L, S)``); weights per head; every field of the core passes through; errors name the
argument. A new layer joins by being listed in ``ATTENTION_LAYERS`` and given a factory here.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import qkv
from qkv import layers, memory
from qkv.functional.normalize import Sample

B, L, S, D = 2, 5, 6, 8

#: How to build each public layer for the contract (small, deterministic, every variant that changes the read).
FACTORIES = {
    "Attention-additive": lambda: qkv.Attention(D, score="additive"),
    "Attention-dot": lambda: qkv.Attention(D, score="dot"),
    "GraphAttention": lambda: layers.GraphAttention(D, 3, num_heads=2),
    "GraphAttention-mean-bipartite": lambda: layers.GraphAttention(D, 3, num_heads=2, key_dim=D, concat=False),
    "LocalAttention-m": lambda: qkv.LocalAttention(D, mode="local-m", window=S),
    "LocalAttention-p": lambda: qkv.LocalAttention(D, mode="local-p", window=S),
    "MultiHeadAttention": lambda: qkv.MultiHeadAttention(D, 2),
    "MultiHeadAttention-gqa": lambda: qkv.MultiHeadAttention(D, 4, num_kv_heads=2, score="cosine"),
    "StructuredAttention": lambda: layers.StructuredAttention(D),
    "StructuredAttention-additive-renormalized": lambda: layers.StructuredAttention(
        D, score="additive", renormalize=True),
    "Hopfield": lambda: memory.Hopfield(D, num_heads=2),
    "Hopfield-learned-beta": lambda: memory.Hopfield(D, learn_beta=True),
    "Hopfield-memory": lambda: memory.Hopfield(D, projections=False, beta=2.0),
}


def test_every_public_layer_has_a_factory_and_the_convention():
    built = {type(f()) for f in FACTORIES.values()}
    assert built == set(layers.ATTENTION_LAYERS) | set(memory.ATTENTION_LAYERS)
    public = {getattr(layers, n) for n in layers.__all__}
    modules = {c for c in public if inspect.isclass(c) and issubclass(c, nn.Module)}
    pooling = set(layers.POOLING_LAYERS)  # learned queries: tests/layers/test_pooling.py
    pooling |= set(layers.REPRESENTATION_LAYERS)  # over each token's views: tests/layers/test_multi_representation.py
    assert modules - pooling == set(layers.ATTENTION_LAYERS), "a public layer is missing from ATTENTION_LAYERS"
    for cls in (*layers.ATTENTION_LAYERS, *memory.ATTENTION_LAYERS):
        params = inspect.signature(cls.forward).parameters
        assert list(params)[:4] == ["self", "query", "key", "value"], cls
        for name in ("mask", "bias", "return_weights"):
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, (cls, name)
        assert params["key"].default is None and params["value"].default is None, cls


def _inputs(requires_grad: bool = False):
    g = torch.Generator().manual_seed(0)
    make = lambda *s: torch.randn(*s, generator=g).requires_grad_(requires_grad)  # noqa: E731
    return make(B, L, D), make(B, S, D), make(B, S, D)


def _heads(layer) -> int:
    return getattr(layer, "num_heads", 1)


@pytest.fixture(params=sorted(FACTORIES))
def layer(request):
    torch.manual_seed(0)
    return FACTORIES[request.param]().eval()


def test_weights_are_per_head_and_fields_pass_through(layer):
    q, k, v = _inputs()
    out = layer(q, k, v, return_weights=True)
    assert isinstance(out, qkv.AttentionOutput)
    assert out.output.shape[:2] == (B, L)
    assert out.weights.shape == (B, _heads(layer), L, S)
    plain = layer(q, k, v)
    assert plain.weights is None and plain.scores is None
    torch.testing.assert_close(plain.output, out.output)


def test_key_and_value_default_to_query(layer):
    q, _, _ = _inputs()
    torch.testing.assert_close(layer(q).output, layer(q, q, q).output)


def test_mask_polarity_true_means_may_attend(layer):
    q, k, v = _inputs()
    allowed = torch.rand(B, 1, L, S, generator=torch.Generator().manual_seed(1)) > 0.4
    allowed[..., 0] = True  # every row keeps a key
    w = layer(q, k, v, mask=allowed, return_weights=True).weights  # (B, H, L, S)
    assert torch.all(w.masked_select(~allowed.expand_as(w)) == 0)
    assert torch.all(w.sum(-1) > 0)
    # a lazy mask means the same as its tensor
    lazy = qkv.masks.padding(torch.tensor([S - 2, S]))
    w_lazy = layer(q, k, v, mask=lazy, return_weights=True).weights
    w_tensor = layer(q, k, v, mask=lazy.materialize(L, S), return_weights=True).weights
    torch.testing.assert_close(w_lazy, w_tensor)
    assert torch.all(w_lazy[0, ..., S - 2 :] == 0)


def test_a_float_bias_of_minus_inf_forbids_like_a_mask(layer):
    q, k, v = _inputs()
    bias = torch.zeros(S)
    bias[1] = float("-inf")
    w = layer(q, k, v, bias=bias, return_weights=True).weights
    assert torch.all(w[..., 1] == 0) and torch.isfinite(w).all()


def test_fully_masked_rows_are_zero_and_finite_forward_and_backward(layer):
    q, k, v = _inputs(requires_grad=True)
    allowed = torch.ones(B, 1, L, S, dtype=torch.bool)
    allowed[:, :, 0] = False  # query 0 sees nothing
    out = layer(q, k, v, mask=allowed, return_weights=True)
    assert torch.all(out.weights[:, :, 0] == 0)
    assert torch.isfinite(out.output).all()
    out.output[:, 0].sum().backward()  # the empty row's output depends on no key or value
    for t in (k, v):
        assert torch.all(t.grad == 0)
    for p in layer.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()
    layer.zero_grad()
    q2, k2, v2 = _inputs(requires_grad=True)
    layer(q2, k2, v2, mask=allowed).output.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q2, k2, v2))


def test_log_prob_passes_through():
    layer = qkv.Attention(D, score="dot", normalize=Sample(generator=torch.Generator().manual_seed(0)))
    q, k, v = _inputs()
    out = layer(q, k, v, return_weights=True)
    assert out.log_prob is not None and out.log_prob.shape == (B, 1, L)
    picked = out.weights.argmax(-1)  # (B, 1, L)
    ref = torch.log_softmax(q @ k.transpose(-1, -2), -1).unsqueeze(1).gather(-1, picked.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out.log_prob, ref)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (lambda q, k, v: (q[0], k, v), "query"),  # 2-D query
        (lambda q, k, v: (q, k[..., :-1], v), "key"),  # wrong width
        (lambda q, k, v: (q, k, v[:1]), "value"),  # wrong batch
        (lambda q, k, v: (q.int(), k, v), "query"),  # not floating point
    ],
)
def test_errors_name_the_argument(layer, args, name):
    q, k, v = _inputs()
    with pytest.raises((ValueError, TypeError), match=name):
        layer(*args(q, k, v))


def test_bad_mask_is_named(layer):
    q, k, v = _inputs()
    with pytest.raises(ValueError, match="mask"):
        layer(q, k, v, mask=torch.ones(B + 1, 1, L, S, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask"):
        layer(q, k, v, mask=torch.ones(B, 1, L, S))
