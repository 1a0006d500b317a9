"""Sinusoidal positions against the paper's formula, and the fixed linear map M_k (Vaswani et al. 2017, §3.5)."""

from __future__ import annotations

import math

import pytest
import torch

from qkv.positional import SinusoidalPositions, sinusoidal, sinusoidal_shift


def test_values_are_the_papers_formula():
    L, D = 7, 10
    pe = sinusoidal(L, D, dtype=torch.float64)
    for p in range(L):
        for i in range(D // 2):
            angle = p / 10000 ** (2 * i / D)
            assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-12)
            assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-12)


@pytest.mark.parametrize("k", [1, 3, 17, -5])
def test_a_shift_is_one_fixed_linear_map_for_every_position(k):
    D = 16
    p = torch.arange(40, 90)
    M = sinusoidal_shift(k, D, dtype=torch.float64)
    shifted = sinusoidal(p, D, dtype=torch.float64) @ M.T  # PE(p) -> M_k PE(p), for every p with one M_k
    torch.testing.assert_close(shifted, sinusoidal(p + k, D, dtype=torch.float64))
    assert not torch.allclose(M, torch.eye(D, dtype=torch.float64))


def test_shift_maps_compose_and_are_rotations():
    D = 8
    M2, M3, M5 = (sinusoidal_shift(k, D, dtype=torch.float64) for k in (2, 3, 5))
    torch.testing.assert_close(M2 @ M3, M5)
    torch.testing.assert_close(M5 @ M5.T, torch.eye(D, dtype=torch.float64))


def test_module_adds_the_encodings_at_an_offset():
    x = torch.randn(2, 5, 8)
    mod = SinusoidalPositions(8)
    torch.testing.assert_close(mod(x), x + sinusoidal(5, 8))
    torch.testing.assert_close(mod(x[:, 3:], offset=3), mod(x)[:, 3:])
    torch.testing.assert_close(mod(x, positions=torch.arange(5)), mod(x))
    assert list(mod.parameters()) == []


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="dim must be even"):
        sinusoidal(4, 7)
    with pytest.raises(ValueError, match="base"):
        SinusoidalPositions(8, base=1)
    with pytest.raises(ValueError, match="offset"):
        SinusoidalPositions(8)(torch.randn(1, 2, 8), offset=-1)
    with pytest.raises(ValueError, match=r"x must be"):
        SinusoidalPositions(8)(torch.randn(1, 2, 6))
