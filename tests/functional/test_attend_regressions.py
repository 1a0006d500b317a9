"""Regression tests for the issue-8 fixes to `qkv.attend` and its backends, and for the
``modifier=`` argument (Luong's local-p Gaussian) on the naive and tiled kernels."""

from __future__ import annotations

import math

import pytest
import torch

import qkv
from qkv import kernels
from qkv.functional import masks
from qkv.functional.local import GaussianWindow
from qkv.kernels import tiled as tiled_mod
from qkv.kernels.call import AttentionCall
from qkv.layers.scores import Additive

BACKENDS = ["naive", "sdpa", "tiled", "flex", "auto"]


def _randn(*shape, gen, dtype=torch.float32, requires_grad=False):
    t = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
    return t.requires_grad_(requires_grad)


def _qkv(B=2, H=2, L=3, S=5, D=4, Dv=3, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (
        _randn(B, H, L, D, gen=gen, dtype=dtype),
        _randn(B, H, S, D, gen=gen, dtype=dtype),
        _randn(B, H, S, Dv, gen=gen, dtype=dtype),
    )


# ----------------------------------------------------------------------------------------------
# (1) tensor biases of any rank (0-d, 1-d) broadcast on every backend
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "make_bias",
    [
        lambda S: torch.zeros(S),
        lambda S: torch.tensor(1.0),
        lambda S: torch.linspace(-1.0, 2.0, S),  # a non-constant (S,) bias moves the answer
    ],
    ids=["zeros_1d", "scalar_0d", "ramp_1d"],
)
def test_low_rank_tensor_bias_agrees_across_backends(backend, make_bias):
    q, k, v = _qkv()
    S = k.shape[-2]
    bias = make_bias(S)
    got = qkv.attend(q, k, v, bias=bias, backend=backend).output
    # the same bias written out as (L, S), on the reference backend
    want = qkv.attend(q, k, v, bias=bias.expand(q.shape[-2], S).clone(), backend="naive").output
    assert got.shape == want.shape == (2, 2, 3, 3)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want)
    if bias.dim() == 0 or bool((bias == 0).all()):  # a constant bias does not change a softmax
        torch.testing.assert_close(got, qkv.attend(q, k, v, backend="naive").output)


def test_ramp_bias_is_not_a_no_op():
    """The ramp case above has teeth: it differs from attention without a bias."""
    q, k, v = _qkv()
    a = qkv.attend(q, k, v, bias=torch.linspace(-1.0, 2.0, 5), backend="naive").output
    b = qkv.attend(q, k, v, backend="naive").output
    assert not torch.allclose(a, b)


# ----------------------------------------------------------------------------------------------
# (4) scale: a finite real number or None, on every backend; scale=0 with a causal mask
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_string_scale_is_a_type_error_naming_scale(backend):
    q, k, v = _qkv()
    with pytest.raises(TypeError, match="scale") as info:
        qkv.attend(q, k, v, scale="2", backend=backend)
    assert "'2'" in str(info.value)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_scale_is_a_value_error_naming_scale(backend, scale):
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="scale") as info:
        qkv.attend(q, k, v, scale=scale, backend=backend)
    assert repr(scale) in str(info.value)


@pytest.mark.parametrize("score", ["dot", "scaled_dot"])
def test_zero_scale_with_causal_mask_is_finite_and_agrees(score):
    """scale=0: uniform weights over the allowed keys. torch's is_causal path gives NaN there."""
    q, k, v = _qkv(L=4, S=4)
    outs = {
        b: qkv.attend(q, k, v, score=score, scale=0.0, mask=masks.causal(), backend=b).output
        for b in ("naive", "tiled", "sdpa", "auto")
    }
    # reference: query i averages the values of keys 0..i
    want = v.cumsum(-2) / torch.arange(1, 5, dtype=v.dtype)[:, None]
    for b, out in outs.items():
        assert torch.isfinite(out).all(), b
        torch.testing.assert_close(out, want, msg=lambda m, b=b: f"backend {b}: {m}")


# ----------------------------------------------------------------------------------------------
# (5) float16 dot products that overflow fp16 are accumulated in float32
# ----------------------------------------------------------------------------------------------


def test_float16_large_dot_scores_are_finite_and_agree():
    gen = torch.Generator().manual_seed(5)
    D = 64
    q = (150 * torch.randn(2, 2, 6, D, generator=gen)).half()
    k = (150 * torch.randn(2, 2, 7, D, generator=gen)).half()
    v = torch.randn(2, 2, 7, 5, generator=gen).half()
    # |q·k| reaches ~150² · 8 = 1.8e5 > fp16's max 65504: a naive fp16 matmul overflows
    scores32 = q.float() @ k.float().transpose(-1, -2)
    assert torch.isfinite(scores32).all() and (scores32.abs() > torch.finfo(torch.float16).max).any()
    outs = {b: qkv.attend(q, k, v, score="dot", backend=b).output for b in ("naive", "tiled", "sdpa")}
    ref = qkv.attend(q.double(), k.double(), v.double(), score="dot", backend="naive").output
    for b, out in outs.items():
        assert out.dtype == torch.float16, b
        assert torch.isfinite(out).all(), b
        torch.testing.assert_close(out, ref.half(), msg=lambda m, b=b: f"backend {b} vs float64: {m}")
        torch.testing.assert_close(out, outs["naive"], msg=lambda m, b=b: f"backend {b} vs naive: {m}")


# ----------------------------------------------------------------------------------------------
# (10) auto sizes an additive score by its hidden width A
# ----------------------------------------------------------------------------------------------


def _additive_call(A, L=512, S=512, D=4):
    n = L * S  # B = H = 1
    torch.manual_seed(0)
    score = Additive(D, hidden_dim=A)
    q, k, v = torch.randn(1, 1, L, D), torch.randn(1, 1, S, D), torch.randn(1, 1, S, 2)
    return AttentionCall.build(q, k, v, score=score), n


def test_choose_sizes_an_additive_score_by_its_hidden_width():
    with torch.no_grad():
        call, n = _additive_call(A=16)
        assert call.kind == "additive"
        assert n < kernels.TILED_MIN_ELEMENTS <= n * 16  # (L, S) is small, (L, S, A) is not
        assert kernels.choose(call) == "tiled"


@pytest.mark.parametrize("A", [1, 15])
def test_choose_keeps_small_additive_problems_on_naive(A):
    with torch.no_grad():
        call, n = _additive_call(A=A)
        assert n * A < kernels.TILED_MIN_ELEMENTS
        assert kernels.choose(call) == "naive"


# ----------------------------------------------------------------------------------------------
# (11) error messages say why
# ----------------------------------------------------------------------------------------------


def test_forced_sdpa_with_relu_says_softmax():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="sdpa") as info:
        qkv.attend(q, k, v, normalize="relu", backend="sdpa")
    assert "softmax" in str(info.value)


def test_forced_sdpa_with_return_weights_says_weights():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="sdpa") as info:
        qkv.attend(q, k, v, return_weights=True, backend="sdpa")
    assert "weights" in str(info.value)


def test_padding_mask_with_3d_inputs_names_its_real_shape():
    gen = torch.Generator().manual_seed(0)
    q, k, v = _randn(2, 4, 8, gen=gen), _randn(2, 5, 8, gen=gen), _randn(2, 5, 3, gen=gen)
    with pytest.raises(ValueError) as info:
        qkv.attend(q, k, v, mask=masks.padding(torch.tensor([2, 5])))
    msg = str(info.value)
    assert "padding" in msg
    assert "(2, 1, 1, 5)" in msg  # the (B, 1, 1, S) shape a padding mask broadcasts as
    assert "(2, 4, 5)" in msg  # and the scores' shape it does not broadcast to


# ----------------------------------------------------------------------------------------------
# modifier=: Luong's local-p Gaussian, naive vs tiled, forward and gradients (float64)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tiles", [None, (4, 3)], ids=["default_tiles", "small_tiles"])
@pytest.mark.parametrize("score", ["dot", "scaled_dot", "additive"])
def test_gaussian_window_modifier_naive_equals_tiled(score, tiles, monkeypatch):
    if tiles is not None:
        for kind in list(tiled_mod.DEFAULT_TILES):
            monkeypatch.setitem(tiled_mod.DEFAULT_TILES, kind, tiles)
    gen = torch.Generator().manual_seed(3)
    B, L, S, D, W = 2, 7, 11, 4, 2
    q = _randn(B, 1, L, D, gen=gen, dtype=torch.float64, requires_grad=True)
    k = _randn(B, 1, S, D, gen=gen, dtype=torch.float64, requires_grad=True)
    v = _randn(B, 1, S, 3, gen=gen, dtype=torch.float64, requires_grad=True)
    # fractional centres, some near the edges so windows are clipped
    p = (torch.rand(B, 1, L, generator=gen, dtype=torch.float64) * (S + 2) - 1).requires_grad_()
    if score == "additive":
        torch.manual_seed(3)
        score_fn = Additive(D, hidden_dim=3).double()
    else:
        score_fn = score
    g = _randn(B, 1, L, 3, gen=gen, dtype=torch.float64)

    def run(backend):
        out = qkv.attend(q, k, v, score=score_fn, modifier=GaussianWindow(p, W), backend=backend).output
        return out, torch.autograd.grad((out * g).sum(), (q, k, v, p))

    (want, want_grads), (got, got_grads) = run("naive"), run("tiled")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want)
    for name, a, b in zip("qkvp", got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, msg=lambda m, name=name: f"gradient w.r.t. {name}: {m}")
    assert want_grads[3].abs().sum() > 0  # the position gets a gradient through the Gaussian


def test_gaussian_window_modifier_has_teeth():
    """The modifier changes the answer: it is not silently ignored by either backend."""
    q, k, v = _qkv(B=1, H=1, L=5, S=9, dtype=torch.float64)
    p = torch.tensor([[[0.0, 2.5, 4.0, 6.0, 8.0]]], dtype=torch.float64)
    plain = qkv.attend(q, k, v, backend="naive").output
    for backend in ("naive", "tiled"):
        out = qkv.attend(q, k, v, modifier=GaussianWindow(p, 2), backend=backend).output
        assert not torch.allclose(out, plain), backend
    # naive weights: zero outside |s - p| <= D, Gaussian-scaled (not renormalised) inside
    w = qkv.attend(q, k, v, modifier=GaussianWindow(p, 2), return_weights=True, backend="naive").weights
    s = torch.arange(9, dtype=torch.float64)
    outside = (s - p[..., None]).abs() > 2
    assert (w[outside] == 0).all()
    soft = qkv.attend(q, k, v, mask=~outside, return_weights=True, backend="naive").weights
    gauss = torch.exp(-((s - p[..., None]) ** 2) / (2 * (2 / 2) ** 2))
    torch.testing.assert_close(w, soft * gauss * ~outside)
    assert math.isclose(float(soft.sum(-1).mean()), 1.0)


# ---- found in review


def test_no_keys_still_checks_the_backend():
    q, k, v = torch.randn(1, 3, 4), torch.randn(1, 0, 4), torch.randn(1, 0, 2)
    with pytest.raises(ValueError, match=r"sdpa.*weights"):
        qkv.attend(q, k, v, return_weights=True, backend="sdpa")
    out = qkv.attend(q, k, v, return_weights=True)
    assert out.output.shape == (1, 3, 2) and out.weights.shape == (1, 3, 0) and torch.all(out.output == 0)


def test_a_huge_integer_scale_is_a_value_error_naming_scale():
    q = torch.randn(1, 2, 4)
    with pytest.raises(ValueError, match="scale"):
        qkv.attend(q, q, q, scale=10**400)


def test_non_finite_window_centres_are_rejected():
    from qkv.functional.local import GaussianWindow, local_attention

    q = torch.randn(1, 3, 4)
    p = torch.tensor([[0.0, float("nan"), 1.0]])
    with pytest.raises(ValueError, match="position"):
        local_attention(q, q, q, position=p, window=1, mode="local-m")
    with pytest.raises(ValueError, match="position"):
        GaussianWindow(p, 1)


def test_forced_tiled_refuses_a_closure_that_would_lose_gradients():
    w = torch.randn(4, 4, requires_grad=True)
    q = torch.randn(2, 3, 4, requires_grad=True)
    with pytest.raises(ValueError, match=r"tiled.*captures tensors requiring grad"):
        qkv.attend(q, q, q, score=lambda a, b: a @ w @ b.transpose(-1, -2), backend="tiled")
