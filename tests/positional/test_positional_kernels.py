"""Every positional scheme on the tiled kernel equals the naive kernel, forward and backward, without an (L, S) tile."""

from __future__ import annotations

import pytest
import torch

import qkv
from qkv.functional.biases import Bias
from qkv.positional import Rotary, alibi, relative, t5

H, L, D = 2, 300, 8  # L > the tiled kernel's 256-row dot tiles: several tiles per row and column


class _Spy(Bias):
    """Wraps a lazy bias and records the tiles a kernel asks for."""

    def __init__(self, inner: Bias) -> None:
        self.inner, self.tiles = inner, []

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        self.tiles.append((q1 - q0) * (k1 - k0))
        return self.inner.tile(q0, q1, k0, k1, L=L, S=S, device=device)

    def depends(self):
        return self.inner.depends()

    def parameters(self):
        return self.inner.parameters()


def _bias(name: str):
    g = torch.Generator().manual_seed(1)
    if name == "alibi":
        return alibi(H)
    if name == "relative":
        return relative(torch.nn.Parameter(torch.randn(H, 9, generator=g, dtype=torch.float64)), max_distance=4)
    if name == "t5":
        return t5(torch.nn.Parameter(torch.randn(H, 32, generator=g, dtype=torch.float64)), bidirectional=False)
    return None


@pytest.mark.parametrize("name", ["alibi", "relative", "t5", "rotary"])
def test_tiled_equals_naive(name):
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, H, L, D, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = _bias(name)
    rot = Rotary(D)
    qq, kk = (rot(q), rot(k)) if name == "rotary" else (q, k)
    spy = None if bias is None else _Spy(bias)
    mask = qkv.masks.causal()
    out = qkv.attend(qq, kk, v, bias=spy, mask=mask, backend="tiled").output
    ref = qkv.attend(qq, kk, v, bias=bias, mask=mask, backend="naive").output
    torch.testing.assert_close(out, ref)
    inputs = [q, k, v, *([] if bias is None else bias.parameters())]
    grads = torch.autograd.grad(out.square().sum(), inputs, retain_graph=True)  # rotary: q, k share the graph
    for g, r in zip(grads, torch.autograd.grad(ref.square().sum(), inputs), strict=True):
        torch.testing.assert_close(g, r)
    if spy is not None:
        assert max(spy.tiles) < L * L
