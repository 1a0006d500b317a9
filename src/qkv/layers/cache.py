"""Key/value caches for incremental decoding with :class:`qkv.MultiHeadAttention`.

Shape legend: ``B`` batch (times beams), ``Hkv`` key/value heads, ``S`` cached keys, ``L`` new
positions, ``d`` head width, ``w`` a sliding window.

A decoder that has produced ``t`` tokens recomputes nothing for them: each attention layer keeps
its projected keys and values (RoPE already applied) and appends the ``L`` new ones
(:class:`KVCache`). Queries of the new positions are the last ``L`` of ``S`` keys, which is how
qkv's causal mask, windows, ALiBi and T5 biases are aligned by default (``bottom_right``), so a
cached call needs no special mask. Grouped-query layers cache ``Hkv`` heads, not ``H``.

* ``KVCache()`` — keeps every key: memory ``O(t)``.
* ``KVCache(window=w)`` — sliding-window attention (Beltagy et al. 2020; Mistral's rolling cache): a
  query at position ``p`` sees keys ``p-w+1..p``; the layer adds the mask ``window(w - 1)`` and the
  cache keeps only the last ``w`` keys, so memory stays ``O(w)`` however long the decoding runs.
* :class:`CrossAttentionCache` — the encoder memory's keys and values, projected once for
  cross-attention.

Caches are immutable values: ``layer(x, cache=c)`` returns the updated cache in
``AttentionOutput.state`` and leaves ``c`` untouched. :func:`reorder_cache` selects batch rows of
any nest of caches (beam search).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from qkv.functional.masks import Mask, window

__all__ = ["CrossAttentionCache", "KVCache", "cache_position", "reorder_cache"]


class _Buffer:
    """Storage that successive caches of one layer share: keys ``(B, Hkv, C, d)`` and values ``(B, Hkv, C, dv)``.

    ``C`` rows are allocated, of which ``end`` are written; a cache's ``key``/``value`` are views of its rows.
    Only the cache whose rows end at ``end`` (the newest) writes the next rows in place, so an older cache
    keeps its keys and values (see :meth:`KVCache.update`).
    """

    __slots__ = ("end", "key", "value")

    def __init__(self, key: Tensor, value: Tensor, end: int) -> None:
        self.key, self.value, self.end = key, value, end

    @property
    def capacity(self) -> int:
        return self.key.shape[-2]

    def takes(self, key: Tensor, value: Tensor) -> bool:
        """Whether new keys and values can be written into this storage as they are (no cast, no autograd)."""
        return (self.key.dtype == key.dtype and self.value.dtype == value.dtype and self.key.device == key.device
                and self.value.shape[-1] == value.shape[-1]
                and self.key.is_inference() == torch.is_inference_mode_enabled())


def _without_grad(*tensors: Tensor | None) -> bool:
    """No gradient flows through these tensors now: writing them into shared storage in place is safe."""
    return not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in tensors)


def _growth(rows: int, window: int | None) -> int:
    """Spare rows of a new storage holding ``rows``: amortised O(1) appends, ``O(w)`` memory with a window."""
    return max(32, rows // 2 if window is None else window)


@dataclass(frozen=True)
class KVCache:
    """The keys and values a self-attention layer has seen, ``(B, Hkv, S, d)`` each.

    Attributes:
        key, value: the cached keys (rotated, when the layer uses RoPE) and values; ``None`` while empty.
        position: how many positions have gone through the layer (the next one's index); with a
            window this exceeds ``S``.
        window: ``w``: keep the last ``w`` keys and let each query see ``w`` keys (itself included);
            ``None`` keeps everything.

    Appending costs ``O(L)``, not ``O(S + L)``: the keys and values live in preallocated storage (with
    spare rows, grown by half when full; with a window, ``w`` spare rows and only the last ``w`` kept on
    growing, so memory stays ``O(w)``) that the newest cache appends to in place; ``key``/``value`` are
    views of it. An older cache that is updated again (two continuations of one prefix) copies its rows
    instead, so every cache still reads as the value it was. While gradients flow through the keys
    (training through a cache) appending concatenates, as in-place writes would break autograd.
    """

    key: Tensor | None = None
    value: Tensor | None = None
    position: int = 0
    window: int | None = None

    # not fields (not annotated): the shared storage that ``key``/``value`` view, and their first row in it
    _buffer = None
    _start = 0

    def __post_init__(self) -> None:
        if self.window is not None and (isinstance(self.window, bool) or not isinstance(self.window, int)
                                        or self.window < 1):
            raise ValueError(f"window must be a positive int or None, got {self.window!r}")

    @property
    def length(self) -> int:
        """``S``, the number of cached keys."""
        return 0 if self.key is None else self.key.shape[-2]

    def mask(self) -> Mask | None:
        """The mask a windowed cache adds to a call (``window(w - 1)``, bottom-right), else ``None``."""
        return None if self.window is None else window(self.window - 1)

    def update(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, KVCache]:
        """Append ``L`` new keys and values ``(B, Hkv, L, d)``.

        Returns:
            ``(keys, values, cache)``: the keys and values to attend over now, ``(B, Hkv, S + L, d)``,
            and the new cache (its last ``w`` of them with a window).
        """
        S, L = self.length, key.shape[-2]
        if self.key is not None and (key.shape[:2] != self.key.shape[:2] or key.shape[-1] != self.key.shape[-1]):
            raise ValueError(
                f"cache: new keys {tuple(key.shape)} do not fit the cached keys {tuple(self.key.shape)} "
                "(B, Hkv, S, d): same batch, heads and head width expected"
            )
        if not _without_grad(key, value, self.key, self.value):
            return self._concatenate(key, value)
        buf, start = self._buffer, self._start
        end = start + S
        if buf is None or buf.end != end or end + L > buf.capacity or not buf.takes(key, value):
            buf, start, end = self._reallocate(key, value), 0, S  # this cache's rows first, spare rows after
        buf.key[..., end : end + L, :] = key  # (B, Hkv, L, d), in place: rows no other cache reads
        buf.value[..., end : end + L, :] = value  # (B, Hkv, L, dv)
        buf.end = end = end + L
        kept = start if self.window is None else max(start, end - self.window)
        new = KVCache(buf.key[..., kept:end, :], buf.value[..., kept:end, :], self.position + L, self.window)
        object.__setattr__(new, "_buffer", buf)
        object.__setattr__(new, "_start", kept)
        return buf.key[..., start:end, :], buf.value[..., start:end, :], new  # (B, Hkv, S + L, d) views

    def _reallocate(self, key: Tensor, value: Tensor) -> _Buffer:
        """New storage holding this cache's ``S`` rows, with room for the ``L`` new ones and spare rows."""
        S, L = self.length, key.shape[-2]
        rows = S + L + _growth(S + L, self.window)
        keys = key.new_empty((*key.shape[:-2], rows, key.shape[-1]))  # (B, Hkv, C, d)
        values = value.new_empty((*value.shape[:-2], rows, value.shape[-1]))  # (B, Hkv, C, dv)
        if S:
            keys[..., :S, :] = self.key
            values[..., :S, :] = self.value
        return _Buffer(keys, values, S)

    def _concatenate(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, KVCache]:
        """:meth:`update` by ``torch.cat`` (new tensors, differentiable)."""
        if self.key is not None:
            key = torch.cat((self.key, key), dim=-2)  # (B, Hkv, S + L, d)
            value = torch.cat((self.value, value), dim=-2)  # (B, Hkv, S + L, dv)
        added = key.shape[-2] - self.length
        kept_k, kept_v = key, value
        if self.window is not None and key.shape[-2] > self.window:
            kept_k, kept_v = key[..., -self.window :, :], value[..., -self.window :, :]  # (B, Hkv, w, d)
        return key, value, KVCache(kept_k, kept_v, self.position + added, self.window)

    def reorder(self, index: Tensor) -> KVCache:
        """Rows ``index`` of the batch (beam search)."""
        if self.key is None:
            return self
        buf = self._buffer
        if buf is None or not _without_grad(self.key, self.value):
            return dataclasses.replace(self, key=self.key.index_select(0, index),
                                       value=self.value.index_select(0, index))
        S, start = self.length, self._start
        # the rows from this cache's first on, spare rows included: the next appends stay in place
        keys = buf.key[..., start:, :].index_select(0, index)  # (B', Hkv, C - start, d)
        values = buf.value[..., start:, :].index_select(0, index)  # (B', Hkv, C - start, dv)
        moved = _Buffer(keys, values, S)
        new = dataclasses.replace(self, key=moved.key[..., :S, :], value=moved.value[..., :S, :])
        object.__setattr__(new, "_buffer", moved)
        return new


@dataclass(frozen=True)
class CrossAttentionCache:
    """A memory's projected keys and values for cross-attention, ``(B, Hkv, S, d)``; ``None`` until first used."""

    key: Tensor | None = None
    value: Tensor | None = None

    def reorder(self, index: Tensor) -> CrossAttentionCache:
        if self.key is None:
            return self
        return CrossAttentionCache(self.key.index_select(0, index), self.value.index_select(0, index))


def reorder_cache(cache: object, index: Tensor) -> object:
    """Select batch rows ``index`` of a cache: tensors, objects with ``reorder``, and tuples/lists/dicts of them."""
    if cache is None:
        return None
    if isinstance(cache, Tensor):
        return cache.index_select(0, index)
    if hasattr(cache, "reorder"):
        return cache.reorder(index)
    if isinstance(cache, (tuple, list)):
        return type(cache)(reorder_cache(c, index) for c in cache)
    if isinstance(cache, dict):
        return {k: reorder_cache(c, index) for k, c in cache.items()}
    raise TypeError(f"reorder_cache: cannot select rows of a {type(cache).__name__} (give it a reorder(index) method)")


def cache_position(cache: object) -> int:
    """The number of positions a cache (or the first :class:`KVCache` in a nest of caches) has seen; 0 for ``None``."""
    if cache is None:
        return 0
    if isinstance(cache, KVCache):
        return cache.position
    items = cache.values() if isinstance(cache, dict) else cache if isinstance(cache, (tuple, list)) else ()
    if not items and dataclasses.is_dataclass(cache):
        items = [getattr(cache, f.name) for f in dataclasses.fields(cache)]
    for c in items:
        if isinstance(c, (KVCache, tuple, list, dict)) or dataclasses.is_dataclass(c):
            return cache_position(c)
    return 0
