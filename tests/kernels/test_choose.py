"""What ``backend="auto"`` picks, and that each pick gives the naive numbers."""

from __future__ import annotations

import importlib

import pytest
import torch

import qkv
from qkv import kernels
from qkv import masks as M
from qkv.functional.local import GaussianWindow

tiled_mod = importlib.import_module("qkv.kernels.tiled")


def _call(L, S, *, H=8, D=16, **kwargs):
    q = torch.randn(1, H, L, D)
    k = torch.randn(1, H, S, D)
    v = torch.randn(1, H, S, D)
    return kernels.AttentionCall.build(q, k, v, **kwargs)


def test_dense_dot_product_stays_on_sdpa():
    assert kernels.choose(_call(2048, 2048)) == "sdpa"
    assert kernels.choose(_call(2048, 2048, mask=M.causal())) == "sdpa"


def test_narrow_window_goes_tiled_only_when_large():
    assert kernels.choose(_call(4096, 4096, mask=M.window(64))) == "tiled"
    assert kernels.choose(_call(64, 64, mask=M.window(4))) == "sdpa"
    assert kernels.choose(_call(4096, 4096, mask=M.window(2048))) == "sdpa"  # most of the plane


def test_additive_goes_tiled_when_the_hidden_tensor_is_large():
    big = qkv.scores.Additive(16)
    assert kernels.choose(_call(1024, 1024, score=big)) == "tiled"
    assert kernels.choose(_call(4, 4, H=1, score=big)) == "naive"


def test_weights_requested_stay_naive():
    big = qkv.scores.Additive(16)
    assert kernels.choose(_call(1024, 1024, score=big, return_weights=True)) == "naive"
    assert kernels.choose(_call(2048, 2048, return_weights=True)) == "naive"


def test_plain_function_score_capturing_a_parameter_stays_naive_with_gradients():
    w = torch.nn.Parameter(torch.ones(()))

    def captures(q, k):
        return w * (q @ k.transpose(-1, -2))

    def pure(q, k):
        return q @ k.transpose(-1, -2)

    call = _call(2048, 2048, score=captures)
    assert kernels.choose(call) == "naive"  # the tiled kernel could not give w its gradient
    assert "captures tensors requiring grad" in kernels.BACKENDS["tiled"].unsupported(call)
    with torch.no_grad():
        assert kernels.choose(call) == "tiled"
    assert kernels.choose(_call(2048, 2048, score=pure)) == "tiled"  # nothing captured: nothing lost


def test_captured_parameter_of_a_closure_score_gets_its_gradient():
    """q, k, v need no gradient, but the closure's weight does: auto must not lose it."""
    w = torch.randn(8, 8, requires_grad=True)
    q = torch.randn(1, 1, 2048, 8)
    out = qkv.attend(q, q, q, score=lambda a, b: (a @ w) @ b.transpose(-1, -2)).output
    assert out.requires_grad
    out.sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_local_p_goes_tiled_when_large():
    pos = torch.arange(2048.0).expand(1, 8, 2048)
    assert kernels.choose(_call(2048, 2048, modifier=GaussianWindow(pos, 8))) == "tiled"


@pytest.mark.parametrize("case", ["window", "additive", "local_p"])
def test_auto_matches_naive_on_the_tiled_path(case, monkeypatch):
    monkeypatch.setattr(kernels, "TILED_MIN_ELEMENTS", 1)
    monkeypatch.setitem(tiled_mod.DEFAULT_TILES, "dot", (64, 64))
    used = []
    real = kernels.BACKENDS["tiled"]
    monkeypatch.setitem(
        kernels.BACKENDS, "tiled", kernels.Backend(lambda call: used.append(1) or real.run(call), real.unsupported)
    )
    L = S = 768
    H, D = 2, 8
    q, k, v = (torch.randn(1, H, n, D, requires_grad=True) for n in (L, S, S))
    kw = {
        "window": {"mask": M.window(16)},
        "additive": {"score": qkv.scores.Additive(D, hidden_dim=8)},
        "local_p": {"modifier": GaussianWindow(torch.rand(1, H, L) * S, 8)},
    }[case]
    if case == "local_p":
        kw["mask"] = M.padding(torch.tensor([700]))
    outs = []
    for backend in ("auto", "naive"):
        out = qkv.attend(q, k, v, backend=backend, **kw).output
        outs.append((out, *torch.autograd.grad(out.square().sum(), [q, k, v])))
    assert used == [1]
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
