"""2-D positions: sine-cosine embeddings and the lazy 2-D relative-position bias (against loops over the grid)."""

from __future__ import annotations

import math

import pytest
import torch

import qkv
from qkv.kernels.call import AttentionCall
from qkv.kernels.tiled import tiled_attention
from qkv.positional.grid import GridRelativePositionBias, grid_relative, sinusoidal_2d


def test_sinusoidal_2d_is_row_then_column_sinusoids():
    gh, gw, d = 3, 5, 8
    pe = sinusoidal_2d((gh, gw), d)
    assert pe.shape == (gh * gw, d)
    for r in range(gh):
        for c in range(gw):
            want = []
            for pos in (r, c):  # Vaswani et al. 2017 §3.5 with width d/2, interleaved sin/cos
                for i in range(d // 4):
                    angle = pos / 10000 ** (2 * i / (d // 2))
                    want += [math.sin(angle), math.cos(angle)]
            torch.testing.assert_close(pe[r * gw + c], torch.tensor(want), atol=1e-6, rtol=0)
    # the dot product of two embeddings depends only on the 2-D offset (a sum of cosines of it)
    a, b = pe[0] @ pe[1 * gw + 2], pe[1 * gw + 1] @ pe[2 * gw + 3]
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="multiple of 4"):
        sinusoidal_2d((2, 2), 6)
    with pytest.raises(ValueError, match="grid"):
        sinusoidal_2d((2,), 8)


def _reference_bias(table, grid, prefix):
    """A loop over token pairs: b[h, i, j] = table[h, clip(dy) + Ry, clip(dx) + Rx], 0 on prefix tokens."""
    H, ty, tx = table.shape
    ry, rx = (ty - 1) // 2, (tx - 1) // 2
    n = prefix + grid[0] * grid[1]
    out = torch.zeros(H, n, n, dtype=table.dtype)
    for i in range(prefix, n):
        for j in range(prefix, n):
            (yi, xi), (yj, xj) = divmod(i - prefix, grid[1]), divmod(j - prefix, grid[1])
            dy, dx = max(-ry, min(ry, yj - yi)), max(-rx, min(rx, xj - xi))
            out[:, i, j] = table[:, dy + ry, dx + rx]
    return out


@pytest.mark.parametrize("prefix,max_distance", [(0, None), (1, None), (2, (1, 2))])
def test_grid_bias_tiles_equal_a_loop(prefix, max_distance):
    grid, H = (3, 4), 2
    bias = grid_relative(H, grid=grid, prefix=prefix, max_distance=max_distance)
    with torch.no_grad():
        bias.table.normal_(generator=torch.Generator().manual_seed(0))
    n = prefix + 12
    want = _reference_bias(bias.table.detach(), grid, prefix)
    torch.testing.assert_close(bias.materialize(n, n).detach(), want)
    tile = bias.tile(1, 7, 3, n, L=n, S=n, device=torch.device("cpu")).detach()
    torch.testing.assert_close(tile, want[:, 1:7, 3:n])
    # the FlexAttention form on index grids
    mod = bias.flex(B=1, H=H, L=n, S=n, device=torch.device("cpu"))
    h, q, kv = torch.arange(H)[:, None, None], torch.arange(n)[None, :, None], torch.arange(n)[None, None, :]
    torch.testing.assert_close(mod(torch.tensor(0), h, q, kv).detach(), want)


def test_grid_bias_on_every_kernel_and_its_gradient():
    """Tiled (small tiles) and naive agree, with gradients to q, k, v and the learned table (float64)."""
    grid, prefix, H = (4, 5), 1, 2
    n = prefix + 20
    g = torch.Generator().manual_seed(1)
    module = GridRelativePositionBias(H, grid=grid, prefix=prefix, max_distance=2, dtype=torch.float64)
    with torch.no_grad():
        module.weight.normal_(generator=g)
    q, k, v = (torch.randn(2, H, n, 8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    params = [q, k, v, module.weight]
    ref = qkv.attend(q, k, v, bias=_reference_bias(module.weight, grid, prefix), backend="naive").output
    tiled = tiled_attention(AttentionCall.build(q, k, v, bias=module()), tile_q=4, tile_k=8)
    naive = qkv.attend(q, k, v, bias=module(), backend="naive").output
    go = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    want = torch.autograd.grad(ref, params, go)
    for out in (tiled, naive):
        torch.testing.assert_close(out, ref)
        for a, b in zip(torch.autograd.grad(out, params, go), want, strict=True):
            torch.testing.assert_close(a, b)


def test_with_multihead_attention_and_errors():
    grid = (3, 3)
    layer = qkv.MultiHeadAttention(16, 2, position_bias=GridRelativePositionBias(2, grid=grid))
    assert any(p is layer.position_bias.weight for p in layer.parameters())
    x = torch.randn(2, 9, 16)
    out = layer(x)
    out.output.sum().backward()
    assert layer.position_bias.weight.grad is not None and layer.position_bias.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="grid_relative"):  # 10 tokens, a 3 x 3 grid
        layer(torch.randn(2, 10, 16))
    with pytest.raises(ValueError, match="table"):
        grid_relative(torch.zeros(2, 4, 5), grid=grid)
    with pytest.raises(ValueError, match="prefix"):
        grid_relative(2, grid=grid, prefix=-1)
    with pytest.raises(ValueError, match="max_distance"):
        grid_relative(2, grid=grid, max_distance=-1)
