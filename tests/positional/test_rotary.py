"""RoPE against the paper's rotation matrix, its relative property, offsets, and with every kernel."""

from __future__ import annotations

import math

import pytest
import torch

import qkv
from qkv.positional import Rotary, apply_rotary, rotary_frequencies


def paper_rotation(p: int, d: int, base: float = 10000.0) -> torch.Tensor:
    """Su et al. 2021, eq. 34: the block-diagonal R_{Θ,p} acting on adjacent pairs (x_{2i}, x_{2i+1})."""
    R = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):
        theta = base ** (-2 * i / d)
        c, s = math.cos(p * theta), math.sin(p * theta)
        R[2 * i, 2 * i], R[2 * i, 2 * i + 1] = c, -s
        R[2 * i + 1, 2 * i], R[2 * i + 1, 2 * i + 1] = s, c
    return R


def test_interleaved_is_the_papers_rotation_matrix():
    d = 8
    x = torch.randn(6, d, dtype=torch.float64)
    out = apply_rotary(x, torch.arange(6), interleaved=True)
    for p in range(6):
        torch.testing.assert_close(out[p], paper_rotation(p, d) @ x[p])


def test_rotate_half_is_the_same_rotation_on_permuted_features():
    d = 8
    x = torch.randn(2, 5, d, dtype=torch.float64)
    perm = torch.stack((torch.arange(d // 2), torch.arange(d // 2) + d // 2), dim=-1).flatten()  # (0, 4, 1, 5, ...)
    half = apply_rotary(x, torch.arange(5), interleaved=False)
    inter = apply_rotary(x[..., perm], torch.arange(5), interleaved=True)
    torch.testing.assert_close(half[..., perm], inter)


@pytest.mark.parametrize("interleaved", [False, True])
def test_scores_depend_only_on_the_position_difference(interleaved):
    torch.manual_seed(0)
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    rot = Rotary(16, interleaved=interleaved)

    def score(m, n):
        return (rot(q[None], positions=torch.tensor([m])) @ rot(k[None], positions=torch.tensor([n])).T).item()

    for m, n in [(0, 3), (5, 2), (7, 7)]:
        for shift in (1, 10, 1000):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-9)
    assert score(0, 3) != pytest.approx(score(0, 4), abs=1e-6)  # positions do matter
    x = torch.randn(3, 16, dtype=torch.float64)
    torch.testing.assert_close(rot(x).norm(dim=-1), x.norm(dim=-1))  # a rotation


def test_offset_and_partial_rotation():
    x = torch.randn(2, 3, 7, 12)
    rot = Rotary(8)
    torch.testing.assert_close(rot(x[:, :, 4:], offset=4), rot(x)[:, :, 4:])
    torch.testing.assert_close(rot(x)[..., 8:], x[..., 8:])  # features past dim pass through
    assert not torch.allclose(rot(x)[..., 1:, :8], x[..., 1:, :8])


def test_frequencies_are_the_papers():
    torch.testing.assert_close(rotary_frequencies(8), torch.tensor([1.0, 0.1, 0.01, 0.001],
                                                                   dtype=torch.float64))


def test_multihead_with_rotary_equals_a_manual_reference():
    torch.manual_seed(0)
    E, H, L = 16, 2, 6
    mha = qkv.MultiHeadAttention(E, H, rotary=Rotary(8, interleaved=True)).double()
    x = torch.randn(2, L, E, dtype=torch.float64)
    out = mha(x, mask=qkv.masks.causal()).output
    q = mha.q_proj(x).view(2, L, H, 8).transpose(1, 2)
    k = mha.k_proj(x).view(2, L, H, 8).transpose(1, 2)
    v = mha.v_proj(x).view(2, L, H, 8).transpose(1, 2)
    R = torch.stack([paper_rotation(p, 8) for p in range(L)])  # (L, d, d)
    q, k = torch.einsum("lij,bhlj->bhli", R, q), torch.einsum("lij,bhlj->bhli", R, k)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(8)
    s = s.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    ref = mha.out_proj((s.softmax(-1) @ v).transpose(1, 2).reshape(2, L, E))
    torch.testing.assert_close(out, ref)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="dim must be even"):
        Rotary(7)
    with pytest.raises(ValueError, match=r"rotary\.dim"):
        qkv.MultiHeadAttention(16, 4, rotary=Rotary(8))
    with pytest.raises(TypeError, match="rotary"):
        qkv.MultiHeadAttention(16, 4, rotary="rope")
    with pytest.raises(ValueError, match="offset"):
        Rotary(4)(torch.randn(1, 2, 4), offset=-2)
