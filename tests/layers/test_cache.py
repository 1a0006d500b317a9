"""Key/value caches: cached incremental attention equals full recomputation (GQA, RoPE, biases, sliding window)."""

from __future__ import annotations

import pytest
import torch

import qkv
from qkv.layers.cache import CrossAttentionCache, KVCache, cache_position, reorder_cache
from qkv.positional import Rotary, T5RelativeBias, alibi

E, L = 16, 9


def _layer(kind: str) -> qkv.MultiHeadAttention:
    torch.manual_seed(0)
    if kind == "plain":
        return qkv.MultiHeadAttention(E, 4)
    if kind == "gqa":
        return qkv.MultiHeadAttention(E, 4, num_kv_heads=2)
    if kind == "mqa-rotary":
        return qkv.MultiHeadAttention(E, 4, num_kv_heads=1, rotary=Rotary(4))
    if kind == "alibi":
        return qkv.MultiHeadAttention(E, 4, position_bias=alibi(4))
    pb = T5RelativeBias(4, bidirectional=False, num_buckets=8, max_distance=16)
    torch.nn.init.normal_(pb.weight)
    return qkv.MultiHeadAttention(E, 4, rotary=Rotary(4), position_bias=pb)


def _run_cached(layer, x, chunks, cache):
    outs, t = [], 0
    for n in chunks:
        o = layer(x[:, t : t + n], mask=qkv.masks.causal(), cache=cache)
        cache, t = o.state, t + n
        outs.append(o.output)
    return torch.cat(outs, dim=1), cache


@pytest.mark.parametrize("kind", ["plain", "gqa", "mqa-rotary", "alibi", "t5-rotary"])
@pytest.mark.parametrize("chunks", [[1] * L, [4, 1, 1, 3]])
def test_cached_attention_equals_full_recomputation(kind, chunks):
    layer = _layer(kind).eval()
    x = torch.randn(2, L, E)
    full = layer(x, mask=qkv.masks.causal()).output
    out, cache = _run_cached(layer, x, chunks, KVCache())
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-5)
    assert cache.position == L and cache.length == L
    assert cache.key.shape == (2, layer.num_kv_heads, L, E // 4)  # GQA caches Hkv heads, not H


@pytest.mark.parametrize("kind", ["gqa", "mqa-rotary", "alibi"])
@pytest.mark.parametrize("w", [1, 3])
def test_sliding_window_cache_equals_windowed_attention_with_bounded_memory(kind, w):
    layer = _layer(kind).eval()
    x = torch.randn(2, L, E)
    full = layer(x, mask=qkv.masks.causal() & qkv.masks.window(w - 1)).output
    cache, outs = KVCache(window=w), []
    for t in range(L):
        o = layer(x[:, t : t + 1], mask=qkv.masks.causal(), cache=cache)
        cache = o.state
        assert cache.length == min(t + 1, w)  # memory bounded by the window
        outs.append(o.output)
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.position == L
    chunked, cache = _run_cached(layer, x, [5, 4], KVCache(window=w))  # a prefill longer than the window
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=1e-5)
    assert cache.length == w


def test_cache_is_an_immutable_value():
    layer = _layer("plain")
    c0 = KVCache()
    c1 = layer(torch.randn(1, 2, E), cache=c0).state
    assert c0.length == 0 and c1.length == 2 and c1.position == 2


def test_cross_attention_cache_projects_the_memory_once():
    layer = _layer("gqa").eval()
    x, memory = torch.randn(2, 3, E), torch.randn(2, 7, E)
    ref = layer(x, memory).output
    first = layer(x[:, :1], memory, cache=CrossAttentionCache())
    assert first.state.key.shape == (2, 2, 7, 4)
    again = layer(x[:, 1:], cache=first.state)  # no memory needed now
    torch.testing.assert_close(torch.cat((first.output, again.output), 1), ref)
    weights = layer(x, cache=first.state, return_weights=True).weights
    torch.testing.assert_close(weights, layer(x, memory, return_weights=True).weights)


def test_reorder_and_position_of_nested_caches():
    k = torch.arange(3.0)[:, None, None, None].expand(3, 1, 2, 1)
    nest = ({"a": KVCache(k, k, 5)}, [CrossAttentionCache(k, k), None, k])
    out = reorder_cache(nest, torch.tensor([2, 2, 0]))
    assert out[0]["a"].key[:, 0, 0, 0].tolist() == [2, 2, 0] and out[0]["a"].position == 5
    assert out[1][0].value[:, 0, 0, 0].tolist() == [2, 2, 0] and out[1][1] is None
    assert out[1][2][:, 0, 0, 0].tolist() == [2, 2, 0]
    assert cache_position(nest) == 5 and cache_position(None) == 0
    with pytest.raises(TypeError, match="reorder_cache"):
        reorder_cache(object(), torch.tensor([0]))


def test_errors_name_the_argument():
    layer = _layer("plain")
    with pytest.raises(ValueError, match="window"):
        KVCache(window=0)
    with pytest.raises(TypeError, match="cache"):
        layer(torch.randn(1, 2, E), cache=(torch.zeros(1),))
    c = layer(torch.randn(2, 2, E), cache=KVCache()).state
    with pytest.raises(ValueError, match="cache"):
        layer(torch.randn(3, 1, E), cache=c)


def test_a_windowed_layer_decodes_with_a_window_cache_one_larger():
    torch.manual_seed(0)
    layer = qkv.MultiHeadAttention(E, 4, window=2).eval()  # |j - i| <= 2: with causal, 3 keys
    x = torch.randn(2, L, E)
    full = layer(x, mask=qkv.masks.causal()).output
    out, cache = _run_cached(layer, x, [1] * L, KVCache(window=3))
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-5)
    assert cache.length == 3
    with pytest.raises(ValueError, match=r"KVCache\(window=3\)"):
        layer(x[:, :1], cache=KVCache(window=2))
