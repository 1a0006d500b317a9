"""Two-dimensional positions for self-attention over image patches or pixels.

Shape legend: ``B`` batch, ``H`` heads, ``Gh x Gw`` the grid (rows x columns), ``P = Gh * Gw`` grid
positions in row-major order, ``C`` prefix tokens before them (e.g. a class token), ``L = S = C + P``
tokens, ``D`` embedding width, ``Ry``/``Rx`` the clipping distances, ``Tq``/``Tk`` a tile.

Seed 003 (Lee's lecture): an image is a set of vectors (pixels, or patches — :mod:`qkv.layers.patches`),
and self-attention over them needs their 2-D positions. Two forms:

* :func:`sinusoidal_2d` — fixed absolute embeddings: the first ``D/2`` features are the 1-D sinusoid
  of Vaswani et al. 2017 §3.5 (:func:`qkv.positional.sinusoidal`) of the row, the other ``D/2`` that
  of the column (the 2-D sine-cosine embedding of MAE, He et al. 2022, and MoCo v3, Chen et al. 2021);
* :class:`GridRelativeBias` — a learned relative-position bias indexed by the 2-D offset
  ``(dy, dx) = (row_j - row_i, col_j - col_i)``, :math:`b_{h,ij} = \\hat B_{h,\\,dy + R_y,\\,dx + R_x}`
  (Swin Transformer, Liu et al. 2021, eq. 4, its table :math:`\\hat B \\in \\mathbb{R}^{(2M-1)\\times(2M-1)}`;
  with ``max_distance`` the offsets are clipped as in Shaw et al. 2018). It is a lazy
  :class:`~qkv.functional.biases.Bias`: each tile computes its offsets from the token indices, so the
  tiled kernel never builds ``(L, S)``. Prefix tokens have no grid position and get bias 0.
  :class:`GridRelativePositionBias` is the ``nn.Module`` owning the table (pass it as
  ``MultiHeadAttention(..., position_bias=...)``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.functional.biases import Bias
from qkv.functional.checks import check_positive_int
from qkv.functional.lazy import FlexFn
from qkv.positional.sinusoidal import sinusoidal

__all__ = ["GridRelativeBias", "GridRelativePositionBias", "grid_positions", "grid_relative", "sinusoidal_2d"]


def _check_grid(owner: str, grid: object) -> tuple[int, int]:
    ok = isinstance(grid, tuple) and len(grid) == 2 and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in grid
    )
    if not ok:
        raise ValueError(f"{owner}: grid must be a pair (rows, columns) of positive ints, got {grid!r}")
    return grid


def _check_prefix(owner: str, prefix: object) -> int:
    if isinstance(prefix, bool) or not isinstance(prefix, int) or prefix < 0:
        raise ValueError(f"{owner}: prefix must be an int >= 0, got {prefix!r}")
    return prefix


def grid_positions(grid: tuple[int, int], *, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """``(rows, cols)``, each ``(P,)``: the row and column of every grid position in row-major order."""
    gh, gw = _check_grid("grid_positions", grid)
    p = torch.arange(gh * gw, device=device)  # (P,)
    return p // gw, p % gw


def sinusoidal_2d(
    grid: tuple[int, int], dim: int, *, base: float = 10000.0, dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """2-D sine-cosine position embeddings, ``(P, D)`` in row-major order: ``[PE(row) ; PE(col)]``.

    Args:
        grid: ``(Gh, Gw)`` rows and columns.
        dim: ``D``, a multiple of 4 (each half is a 1-D sinusoid of even width ``D/2``).
        base: the wavelength base (10000, Vaswani et al. 2017).

    Returns:
        ``(Gh * Gw, D)``; row ``r * Gw + c`` is :math:`[PE_{D/2}(r);\\ PE_{D/2}(c)]` with the interleaved
        ``sin, cos`` of :func:`qkv.positional.sinusoidal`. Add it to the patch embeddings.
    """
    check_positive_int("sinusoidal_2d: dim", dim)
    if dim % 4:
        raise ValueError(f"sinusoidal_2d: dim must be a multiple of 4 (two even halves), got {dim}")
    rows, cols = grid_positions(_check_grid("sinusoidal_2d", grid), device=device)
    half = dim // 2
    return torch.cat([sinusoidal(rows, half, base=base, dtype=dtype),
                      sinusoidal(cols, half, base=base, dtype=dtype)], dim=-1)  # (P, D)


class GridRelativeBias(Bias):
    """A learned 2-D relative-position bias :math:`b_{h,ij} = T_{h,\\,dy+R_y,\\,dx+R_x}`, shape ``(H, L, S)``.

    Args:
        table: ``(H, 2 Ry + 1, 2 Rx + 1)``; may be an ``nn.Parameter`` (gradients reach it on every kernel).
        grid: ``(Gh, Gw)``; tokens ``C .. C + P - 1`` are the grid positions in row-major order.
        prefix: ``C``, tokens before the grid (class tokens): their bias is 0.

    The clipping distances are read from the table: ``Ry = (table.shape[1] - 1) / 2``, and offsets are
    clamped to ``[-Ry, Ry]`` (``Ry = Gh - 1`` is Swin's unclipped table).
    """

    def __init__(self, table: Tensor, *, grid: tuple[int, int], prefix: int = 0) -> None:
        self.grid = _check_grid("grid_relative", grid)
        self.prefix = _check_prefix("grid_relative", prefix)
        ok = isinstance(table, Tensor) and table.dim() == 3 and table.dtype.is_floating_point
        if not ok or table.shape[1] % 2 == 0 or table.shape[2] % 2 == 0:
            got = (table.dtype, tuple(table.shape)) if isinstance(table, Tensor) else type(table).__name__
            raise ValueError(f"grid_relative: table must be a float tensor (H, 2 Ry + 1, 2 Rx + 1), got {got}")
        self.table = table
        self.max_distance = ((table.shape[1] - 1) // 2, (table.shape[2] - 1) // 2)
        self.length = self.prefix + self.grid[0] * self.grid[1]  # L = S

    def _offsets(self, i: Tensor, j: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Table indices ``(dy + Ry, dx + Rx)`` and the grid-pair flag for token indices ``i``, ``j`` (broadcast)."""
        gw, (ry, rx), c = self.grid[1], self.max_distance, self.prefix
        pi, pj = (i - c).clamp(min=0), (j - c).clamp(min=0)  # grid positions (a prefix token reads position 0)
        dy = (pj // gw - pi // gw).clamp(-ry, ry) + ry
        dx = (pj % gw - pi % gw).clamp(-rx, rx) + rx
        return dy, dx, (i >= c) & (j >= c)

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        i = torch.arange(q0, q1, device=device)[:, None]  # (Tq, 1)
        j = torch.arange(k0, k1, device=device)[None, :]  # (1, Tk)
        dy, dx, on_grid = self._offsets(i, j)  # (Tq, Tk) each
        values = self.table.to(device)[:, dy, dx]  # (H, Tq, Tk)
        return values * on_grid.to(values.dtype)  # prefix rows and columns: 0

    def depends(self) -> tuple[bool, bool]:
        return False, self.table.shape[0] > 1

    def flex(self, *, B, H, L, S, device) -> FlexFn:
        table = self.table.to(device).expand(H, -1, -1).contiguous()  # (H, 2Ry+1, 2Rx+1): one row serves all heads

        def bias_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
            dy, dx, on_grid = self._offsets(q, kv)
            return torch.where(on_grid, table[h, dy, dx], torch.zeros((), dtype=table.dtype, device=device))

        return bias_mod

    def parameters(self) -> list[Tensor]:
        return [self.table] if self.table.requires_grad else []

    def shape(self, L, S, *, device):
        return (self.table.shape[0], self.length, self.length)

    def __repr__(self) -> str:
        return (f"grid_relative(H={self.table.shape[0]}, grid={self.grid}, prefix={self.prefix}, "
                f"max_distance={self.max_distance})")


def _table_shape(grid: tuple[int, int], max_distance: int | tuple[int, int] | None) -> tuple[int, int]:
    if max_distance is None:
        return 2 * grid[0] - 1, 2 * grid[1] - 1
    pair = max_distance if isinstance(max_distance, tuple) else (max_distance, max_distance)
    if len(pair) != 2 or any(isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in pair):
        raise ValueError(f"grid_relative: max_distance must be None, an int >= 0 or a pair of them, "
                         f"got {max_distance!r}")
    return 2 * pair[0] + 1, 2 * pair[1] + 1


def grid_relative(
    table: Tensor | int, *, grid: tuple[int, int], prefix: int = 0, max_distance: int | tuple[int, int] | None = None,
) -> GridRelativeBias:
    """A 2-D relative-position bias over a ``(Gh, Gw)`` grid of tokens (after ``prefix`` other tokens).

    Args:
        table: ``(H, 2 Ry + 1, 2 Rx + 1)`` weights, or ``H`` (a zero-initialised ``nn.Parameter`` that no
            module owns — prefer :class:`GridRelativePositionBias`, which registers it).
        max_distance: ``R`` or ``(Ry, Rx)`` clipping distances when ``table`` is ``H`` (default: the grid's
            extent, ``(Gh - 1, Gw - 1)``, nothing clipped).
    """
    grid = _check_grid("grid_relative", grid)
    if not isinstance(table, Tensor):
        h = check_positive_int("grid_relative: num_heads (table)", table)
        table = nn.Parameter(torch.zeros(h, *_table_shape(grid, max_distance)))
    return GridRelativeBias(table, grid=grid, prefix=prefix)


class GridRelativePositionBias(nn.Module):
    """A module owning the 2-D relative-position table ``weight (H, 2Ry+1, 2Rx+1)``; calling it returns the bias.

    Pass it as ``MultiHeadAttention(..., position_bias=GridRelativePositionBias(H, grid=(Gh, Gw)))``.
    The table starts at zero (every offset unbiased); Swin initialises it with a truncated normal of
    std 0.02 — call ``nn.init.trunc_normal_(m.weight, std=0.02)`` for that.
    """

    def __init__(
        self, num_heads: int, *, grid: tuple[int, int], prefix: int = 0,
        max_distance: int | tuple[int, int] | None = None, device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.grid = _check_grid("GridRelativePositionBias", grid)
        self.prefix = _check_prefix("GridRelativePositionBias", prefix)
        shape = _table_shape(self.grid, max_distance)
        self.weight = nn.Parameter(torch.zeros(self.num_heads, *shape, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        """Zeros: every offset starts unbiased."""
        nn.init.zeros_(self.weight)

    def forward(self) -> GridRelativeBias:
        return GridRelativeBias(self.weight, grid=self.grid, prefix=self.prefix)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, grid={self.grid}, prefix={self.prefix}, table={tuple(self.weight.shape)}"
