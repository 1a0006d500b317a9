"""The Triton kernels against the naive reference, forward and backward, under Triton's CPU interpreter.

Without a GPU, ``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` before any kernel is defined, so
the same ``@triton.jit`` code runs on CPU tensors (slowly: shapes are tiny, tiles are 16x16 so that
``L = 13``/``S = 19`` and the like span ragged tiles). On a CUDA machine the same tests run
compiled. Skipped when triton is not installed.
"""

from __future__ import annotations

import importlib

import pytest
import torch

pytest.importorskip("triton")

import qkv
from qkv import masks as M
from qkv import positional
from qkv.functional.local import Around, GaussianWindow, local_attention
from qkv.functional.modifiers import WeightModifier
from qkv.kernels.call import AttentionCall
from qkv.kernels.triton import triton_unsupported

triton_autograd = importlib.import_module("qkv.kernels.triton.autograd")
plan_mod = importlib.import_module("qkv.kernels.triton.plan")
bounds_mod = importlib.import_module("qkv.kernels.triton.bounds")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
F32 = torch.float32


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """16 x 16 tiles for every score kind (tl.dot's smallest), so small problems span several tiles, and
    additive hidden layers walked 4 units at a time (A = 5 or 6: a ragged second chunk)."""
    for kind in list(triton_autograd.BLOCKS):
        monkeypatch.setitem(triton_autograd.BLOCKS, kind, (16, 16))
        monkeypatch.setitem(triton_autograd.BACKWARD_BLOCKS, kind, (16, 16))
    monkeypatch.setattr(triton_autograd, "ADDITIVE_CHUNK", 4)


def _qkv(batch=(2, 1), L=13, S=19, D=8, Dv=5, dtype=F32):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(*batch, L, D, generator=g).to(DEVICE, dtype).requires_grad_()
    k = torch.randn(*batch, S, D, generator=g).to(DEVICE, dtype).requires_grad_()
    v = torch.randn(*batch, S, Dv, generator=g).to(DEVICE, dtype).requires_grad_()
    return q, k, v


def _compare(inputs, run, *, atol=2e-5, rtol=1e-4):
    """``run(backend)`` for naive and triton: outputs and the gradients of ``inputs`` agree, all finite."""
    ref, got = run("naive"), run("triton")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), ref.float(), atol=atol, rtol=rtol)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1)).to(ref.device, ref.dtype)
    ga = torch.autograd.grad(got, inputs, g, allow_unused=True)
    gb = torch.autograd.grad(ref, inputs, g, allow_unused=True)
    for a, b in zip(ga, gb, strict=True):
        if b is None:
            assert a is None or not a.any()
            continue
        assert a is not None and torch.isfinite(a).all()
        scale = max(1.0, float(b.float().abs().max()))  # parameter gradients sum many rounded terms
        torch.testing.assert_close(a.float(), b.float(), atol=atol * scale, rtol=rtol)
    return got


def _masks(B=2, L=13, S=19):
    g = torch.Generator().manual_seed(2)
    keep = torch.rand(B, S, generator=g) > 0.3
    keep[1] = False  # batch row 1 has no key at all: every row of it is fully masked
    dense = torch.rand(B, 1, L, S, generator=g) > 0.5
    dense[0, 0, 3] = False  # one fully masked query row
    return {
        "none": None,
        "causal_tl": M.causal(align="top_left"),
        "window_br_causal": M.window(3) & M.causal(),
        "padding": M.padding(torch.tensor([0, 7])),
        "key_padding": M.key_padding(keep.to(DEVICE)),
        "tensor": dense.to(DEVICE),
        "union": M.causal(align="top_left") | M.window(2, align="top_left"),  # materialised
    }


@pytest.mark.parametrize("mask_name", list(_masks()))
def test_scaled_dot_matches_naive(mask_name):
    q, k, v = _qkv()
    mask = _masks()[mask_name]
    _compare([q, k, v], lambda b: qkv.attend(q, k, v, mask=mask, backend=b).output)


@pytest.mark.parametrize("bias_shape", [(2, 1, 13, 19), (19,)])
def test_float64_with_a_bias_tensor_and_its_gradient(bias_shape):
    q, k, v = _qkv(dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    bias = torch.randn(bias_shape, generator=g, dtype=torch.float64)
    bias = bias.masked_fill(torch.rand(bias_shape, generator=g) < 0.2, float("-inf")).to(DEVICE).requires_grad_()
    _compare([q, k, v, bias], lambda b: qkv.attend(q, k, v, bias=bias, mask=M.causal(), backend=b).output,
             atol=1e-10, rtol=1e-9)


def test_lazy_bias_is_materialised_with_its_parameter_gradient():
    q, k, v = _qkv(batch=(2, 2))
    table = torch.randn(2, 9, generator=torch.Generator().manual_seed(6)).to(DEVICE).requires_grad_()
    bias = positional.relative(table, max_distance=4)
    _compare([q, k, v, table], lambda b: qkv.attend(q, k, v, bias=bias + positional.alibi(2), backend=b).output)


def test_default_tiles_forward_and_backward(monkeypatch):
    """The shipped tile sizes (64 forward, 32 backward for dot products; the backward's own key ranges)."""
    monkeypatch.undo()
    q, k, v = _qkv(batch=(1, 1), L=70, S=45)
    _compare([q, k, v], lambda b: qkv.attend(q, k, v, mask=M.window(20), backend=b).output)


def test_fully_masked_rows_give_zeros_and_zero_gradients():
    q, k, v = _qkv()
    out = qkv.attend(q, k, v, mask=M.padding(torch.tensor([0, 7])), backend="triton").output
    assert (out[0] == 0).all()
    dq, dk, dv = torch.autograd.grad(out.sum(), [q, k, v])
    assert (dq[0] == 0).all() and (dk[0] == 0).all() and (dv[0] == 0).all()
    assert (dk[1, :, 7:] == 0).all() and (dv[1, :, 7:] == 0).all()  # padded keys


@pytest.mark.parametrize("mask_name", ["none", "causal_tl", "key_padding"])
def test_additive_matches_naive_with_parameter_gradients(mask_name):
    q, k, v = _qkv(L=13, S=19, D=6)
    score = qkv.scores.Additive(6, key_dim=6, hidden_dim=5, hidden_bias=True).to(DEVICE)
    with torch.no_grad():
        score.hidden_bias.normal_(generator=torch.Generator().manual_seed(3))
    mask = _masks()[mask_name]
    params = [score.w_q, score.w_k, score.v, score.hidden_bias]
    _compare([q, k, v, *params], lambda b: qkv.attend(q, k, v, score=score, mask=mask, backend=b).output)


def test_bilinear_matches_naive_with_weight_gradient():
    q, _, v = _qkv(D=8)
    k2 = torch.randn(2, 1, 19, 6).to(DEVICE).requires_grad_()  # different key width: W is (6, 8)
    score = qkv.scores.Bilinear(8, 6).to(DEVICE)
    _compare([q, k2, v, score.weight],
             lambda b: qkv.attend(q, k2, v, score=score, mask=M.causal(), backend=b).output)


@pytest.mark.parametrize("mode", ["local-p", "local-m"])
def test_local_attention_matches_naive_with_position_gradient(mode):
    q, k, v = _qkv(L=13, S=37)
    g = torch.Generator().manual_seed(4)
    position = (torch.rand(2, 1, 13, generator=g) * 37).to(DEVICE).requires_grad_()
    pad = M.padding(torch.tensor([37, 20]))
    _compare([q, k, v, position], lambda b: local_attention(
        q, k, v, position=position, window=4, mode=mode, score="scaled_dot", mask=pad, backend=b).output)


def test_local_p_is_luongs_gaussian_after_the_softmax():
    """Eq. 10 by hand: softmax over the window, times the Gaussian, not renormalised."""
    q, k, v = _qkv(batch=(1, 1), L=5, S=17)
    position = torch.tensor([[[2.0, 5.5, 8.0, 16.0, 0.3]]], device=DEVICE)
    out = qkv.attend(q, k, v, modifier=GaussianWindow(position, 3), backend="triton").output
    s = (q @ k.transpose(-1, -2)) / 8**0.5  # (1, 1, L, S)
    j = torch.arange(17, device=DEVICE, dtype=F32)
    dist = j - position[..., None]  # (1, 1, L, S)
    inside = dist.abs() <= 3
    a = torch.softmax(s.masked_fill(~inside, float("-inf")), -1) * torch.exp(-dist**2 / (2 * 1.5**2))
    torch.testing.assert_close(out, a @ v, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    q, k, v = _qkv(dtype=dtype)
    tol = {"atol": 3e-2, "rtol": 3e-2} if dtype == torch.float16 else {"atol": 6e-2, "rtol": 6e-2}
    out = _compare([q, k, v], lambda b: qkv.attend(q, k, v, mask=M.window(4), backend=b).output, **tol)
    assert out.dtype == dtype
    score = qkv.scores.Additive(8, hidden_dim=4).to(DEVICE, dtype)
    _compare([q, k, v, score.v], lambda b: qkv.attend(q, k, v, score=score, backend=b).output, **tol)


def test_batch_shapes_broadcast_and_none():
    q, _, _ = _qkv(batch=(1, 2))
    _, k, v = _qkv(batch=(2, 2))
    _compare([q, k, v], lambda b: qkv.attend(q, k, v, mask=M.causal(), backend=b).output)
    q, k, v = _qkv(batch=(), L=7, S=9)
    _compare([q, k, v], lambda b: qkv.attend(q, k, v, backend=b).output)


def test_tiles_outside_the_mask_are_never_read():
    """NaN keys and values in tiles outside every query's range: read once, they would poison the output."""
    q, k, v = _qkv(batch=(1, 1), L=16, S=64)
    with torch.no_grad():
        k[..., 32:, :] = float("nan")
        v[..., 32:, :] = float("nan")
    around = Around(torch.linspace(0.0, 12.0, 16, device=DEVICE).reshape(1, 1, 16), 3)  # Luong's window: keys < 16
    union = M.causal(align="top_left") | M.window(2, align="top_left")  # materialised: skipped by its kv_bounds
    for mask in (M.window(2, align="top_left"), M.padding(torch.tensor([20])), M.causal(align="top_left"), around,
                 union):
        out = qkv.attend(q, k, v, mask=mask, backend="triton").output
        assert torch.isfinite(out).all(), mask
        dq, dk, dv = torch.autograd.grad(out.sum(), [q, k, v])
        assert torch.isfinite(dq).all() and (dk[..., 32:, :] == 0).all() and (dv[..., 32:, :] == 0).all()


def test_key_ranges_follow_the_band():
    call = AttentionCall.build(*(t.detach() for t in _qkv(batch=(1,), L=256, S=256)), mask=M.window(8))
    spec = plan_mod.compile_call(call)[0]
    ranges = bounds_mod.key_ranges(spec, 16, torch.device("cpu"))  # (1, 16, 2)
    m0 = torch.arange(16) * 16
    torch.testing.assert_close(ranges[0, :, 0], (m0 - 8).clamp(min=0).to(torch.int32))
    torch.testing.assert_close(ranges[0, :, 1], (m0 + 15 + 9).clamp(max=256).to(torch.int32))
    tiles = bounds_mod.query_tile_ranges(ranges, 256, 16)[0]  # (16, 2): each key tile meets its neighbours only
    assert ((tiles[:, 1] - tiles[:, 0]) <= 3).all()


class _Half(WeightModifier):
    def tile(self, q0, q1, k0, k1, *, L, S, device):
        return torch.full((q1 - q0, k1 - k0), 0.5, device=device)


def _refusal(**kwargs):
    q, k, v = (t.detach() for t in _qkv())
    return triton_unsupported(AttentionCall.build(q, k, v, **kwargs))


def test_refusals_name_the_reason(monkeypatch):
    assert "softmax" in _refusal(normalize="sparsemax")
    assert "dropout" in _refusal(dropout=0.1)
    assert "weights" in _refusal(return_weights=True)
    assert "kind 'pairwise'" in _refusal(score=lambda a, b: a @ b.transpose(-1, -2))
    assert "GaussianWindow" in _refusal(modifier=_Half())
    q, k, v = (t.detach() for t in _qkv(D=300))
    assert "at most 256" in triton_unsupported(AttentionCall.build(q, k, v))
    q = torch.zeros(1, 1, 1, 8, device=DEVICE).expand(256, 257, 1, 8)  # 65792 rows: over CUDA's grid limit
    assert "at most 65535 batch rows" in triton_unsupported(AttentionCall.build(q, q, q))
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"backend 'triton' cannot compute this call: .*softmax only"):
        qkv.attend(q, k, v, normalize="relu", backend="triton")
    monkeypatch.setattr(plan_mod, "triton_available", lambda: False)
    assert "not installed" in _refusal()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA tensors are always accepted")
def test_refuses_cpu_tensors_without_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "CUDA device" in _refusal()


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA auto may pick triton")
def test_auto_never_picks_triton_on_cpu():
    q, k, v = (t.detach() for t in _qkv())
    score = qkv.scores.Additive(8)
    from qkv import kernels

    assert kernels.choose(AttentionCall.build(q, k, v, score=score)) != "triton"


def test_auto_picks_triton_where_it_is_meant_to_win():
    """The CUDA rule (on a CPU applied to interpreter calls: the rule itself, not the device check)."""
    from qkv import kernels

    wins = kernels._triton_wins

    def call(L, S, **kw):
        q, k, v = (torch.randn(1, 8, n, 16, device=DEVICE) for n in (L, S, S))
        return AttentionCall.build(q, k, v, **kw)

    def n(c):
        return 8 * c.L * c.S

    additive = qkv.scores.Additive(16).to(DEVICE)
    for c in (call(256, 256, score=additive), call(4096, 4096, mask=M.window(64)),
              call(1024, 1024, modifier=GaussianWindow(torch.full((1, 8, 1024), 300.0, device=DEVICE), 8))):
        assert wins(c, n(c))
    for c in (call(4096, 4096), call(4096, 4096, mask=M.causal()), call(64, 64, mask=M.window(4)),
              call(256, 256, score=additive, return_weights=True),
              call(1, 256, score=additive),  # a decoder's one-query step: too small to leave naive
              call(64, 64, modifier=GaussianWindow(torch.full((1, 8, 64), 30.0, device=DEVICE), 8))):
        assert not wins(c, n(c))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_picks_triton_for_additive_on_cuda():
    from qkv import kernels

    q, k, v = (torch.randn(2, 4, 512, 8, device=DEVICE) for _ in range(3))  # (B, H, L, D): 2·4·512²·A ≥ 2^22
    assert kernels.choose(AttentionCall.build(q, k, v, score=qkv.scores.Additive(8).to(DEVICE))) == "triton"


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [F32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("score_name", ["scaled_dot", "cosine", "additive", "bilinear"])
@pytest.mark.parametrize("mask_name", list(_masks()))
def test_sweep(score_name, mask_name, dtype):
    q, k, v = _qkv(L=37, S=29, D=8, dtype=dtype)
    score = {"scaled_dot": "scaled_dot", "cosine": "cosine", "additive": qkv.scores.Additive(8, hidden_dim=12),
             "bilinear": qkv.scores.Bilinear(8)}[score_name]
    params = list(score.parameters()) if isinstance(score, torch.nn.Module) else []
    if params:
        score = score.to(DEVICE, dtype)
        params = list(score.parameters())
    masks = _masks(L=37, S=29)
    tol = {"atol": 2e-5, "rtol": 1e-4} if dtype == F32 else {"atol": 8e-2, "rtol": 8e-2}
    _compare([q, k, v, *params],
             lambda b: qkv.attend(q, k, v, score=score, mask=masks[mask_name], backend=b).output, **tol)
