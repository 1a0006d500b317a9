"""The FlexAttention backend: lazy masks and biases as mask_mod / score_mod, and its fallbacks."""

from __future__ import annotations

import pytest
import torch

import qkv
from qkv import biases
from qkv import masks as M
from qkv.kernels import flex as flex_mod
from qkv.kernels.local import GaussianWindow


def _qkv(B=2, H=2, L=40, S=56, D=16, requires_grad=False, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    return tuple(
        torch.randn(B, H, n, D, generator=gen).to(device).requires_grad_(requires_grad) for n in (L, S, S)
    )


def test_mask_and_score_mods_match_the_lazy_tiles():
    L, S = 7, 9
    b, h = torch.tensor(1), torch.tensor(1)
    i = torch.arange(L)[:, None]
    j = torch.arange(S)[None, :]
    dense = torch.rand(2, 1, L, S) > 0.5
    pos = torch.rand(2, 2, L) * S
    for mask in (M.causal(align="bottom_right"), M.window(2) & M.padding(torch.tensor([9, 4])), dense | M.causal(),
                 GaussianWindow(pos, 2).mask() & M.causal()):
        mod = flex_mod.mask_mod(mask, L, S)
        want = mask.materialize(L, S).expand(2, 2, L, S)[1, 1]
        assert torch.equal(mod(b, h, i, j).expand(L, S), want)
    table = torch.randn(2, 5)
    for bias in (biases.alibi(2, align="bottom_right"), biases.relative(table, max_distance=2) + biases.alibi(2)):
        mod = flex_mod.score_mod(bias, L, S)
        want = bias.materialize(L, S)[1]
        torch.testing.assert_close(mod(torch.zeros(L, S), b, h, i, j), want)


def test_flex_supports_only_dot_products():
    q, k, v = _qkv()
    call = qkv.kernels.AttentionCall(
        q=q, k=k, v=v, score=qkv.functional.scores.dot, score_name=None, scale=None, mask=None, bias=None,
        normalize="softmax", dropout=0.0, straight_through=False, generator=None, return_weights=False,
        return_scores=False, batch_shape=(2, 2), score_spec=qkv.scores.Additive(16),
    )
    assert not flex_mod.flex_supports(call)
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
        {"mask": M.causal(align="bottom_right"), "bias": biases.alibi(2)},
        {"mask": M.window(5) & M.padding(torch.tensor([56, 0])), "score": "cosine"},
    ]
    for kw in cases:
        with torch.no_grad():
            a = qkv.attend(q, k, v, backend="flex", **kw).output
            b = qkv.attend(q, k, v, backend="naive", **kw).output
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    assert not flex_mod._FLEX_FAILED


def test_flex_falls_back_where_flexattention_cannot_run(monkeypatch):
    """float64, local-p, 3-D inputs, small CPU problems: the tiled kernel answers, with the same numbers."""
    monkeypatch.setattr(flex_mod, "_flex", lambda call: pytest.fail("FlexAttention should not be compiled here"))
    q, k, v = (t.double() for t in _qkv())
    cases = [
        (q, k, v, {"mask": M.causal()}),
        (q, k, v, {"local_p": GaussianWindow(torch.rand(2, 2, 40, dtype=torch.float64) * 56, 4)}),
        (q[0], k[0], v[0], {"bias": biases.alibi(2)}),
        (q.float(), k.float(), v.float(), {"mask": M.window(3)}),  # small: not worth compiling on CPU
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
    kw = {"mask": M.window(8) & M.causal(), "bias": biases.alibi(2).__class__(torch.tensor([0.5, 0.25]).cuda(),
                                                                              "top_left")}
    ref = qkv.attend(q, k, v, backend="naive", **kw).output
    for backend in ("flex", "tiled"):
        out = qkv.attend(q, k, v, backend=backend, **kw).output
        torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
        g = torch.autograd.grad(out.sum(), [q, k, v])
        gr = torch.autograd.grad(ref.sum(), [q, k, v], retain_graph=True)
        for x, y in zip(g, gr, strict=True):
            torch.testing.assert_close(x, y, atol=2e-4, rtol=1e-3)
