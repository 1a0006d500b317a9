"""The FlexAttention backend: lazy masks and biases as FlexAttention functions, and its fallbacks."""

from __future__ import annotations

import warnings

import pytest
import torch

import qkv
from qkv import masks as M
from qkv import positional as biases
from qkv.functional.local import GaussianWindow
from qkv.kernels import flex as flex_mod


def _qkv(B=2, H=2, L=40, S=56, D=16, requires_grad=False, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    return tuple(
        torch.randn(B, H, n, D, generator=gen).to(device).requires_grad_(requires_grad) for n in (L, S, S)
    )


def _grid(B, H, L, S):
    """FlexAttention's index tensors as broadcasting grids ``b (B,1,1,1)``, ``h``, ``q``, ``kv (1,1,1,S)``."""
    return (
        torch.arange(B)[:, None, None, None],
        torch.arange(H)[None, :, None, None],
        torch.arange(L)[None, None, :, None],
        torch.arange(S)[None, None, None, :],
    )


def _fallback_warnings(caught):
    return [w for w in caught if "FlexAttention failed" in str(w.message)]


def test_mask_and_score_mods_match_the_lazy_tiles():
    L, S = 7, 9
    b, h = torch.tensor(1), torch.tensor(1)
    i = torch.arange(L)[:, None]
    j = torch.arange(S)[None, :]
    sizes = {"B": 2, "H": 2, "L": L, "S": S, "device": torch.device("cpu")}
    dense = torch.rand(2, 1, L, S) > 0.5
    pos = torch.rand(2, 2, L) * S
    for mask in (M.causal(align="bottom_right"),
                 M.window(2, align="top_left") & M.padding(torch.tensor([9, 4])),
                 dense | M.causal(align="top_left"),
                 GaussianWindow(pos, 2).support() & M.causal(align="top_left")):
        mod = mask.flex(**sizes)
        want = mask.materialize(L, S).expand(2, 2, L, S)[1, 1]
        assert torch.equal(mod(b, h, i, j).expand(L, S), want)
    table = torch.randn(2, 5)
    for bias in (biases.alibi(2, align="bottom_right"),
                 biases.relative(table, max_distance=2, align="top_left") + biases.alibi(2, align="top_left")):
        mod = bias.flex(**sizes)  # the additive value itself (the backend adds it to the score)
        want = bias.materialize(L, S)[1]
        torch.testing.assert_close(mod(b, h, i, j).expand(L, S), want)


def test_flex_functions_broadcast_size_one_dims():
    """Issue 8: a (1,) length, one ALiBi slope, a one-row relative table serve every batch row / head."""
    B, H, L, S, R = 2, 2, 6, 8, 3
    sizes = {"B": B, "H": H, "L": L, "S": S, "device": torch.device("cpu")}
    grid = _grid(B, H, L, S)
    table = torch.randn(1, 2 * R + 1)
    masks = [M.padding(torch.tensor([5])), M.padding(torch.tensor([5])) & M.causal()]
    for mask in masks:
        got = mask.flex(**sizes)(*grid)
        assert torch.equal(got.expand(B, H, L, S), mask.materialize(L, S).expand(B, H, L, S)), mask
    bias_list = [
        biases.alibi(1),
        biases.relative(table, max_distance=R),
        biases.relative(table, max_distance=R, align="top_left") + biases.alibi(1),
    ]
    for bias in bias_list:
        got = bias.flex(**sizes)(*grid)
        torch.testing.assert_close(got.expand(B, H, L, S), bias.materialize(L, S).expand(B, H, L, S))


@pytest.mark.slow
def test_flex_compiled_with_size_one_dims_matches_naive(monkeypatch):
    """Compiles FlexAttention: size-1 padding lengths, ALiBi slopes and relative tables with B = H = 2."""
    monkeypatch.setenv("QKV_FLEX", "1")
    q, k, v = _qkv()
    R = 3
    cases = [
        {"mask": M.padding(torch.tensor([50]))},
        {"mask": M.padding(torch.tensor([50])) & M.causal(), "bias": biases.alibi(1)},
        {"bias": biases.relative(torch.randn(1, 2 * R + 1), max_distance=R)},
    ]
    _assert_compiled_flex_matches_naive(q, k, v, cases)


def _assert_compiled_flex_matches_naive(q, k, v, cases) -> None:
    """Each case, computed by FlexAttention itself (no fallback warning), equals naive."""
    for kw in cases:
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            a = qkv.attend(q, k, v, backend="flex", **kw).output
            b = qkv.attend(q, k, v, backend="naive", **kw).output
        assert not _fallback_warnings(caught)  # FlexAttention itself computed it
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_flex_failure_falls_back_for_that_call_only(monkeypatch):
    """Issue 8: a FlexAttention error gives the tiled answer with a warning; the next call tries flex again."""
    monkeypatch.setenv("QKV_FLEX", "1")  # small CPU problem: try FlexAttention all the same
    tries = []

    def flaky(call):
        tries.append(call)
        if len(tries) == 1:
            raise RuntimeError("no compiler here")
        return qkv.functional.output.AttentionOutput(output=torch.full_like(call.q, 7.0))  # a stand-in answer

    monkeypatch.setattr(flex_mod, "_flex", flaky)
    q, k, v = _qkv()
    kw = {"mask": M.causal(), "bias": biases.alibi(2)}
    with torch.no_grad():
        with pytest.warns(UserWarning, match="FlexAttention failed"):
            a = qkv.attend(q, k, v, backend="flex", **kw).output
        want = qkv.attend(q, k, v, backend="tiled", **kw).output
        torch.testing.assert_close(a, want)
        assert len(tries) == 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = qkv.attend(q, k, v, backend="flex", **kw).output
    assert not _fallback_warnings(caught)
    assert len(tries) == 2  # no global switch: FlexAttention was tried again
    assert (again == 7.0).all()


def test_flex_supports_only_dot_products():
    q, k, v = _qkv()
    call = qkv.kernels.AttentionCall.build(q, k, v, score=qkv.scores.Additive(16))
    assert flex_mod.flex_unsupported(call) is not None
    with pytest.raises(ValueError, match="'flex'"):
        qkv.attend(q, k, v, score=qkv.scores.Additive(16), backend="flex")


def test_flex_cpu_backward_falls_back_to_tiled():
    q, k, v = _qkv(requires_grad=True)
    kw = {"mask": M.causal(align="bottom_right"), "bias": biases.alibi(2)}
    a = qkv.attend(q, k, v, backend="flex", **kw).output  # CPU + gradient: the tiled kernel computes it
    b = qkv.attend(q, k, v, backend="naive", **kw).output
    torch.testing.assert_close(a, b)
    ga = torch.autograd.grad(a.sum(), [q, k, v])
    gb = torch.autograd.grad(b.sum(), [q, k, v])
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.slow
def test_flex_compiled_forward_matches_naive_on_cpu(monkeypatch):
    """Compiles FlexAttention (tens of seconds on CPU): causal + ALiBi, and window & padding with rows masked out."""
    monkeypatch.setenv("QKV_FLEX", "1")
    q, k, v = _qkv()
    cases = [
        {"mask": M.causal(align="bottom_right"), "bias": biases.alibi(2, align="top_left")},
        {"mask": M.window(5, align="top_left") & M.padding(torch.tensor([56, 0])), "score": "cosine"},
    ]
    _assert_compiled_flex_matches_naive(q, k, v, cases)


def test_flex_falls_back_where_flexattention_cannot_run(monkeypatch):
    """float64, local-p, 3-D inputs, small CPU problems: the tiled kernel answers, with the same numbers."""
    monkeypatch.setattr(flex_mod, "_flex", lambda call: pytest.fail("FlexAttention should not be compiled here"))
    q, k, v = (t.double() for t in _qkv())
    cases = [
        (q, k, v, {"mask": M.causal(align="top_left")}),
        (q, k, v, {"modifier": GaussianWindow(torch.rand(2, 2, 40, dtype=torch.float64) * 56, 4)}),
        (q[0], k[0], v[0], {"bias": biases.alibi(2, align="top_left")}),
        (q.float(), k.float(), v.float(), {"mask": M.window(3, align="top_left")}),  # small: not worth compiling on CPU
    ]
    for q_, k_, v_, kw in cases:
        with torch.no_grad():
            a = qkv.attend(q_, k_, v_, backend="flex", **kw).output
            b = qkv.attend(q_, k_, v_, backend="naive", **kw).output
        torch.testing.assert_close(a, b)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_flex_and_tiled_on_cuda_match_naive():
    q, k, v = _qkv(requires_grad=True, device="cuda")
    kw = {"mask": M.window(8, align="top_left") & M.causal(align="top_left"),
          "bias": biases.Alibi(torch.tensor([0.5, 0.25]).cuda(), "top_left")}
    ref = qkv.attend(q, k, v, backend="naive", **kw).output
    for backend in ("flex", "tiled"):
        out = qkv.attend(q, k, v, backend=backend, **kw).output
        torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
        g = torch.autograd.grad(out.sum(), [q, k, v])
        gr = torch.autograd.grad(ref.sum(), [q, k, v], retain_graph=True)
        for x, y in zip(g, gr, strict=True):
            torch.testing.assert_close(x, y, atol=2e-4, rtol=1e-3)
