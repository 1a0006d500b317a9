"""`qkv.masks` against hand-written loops: causal (both alignments), window, padding,
combinators, TensorMask tiles, and the conservativeness of `kv_bounds`."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qkv import masks

CPU = torch.device("cpu")


def full(mask, L, S, B=1):
    """Materialise to (B, 1, L, S) via the public API and broadcast, for comparisons."""
    return torch.broadcast_to(mask.materialize(L, S), (B, 1, L, S))


def loop_mask(L, S, allowed, B=1):
    out = torch.zeros(B, 1, L, S, dtype=torch.bool)
    for b in range(B):
        for i in range(L):
            for j in range(S):
                out[b, 0, i, j] = bool(allowed(b, i, j))
    return out


def causal_fn(align, L, S):
    off = 0 if align == "top_left" else S - L
    return lambda b, i, j: j <= i + off


def window_fn(w, align, L, S):
    off = 0 if align == "top_left" else S - L
    return lambda b, i, j: abs(j - (i + off)) <= w


def test_causal_known_pictures():
    tl = masks.causal(align="top_left").materialize(2, 4)
    assert tl.tolist() == [[True, False, False, False], [True, True, False, False]]
    br = masks.causal(align="bottom_right").materialize(2, 4)
    assert br.tolist() == [[True, True, True, False], [True, True, True, True]]
    br_tall = masks.causal(align="bottom_right").materialize(4, 2)
    assert br_tall.tolist() == [[False, False], [False, False], [True, False], [True, True]]
    w = masks.window(1, align="top_left").materialize(3, 4)
    assert w.tolist() == [[True, True, False, False], [True, True, True, False], [False, True, True, True]]


@settings(max_examples=30, deadline=None)
@given(
    L=st.integers(0, 7), S=st.integers(0, 7), w=st.integers(0, 4), align=st.sampled_from(["top_left", "bottom_right"])
)
def test_causal_and_window_match_loops(L, S, w, align):
    assert torch.equal(full(masks.causal(align=align), L, S), loop_mask(L, S, causal_fn(align, L, S)))
    assert torch.equal(full(masks.window(w, align=align), L, S), loop_mask(L, S, window_fn(w, align, L, S)))


def test_padding_matches_loop_and_broadcasts_as_b11s():
    lengths = torch.tensor([0, 3, 5, 9])
    m = masks.padding(lengths).materialize(3, 5)
    assert m.shape == (4, 1, 1, 5)
    ref = loop_mask(3, 5, lambda b, i, j: j < [0, 3, 5, 9][b], B=4)
    assert torch.equal(torch.broadcast_to(m, (4, 1, 3, 5)), ref)
    assert m.dtype == torch.bool


@settings(max_examples=30, deadline=None)
@given(
    L=st.integers(1, 6),
    S=st.integers(1, 6),
    w=st.integers(0, 3),
    seed=st.integers(0, 2**31 - 1),
    align=st.sampled_from(["top_left", "bottom_right"]),
)
def test_combinators_match_loops(L, S, w, seed, align):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, S + 1, (3,), generator=gen)
    t = torch.rand(3, 1, L, S, generator=gen) < 0.5
    c, wn, p = causal_fn(align, L, S), window_fn(w, align, L, S), (lambda b, i, j: j < int(lengths[b]))
    tm = lambda b, i, j: bool(t[b, 0, i, j])  # noqa: E731
    C, W, P = masks.causal(align=align), masks.window(w, align=align), masks.padding(lengths)
    cases = [
        (C & P, lambda b, i, j: c(b, i, j) and p(b, i, j)),
        (C | W, lambda b, i, j: c(b, i, j) or wn(b, i, j)),
        (masks.and_(C, W, P), lambda b, i, j: c(b, i, j) and wn(b, i, j) and p(b, i, j)),
        (masks.or_(W, t), lambda b, i, j: wn(b, i, j) or tm(b, i, j)),
        (W & t, lambda b, i, j: wn(b, i, j) and tm(b, i, j)),
        (t | C, lambda b, i, j: tm(b, i, j) or c(b, i, j)),  # tensor on the left
        (t & P, lambda b, i, j: tm(b, i, j) and p(b, i, j)),
        ((C | W) & P, lambda b, i, j: (c(b, i, j) or wn(b, i, j)) and p(b, i, j)),
        (masks.and_(t), tm),
    ]
    for mask, fn in cases:
        assert isinstance(mask, masks.Mask), repr(mask)
        assert torch.equal(full(mask, L, S, B=3), loop_mask(L, S, fn, B=3)), repr(mask)
        assert torch.equal(torch.broadcast_to(masks.materialize(mask, L, S), (3, 1, L, S)), loop_mask(L, S, fn, B=3))


@settings(max_examples=40, deadline=None)
@given(L=st.integers(1, 9), S=st.integers(1, 9), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_tile_equals_slice_of_materialized(L, S, seed, data):
    gen = torch.Generator().manual_seed(seed)
    tshape = data.draw(st.sampled_from([(L, S), (2, 1, L, S), (2, 1, 1, S), (1, L, 1), (L, 1)]))
    t = torch.rand(*tshape, generator=gen) < 0.5
    lengths = torch.randint(0, S + 1, (2,), generator=gen)
    w = data.draw(st.integers(0, 3))
    align = data.draw(st.sampled_from(["top_left", "bottom_right"]))
    mask = data.draw(
        st.sampled_from(
            [
                masks.causal(align=align),
                masks.window(w, align=align),
                masks.padding(lengths),
                masks.as_mask(t),
                masks.causal(align=align) & t,
                masks.window(w) | masks.padding(lengths),
            ]
        )
    )
    q0 = data.draw(st.integers(0, L - 1))
    q1 = data.draw(st.integers(q0 + 1, L))
    k0 = data.draw(st.integers(0, S - 1))
    k1 = data.draw(st.integers(k0 + 1, S))
    whole = torch.broadcast_to(mask.materialize(L, S), (2, 1, L, S))
    tile = mask.tile(q0, q1, k0, k1, L=L, S=S, device=CPU)
    assert tile.dtype == torch.bool
    assert torch.equal(torch.broadcast_to(tile, (2, 1, q1 - q0, k1 - k0)), whole[..., q0:q1, k0:k1])


def test_tensor_mask_tile_of_1d_key_mask():
    """A (S,) bool mask broadcasts to (B, H, L, S), so a tile of it must work too."""
    t = torch.tensor([True, False, True, True, False])
    tile = masks.as_mask(t).tile(0, 2, 1, 4, L=3, S=5, device=CPU)
    assert torch.equal(torch.broadcast_to(tile, (2, 3)), t[1:4].expand(2, 3))


def test_as_mask_passthrough_and_tensor_materialize():
    c = masks.causal()
    assert masks.as_mask(c) is c
    t = torch.ones(2, 3, dtype=torch.bool)
    assert torch.equal(masks.as_mask(t).materialize(2, 3), t)
    assert torch.equal(masks.materialize(t, 2, 3), t)


@settings(max_examples=60, deadline=None)
@given(
    L=st.integers(1, 10),
    S=st.integers(0, 10),
    w=st.integers(0, 4),
    seed=st.integers(0, 2**31 - 1),
    align=st.sampled_from(["top_left", "bottom_right"]),
    data=st.data(),
)
def test_kv_bounds_are_conservative(L, S, w, seed, align, data):
    """Property: every allowed key of a query block [q0, q1) lies in kv_bounds' [lo, hi)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, S + 1, (2,), generator=gen)
    t = torch.rand(2, 1, L, S, generator=gen) < 0.3
    C, W, P, T = masks.causal(align=align), masks.window(w, align=align), masks.padding(lengths), masks.as_mask(t)
    mask = data.draw(
        st.sampled_from([C, W, P, T, C & W, W & P, C | W, masks.or_(P, W), masks.and_(C, W, P), (C | P) & W, W & T])
    )
    q0 = data.draw(st.integers(0, L - 1))
    q1 = data.draw(st.integers(q0 + 1, L))
    lo, hi = mask.kv_bounds(q0, q1, L=L, S=S)
    assert 0 <= lo <= hi <= S, (lo, hi)
    allowed = torch.broadcast_to(mask.materialize(L, S), (2, 1, L, S))[..., q0:q1, :]
    cols = allowed.flatten(0, -2).any(0).nonzero().flatten().tolist()
    for j in cols:
        assert lo <= j < hi, f"{mask!r}: key {j} allowed for queries [{q0},{q1}) but bounds [{lo},{hi})"


def test_kv_bounds_are_tight_for_simple_masks():
    # not only conservative: causal/window/padding bound the keys they allow exactly
    assert masks.causal().kv_bounds(0, 3, L=8, S=8) == (0, 3)
    assert masks.causal(align="bottom_right").kv_bounds(0, 2, L=4, S=8) == (0, 6)
    assert masks.window(1).kv_bounds(4, 6, L=10, S=10) == (3, 7)
    assert masks.padding(torch.tensor([2, 5])).kv_bounds(0, 4, L=4, S=8) == (0, 5)
    assert (masks.causal() & masks.window(1)).kv_bounds(4, 6, L=10, S=10) == (3, 6)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w", [-1, -5, 1.5, True, "2", None])
def test_window_bad_width(w):
    with pytest.raises(ValueError) as info:
        masks.window(w)
    assert "width" in str(info.value) and repr(w) in str(info.value)


@pytest.mark.parametrize("fn", [masks.causal, lambda align: masks.window(1, align=align)])
@pytest.mark.parametrize("align", ["top-left", "center", "bottom_left", None])
def test_bad_align(fn, align):
    with pytest.raises(ValueError) as info:
        fn(align=align)
    assert "align" in str(info.value) and repr(align) in str(info.value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_padding_non_integer_lengths(dtype):
    with pytest.raises(TypeError) as info:
        masks.padding(torch.tensor([1, 2], dtype=dtype))
    assert "lengths" in str(info.value) and str(dtype) in str(info.value)


@pytest.mark.parametrize("shape", [(2, 3), (), (1, 1, 2)])
def test_padding_not_1d(shape):
    with pytest.raises(ValueError) as info:
        masks.padding(torch.zeros(shape, dtype=torch.long))
    assert "lengths" in str(info.value) and str(shape) in str(info.value)


def test_padding_negative_and_not_tensor():
    with pytest.raises(ValueError) as info:
        masks.padding(torch.tensor([2, -1]))
    assert "lengths" in str(info.value) and "-1" in str(info.value)
    with pytest.raises((ValueError, TypeError)) as info:
        masks.padding([1, 2])
    assert "lengths" in str(info.value) and "list" in str(info.value)


def test_tensor_mask_non_bool_and_empty_combinators():
    with pytest.raises(TypeError) as info:
        masks.as_mask(torch.ones(2, 2))
    assert "torch.float32" in str(info.value) and "bias" in str(info.value)
    with pytest.raises(TypeError):
        masks.as_mask([[True]])
    for comb in (masks.and_, masks.or_):
        with pytest.raises(ValueError):
            comb()
