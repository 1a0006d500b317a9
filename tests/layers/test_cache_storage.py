"""KVCache's preallocated storage: in-place appends keep every cache a value (branching, beams, windows, autograd).

The reference is the concatenating cache: each cache's keys must equal ``torch.cat`` of everything appended to
it, whatever else was appended to the storage it shares.
"""

from __future__ import annotations

import pytest
import torch

import qkv
from qkv.layers.cache import KVCache

B, H, D = 2, 3, 4


def _kv(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, n, D, generator=g), torch.randn(B, H, n, D + 1, generator=g)  # dv = d + 1


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_appends_in_place_and_older_caches_keep_their_keys(mode):
    ctx = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with ctx:
        k0, v0 = _kv(5, 0)
        _, _, c5 = KVCache().update(k0, v0)
        steps = [_kv(1, s) for s in range(1, 60)]  # past the first storage's spare rows: it grows
        caches, ref_k, ref_v = [c5], [k0], [v0]
        for k, v in steps:
            keys, values, c = caches[-1].update(k, v)
            ref_k.append(k)
            ref_v.append(v)
            torch.testing.assert_close(keys, torch.cat(ref_k, -2), rtol=0, atol=0)
            torch.testing.assert_close(values, torch.cat(ref_v, -2), rtol=0, atol=0)
            caches.append(c)
        # the newest cache wrote in place into storage shared with its predecessors ...
        assert caches[-1].key.untyped_storage().data_ptr() == caches[-2].key.untyped_storage().data_ptr()
        # ... and every earlier cache still holds exactly its own prefix
        for n, c in enumerate(caches):
            torch.testing.assert_close(c.key, torch.cat(ref_k[: n + 1], -2), rtol=0, atol=0)
            assert c.position == 5 + n


def test_two_continuations_of_one_prefix_do_not_overwrite_each_other():
    with torch.no_grad():
        k0, v0 = _kv(4, 0)
        _, _, prefix = KVCache().update(k0, v0)
        (ka, va), (kb, vb) = _kv(2, 1), _kv(2, 2)
        _, _, a = prefix.update(ka, va)  # the newest: appended in place
        keys_b, _, b = prefix.update(kb, vb)  # the prefix again: its rows are copied, a's stay
        torch.testing.assert_close(a.key, torch.cat((k0, ka), -2), rtol=0, atol=0)
        torch.testing.assert_close(b.key, torch.cat((k0, kb), -2), rtol=0, atol=0)
        torch.testing.assert_close(keys_b, b.key, rtol=0, atol=0)
        torch.testing.assert_close(prefix.key, k0, rtol=0, atol=0)
        # both branches go on independently
        (ka2, va2), (kb2, vb2) = _kv(1, 3), _kv(1, 4)
        a2, b2 = a.update(ka2, va2)[2], b.update(kb2, vb2)[2]
        torch.testing.assert_close(a2.value, torch.cat((v0, va, va2), -2), rtol=0, atol=0)
        torch.testing.assert_close(b2.value, torch.cat((v0, vb, vb2), -2), rtol=0, atol=0)


def test_reorder_keeps_storage_and_continues_like_the_concatenated_reference():
    with torch.inference_mode():
        k0, v0 = _kv(3, 0)
        _, _, c = KVCache().update(k0, v0)
        index = torch.tensor([1, 1])
        r = c.reorder(index)
        k1, v1 = _kv(1, 1)
        keys, values, r2 = r.update(k1, v1)
        torch.testing.assert_close(keys, torch.cat((k0[index], k1), -2), rtol=0, atol=0)
        torch.testing.assert_close(values, torch.cat((v0[index], v1), -2), rtol=0, atol=0)
        torch.testing.assert_close(c.key, k0, rtol=0, atol=0)  # the original rows are untouched
        assert r2.position == 4


@pytest.mark.parametrize("w", [1, 4])
def test_sliding_window_storage_stays_bounded(w):
    with torch.no_grad():
        cache, ref = KVCache(window=w), []
        for t in range(300):
            k, v = _kv(1, t)
            keys, _, cache = cache.update(k, v)
            ref.append(k)
            torch.testing.assert_close(keys, torch.cat(ref[-(w + 1) :], -2), rtol=0, atol=0)  # w kept + the new one
            torch.testing.assert_close(cache.key, torch.cat(ref[-w:], -2), rtol=0, atol=0)
            rows = cache.key.untyped_storage().nbytes() // (B * H * D * cache.key.element_size())
            assert rows <= 2 * w + 64  # the storage holds O(w) rows however long the decoding runs
        assert cache.position == 300


def test_gradients_flow_through_a_cache_built_with_autograd():
    torch.manual_seed(0)
    layer = qkv.MultiHeadAttention(8, 2)
    x = torch.randn(1, 4, 8, requires_grad=True)
    cache, outs = KVCache(), []
    for t in range(4):  # grad enabled: the cache concatenates, and backward reaches every step
        o = layer(x[:, t : t + 1], mask=qkv.masks.causal(), cache=cache)
        cache = o.state
        outs.append(o.output)
    torch.cat(outs, 1).sum().backward()
    grad_cached = x.grad.clone()
    x.grad = None
    layer(x, mask=qkv.masks.causal()).output.sum().backward()
    torch.testing.assert_close(grad_cached, x.grad, atol=1e-5, rtol=1e-5)


def test_a_cache_from_inference_mode_continues_outside_it():
    layer = qkv.MultiHeadAttention(8, 2).eval()
    x = torch.randn(1, 3, 8)
    with torch.inference_mode():
        c = layer(x[:, :2], mask=qkv.masks.causal(), cache=KVCache()).state
    with torch.no_grad():  # the inference-mode storage cannot be written here: the rows are copied
        out = layer(x[:, 2:], mask=qkv.masks.causal(), cache=c).output
        ref = layer(x, mask=qkv.masks.causal()).output[:, 2:]
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
