"""The tiled online-softmax kernel against the naive reference, forward and backward.

Small shapes and small tiles (so that every problem spans several query and key tiles, with
ragged last tiles); float64 so the comparisons are tight.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

import qkv
from qkv import masks as M
from qkv import positional as biases
from qkv.functional.local import GaussianWindow, local_attention
from qkv.kernels.naive import naive

tiled_mod = importlib.import_module("qkv.kernels.tiled")
F64 = torch.float64


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 4 queries x 3 keys for every score kind."""
    for kind in list(tiled_mod.DEFAULT_TILES):
        monkeypatch.setitem(tiled_mod.DEFAULT_TILES, kind, (4, 3))


def _qkv(B=2, H=3, L=11, S=13, D=5, Dv=4, dtype=F64):
    q = torch.randn(B, H, L, D, dtype=dtype, requires_grad=True)
    k = torch.randn(B, H, S, D, dtype=dtype, requires_grad=True)
    v = torch.randn(B, H, S, Dv, dtype=dtype, requires_grad=True)
    return q, k, v


def _sq_dist(q, k):
    return -(q.unsqueeze(-2) - k.unsqueeze(-3)).pow(2).sum(-1)  # (..., L, S)


class _MLPScore(torch.nn.Module):
    """A parametric callable the kernel knows nothing about: s = w . (q * k) + c."""

    def __init__(self, D):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(D, dtype=F64))
        self.c = torch.nn.Parameter(torch.randn((), dtype=F64))

    def forward(self, q, k):
        return torch.einsum("...ld,...sd,d->...ls", q, k, self.w) + self.c


def _scores(D=5):
    return {
        "dot": "dot",
        "scaled_dot": "scaled_dot",
        "cosine": "cosine",
        "additive": qkv.scores.Additive(D, hidden_dim=6).double(),
        "additive_bias": qkv.scores.Additive(D, hidden_dim=6, hidden_bias=True).double(),
        "bilinear": qkv.scores.Bilinear(D).double(),
        "scaled_dot_module": qkv.scores.ScaledDot(scale=0.7),
        "callable": _sq_dist,
        "module": _MLPScore(D),
    }


def _masks(B=2, L=11, S=13):
    dense = torch.rand(B, 1, L, S) > 0.4
    return {
        "none": None,
        "causal_tl": M.causal(align="top_left"),
        "causal_br": M.causal(align="bottom_right"),
        "window": M.window(2, align="top_left"),
        "window_br_causal": M.window(3, align="bottom_right") & M.causal(align="bottom_right"),
        "padding": M.padding(torch.tensor([0, 7])),
        "tensor": dense,
        "tensor_or_causal": dense | M.causal(align="top_left"),
        "padding_and_tensor": M.padding(torch.tensor([13, 4])) & dense,
    }


def _grads(out, inputs):
    torch.manual_seed(1)
    g = torch.randn_like(out)
    return torch.autograd.grad(out, inputs, g, allow_unused=True)


def _compare(inputs, run, atol=1e-10):
    """Run ``run(backend)`` for naive and tiled; compare outputs and gradients of ``inputs``."""
    ref = run("naive")
    got = run("tiled")
    torch.testing.assert_close(got, ref, atol=atol, rtol=1e-8)
    assert torch.isfinite(got).all()
    for a, b in zip(_grads(got, inputs), _grads(ref, inputs), strict=True):
        if b is None:
            assert a is None or (a == 0).all()
        else:
            assert a is not None
            assert torch.isfinite(a).all()
            torch.testing.assert_close(a, b, atol=atol, rtol=1e-8)


@pytest.mark.parametrize("mask_name", list(_masks()))
@pytest.mark.parametrize("score_name", list(_scores()))
def test_tiled_matches_naive(small_tiles, score_name, mask_name):
    q, k, v = _qkv()
    score = _scores()[score_name]
    mask = _masks()[mask_name]
    params = list(score.parameters()) if isinstance(score, torch.nn.Module) else []
    _compare(
        [q, k, v, *params],
        lambda backend: qkv.attend(q, k, v, score=score, mask=mask, backend=backend).output,
    )


@pytest.mark.parametrize("score_name", ["dot", "additive", "callable"])
def test_explicit_scale_and_broadcast_batch(small_tiles, score_name):
    q = torch.randn(2, 1, 9, 5, dtype=F64, requires_grad=True)  # broadcast over heads
    k = torch.randn(1, 3, 10, 5, dtype=F64, requires_grad=True)
    v = torch.randn(10, 4, dtype=F64, requires_grad=True)  # shared by every batch and head
    score = _scores()[score_name]
    mask = M.causal(align="top_left")
    _compare(
        [q, k, v],
        lambda backend: qkv.attend(q, k, v, score=score, scale=0.3, mask=mask, backend=backend).output,
    )


def _biases(H=3, L=11, S=13):
    table = torch.randn(H, 7, dtype=F64, requires_grad=True)
    tensor = torch.randn(1, H, L, S, dtype=F64, requires_grad=True)
    with_inf = torch.randn(L, S, dtype=F64)
    with_inf[2] = float("-inf")  # one query row forbidden entirely
    with_inf[:, 5] = float("-inf")
    return {
        "tensor": (tensor, [tensor]),
        "tensor_row": (tensor[..., :1, :], [tensor]),
        "tensor_with_inf": (with_inf, []),
        "alibi": (biases.alibi(H, align="top_left"), []),
        "alibi_br": (biases.alibi(torch.linspace(0.1, 1, H, dtype=F64), align="bottom_right"), []),
        "relative": (biases.relative(table, max_distance=3, align="top_left"), [table]),
        "relative_plus_alibi": (
            biases.relative(table, max_distance=3, align="top_left") + biases.alibi(H, align="top_left"), [table]
        ),
    }


@pytest.mark.parametrize("mask_name", ["none", "causal_br", "padding"])
@pytest.mark.parametrize("bias_name", list(_biases()))
@pytest.mark.parametrize("score_name", ["scaled_dot", "additive", "module"])
def test_tiled_biases_match_naive(small_tiles, score_name, bias_name, mask_name):
    q, k, v = _qkv()
    bias, bias_params = _biases()[bias_name]
    score = _scores()[score_name]
    mask = _masks()[mask_name]
    params = list(score.parameters()) if isinstance(score, torch.nn.Module) else []
    _compare(
        [q, k, v, *params, *bias_params],
        lambda backend: qkv.attend(q, k, v, score=score, mask=mask, bias=bias, backend=backend).output,
    )


@pytest.mark.parametrize("bias_name", ["alibi", "relative", "tensor_with_inf"])
def test_sdpa_accepts_lazy_biases(bias_name):
    q, k, v = _qkv()
    bias, _ = _biases()[bias_name]
    ref = qkv.attend(q, k, v, bias=bias, mask=M.causal(align="top_left"), backend="naive").output
    got = qkv.attend(q, k, v, bias=bias, mask=M.causal(align="top_left"), backend="sdpa").output
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("score_name", ["dot", "bilinear", "additive"])
@pytest.mark.parametrize("with_padding", [False, True])
def test_local_p_matches_luong_reference(small_tiles, score_name, with_padding):
    """Luong eq. 10: window |s - p| <= D, softmax, times the Gaussian, no renormalising."""
    B, L, S, D = 2, 9, 20, 3
    q, k, v = (torch.randn(B, 2, n, 5, dtype=F64, requires_grad=True) for n in (L, S, S))
    position = (torch.rand(B, 2, L, dtype=F64) * (S + 4) - 2).requires_grad_()  # some windows hang off the ends
    score = _scores()[score_name]
    mask = M.padding(torch.tensor([S, 6])) if with_padding else None
    params = list(score.parameters()) if isinstance(score, torch.nn.Module) else []
    inputs = [q, k, v, position, *params]
    ref = local_attention(q, k, v, position=position, window=D, mode="local-p", score=score, mask=mask).output
    ref_grads = _grads(ref, inputs)
    for backend in ("naive", "tiled"):
        got = qkv.attend(
            q, k, v, score=score, mask=mask, modifier=GaussianWindow(position, D), backend=backend
        ).output
        torch.testing.assert_close(got, ref, atol=1e-10, rtol=1e-8)
        for a, b in zip(_grads(got, inputs), ref_grads, strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_local_p_skips_tiles_outside_the_windows(monkeypatch):
    monkeypatch.setitem(tiled_mod.DEFAULT_TILES, "pairwise", (8, 8))
    calls = []

    def score(q, k):
        calls.append(k.shape[-2])
        return _sq_dist(q, k)

    L = S = 256
    q, k, v = (torch.randn(1, n, 4, dtype=F64) for n in (L, S, S))
    position = torch.arange(L, dtype=F64).unsqueeze(0)  # local-m style centres
    qkv.attend(q, k, v, score=score, modifier=GaussianWindow(position, 4), backend="tiled")
    dense_tiles = (L // 8) * (S // 8)
    assert 0 < len(calls) <= 3 * (L // 8) < dense_tiles


def test_window_skips_tiles(monkeypatch):
    monkeypatch.setitem(tiled_mod.DEFAULT_TILES, "pairwise", (16, 16))
    calls = []

    def score(q, k):
        calls.append(1)
        return _sq_dist(q, k)

    L = S = 512
    q, k, v = (torch.randn(1, n, 4, dtype=F64) for n in (L, S, S))
    qkv.attend(q, k, v, score=score, mask=M.window(8), backend="tiled")
    assert len(calls) <= 3 * (L // 16)  # O(L w / tile^2), not (L / 16)^2 = 1024


@pytest.mark.parametrize("backend", ["naive", "sdpa", "tiled"])
@pytest.mark.parametrize("score_name", ["scaled_dot", "additive", "callable"])
def test_fully_masked_rows_are_zero_with_zero_gradients(small_tiles, backend, score_name):
    if backend == "sdpa" and score_name != "scaled_dot":
        pytest.skip("sdpa computes dot-product scores only")
    q, k, v = _qkv(B=2, H=1, L=6, S=5)
    mask = torch.ones(2, 1, 6, 5, dtype=torch.bool)
    mask[0, :, 1] = False  # one empty row
    mask[1] = False  # a whole empty batch entry
    score = _scores()[score_name]
    out = qkv.attend(q, k, v, score=score, mask=mask, backend=backend).output
    assert torch.isfinite(out).all()
    assert (out[0, :, 1] == 0).all() and (out[1] == 0).all()
    gq, gk, gv = torch.autograd.grad(out.sum(), [q, k, v])
    for g in (gq, gk, gv):
        assert torch.isfinite(g).all()
    assert (gq[0, :, 1] == 0).all() and (gq[1] == 0).all()
    assert (gk[1] == 0).all() and (gv[1] == 0).all()


@pytest.mark.parametrize("score_name", ["scaled_dot", "cosine", "additive_bias", "bilinear", "module"])
def test_gradcheck_tiled(score_name, monkeypatch):
    """Float64 gradcheck through mask, relative bias (learned table) and local-p (learned centres)."""
    for kind in list(tiled_mod.DEFAULT_TILES):
        monkeypatch.setitem(tiled_mod.DEFAULT_TILES, kind, (2, 4))
    q, k, v = _qkv(B=1, H=2, L=5, S=6, D=3, Dv=2)
    score = _scores(D=3)[score_name]
    params = list(score.parameters()) if isinstance(score, torch.nn.Module) else []
    table = torch.randn(2, 5, dtype=F64, requires_grad=True)
    position = (torch.rand(1, 2, 5, dtype=F64) * 6).requires_grad_()

    def f(q, k, v, table, position, *ps):
        return qkv.attend(
            q, k, v, score=score, mask=M.causal(align="bottom_right"), bias=biases.relative(table, max_distance=2),
            modifier=GaussianWindow(position, 2), backend="tiled",
        ).output

    assert torch.autograd.gradcheck(f, (q, k, v, table, position, *params), atol=1e-7)


@given(
    L=st.integers(1, 20),
    S=st.integers(1, 20),
    tq=st.integers(1, 8),
    tk=st.integers(1, 8),
    width=st.integers(0, 6),
    align=st.sampled_from(["top_left", "bottom_right"]),
    kind=st.sampled_from(["window", "causal", "window_causal", "none"]),
    score_name=st.sampled_from(["scaled_dot", "additive"]),
)
def test_tiled_property_random_shapes_and_tiles(L, S, tq, tk, width, align, kind, score_name):
    torch.manual_seed(L * 31 + S)
    q, k, v = _qkv(B=1, H=2, L=L, S=S, D=3, Dv=2)
    mask = {
        "window": M.window(width, align=align),
        "causal": M.causal(align=align),
        "window_causal": M.window(width, align=align) & M.causal(align=align),
        "none": None,
    }[kind]
    score = _scores(D=3)[score_name]
    outs = []
    for backend in ("naive", "tiled"):
        call = qkv.kernels.AttentionCall.build(q, k, v, score=score, mask=mask)
        out = (tiled_mod.tiled_attention(call, tile_q=tq, tile_k=tk) if backend == "tiled"
               else naive(call).output)
        outs.append((out, *torch.autograd.grad(out.square().sum(), [q, k, v])))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("score_name", ["scaled_dot", "additive"])
def test_tiled_never_builds_a_quadratic_tensor(score_name):
    """Forward + backward: every intermediate is O((L + S) D + tile), far below (L, S) or (L, S, A)."""
    B, H, D, A = 1, 2, 8, 8
    L = S = 2048 if score_name == "scaled_dot" else 512
    q, k, v = (torch.randn(B, H, n, D, requires_grad=True) for n in (L, S, S))
    score = "scaled_dot" if score_name == "scaled_dot" else qkv.scores.Additive(D, hidden_dim=A)
    tq, tk = tiled_mod.DEFAULT_TILES["dot" if score_name == "scaled_dot" else "additive"]
    mode = _LargestTensor()
    with mode:
        out = qkv.attend(q, k, v, score=score, mask=M.causal(), backend="tiled").output
        out.sum().backward()
    linear = B * H * (L + S) * max(D, A)
    tile = B * H * min(tq, L) * min(tk, S) * (A if score_name == "additive" else 1)
    assert mode.largest <= max(linear, tile)
    assert mode.largest * 4 < B * H * L * S * (A if score_name == "additive" else 1)


def test_tiled_errors():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="backend 'tiled'"):
        qkv.attend(q, k, v, backend="tiled", return_weights=True)
    with pytest.raises(ValueError, match="backend 'tiled' cannot compute this call: it computes softmax only"):
        qkv.attend(q, k, v, backend="tiled", normalize="relu")
    with pytest.raises(TypeError, match="modifier"):
        qkv.attend(q, k, v, modifier=3)
    with pytest.raises(ValueError, match="bias"):
        qkv.attend(q, k, v, bias=biases.alibi(5))  # 5 heads vs H = 3
    with pytest.raises(ValueError, match="tile_q"):
        call = qkv.kernels.AttentionCall.build(q, k, v, score="dot")
        tiled_mod.tiled_attention(call, tile_q=0)


def test_float32_and_bfloat16_run_close_to_naive():
    q, k, v = (t.detach().float() for t in _qkv(L=40, S=50))
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        mask = M.causal(align="top_left")
        a = qkv.attend(q.to(dtype), k.to(dtype), v.to(dtype), mask=mask, backend="tiled").output
        b = qkv.attend(q, k, v, mask=mask, backend="naive").output
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), b, atol=tol, rtol=tol)


@pytest.mark.slow  # compiles the additive tile functions (torch.compile)
def test_compiled_additive_tiles_match_naive(monkeypatch):
    """The torch.compile'd additive tile functions (used for large float32 problems), ragged tiles padded."""
    monkeypatch.setenv("QKV_COMPILE_TILES", "1")
    monkeypatch.setitem(tiled_mod.DEFAULT_TILES, "additive", (8, 16))
    score = qkv.scores.Additive(8, hidden_dim=16, hidden_bias=True)
    q, k, v = (torch.randn(1, 2, n, 8, requires_grad=True) for n in (21, 37, 37))
    inputs = [q, k, v, *score.parameters()]
    outs = []
    for backend in ("tiled", "naive"):
        out = qkv.attend(q, k, v, score=score, mask=M.causal(align="bottom_right"), backend=backend).output
        outs.append((out, *_grads(out, inputs)))
    assert not tiled_mod._COMPILE_FAILED
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
