"""T5's bucketed relative-position bias against a transcription of the T5 code, on every kernel, lazily."""

from __future__ import annotations

import math

import pytest
import torch

import qkv
from qkv.positional import T5Bias, T5RelativeBias, relative_position_bucket, t5

CONFIGS = [(True, 32, 128), (False, 32, 128), (True, 8, 20), (False, 10, 7), (True, 6, 5)]


def t5_code_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """A line-by-line transcription of the T5 code's ``_relative_position_bucket`` (Hugging Face's torch port)."""
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    relative_position_if_large = max_exact + (
        torch.log(relative_position.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    relative_position_if_large = torch.min(
        relative_position_if_large, torch.full_like(relative_position_if_large, num_buckets - 1)
    )
    relative_buckets += torch.where(is_small, relative_position, relative_position_if_large)
    return relative_buckets


@pytest.mark.parametrize(("bidirectional", "num_buckets", "max_distance"), CONFIGS)
def test_buckets_equal_the_t5_code(bidirectional, num_buckets, max_distance):
    n = torch.arange(-400, 401)
    ours = relative_position_bucket(n, bidirectional=bidirectional, num_buckets=num_buckets,
                                    max_distance=max_distance)
    ref = t5_code_bucket(n, bidirectional, num_buckets, max_distance)
    assert torch.equal(ours, ref)
    assert int(ours.min()) >= 0 and int(ours.max()) == num_buckets - 1


def test_known_buckets_with_t5_defaults():
    b = lambda n, bidi: int(relative_position_bucket(torch.tensor(n), bidirectional=bidi))  # noqa: E731
    # bidirectional: 16 buckets per side, 8 exact; keys after the query use 16..31
    assert [b(0, True), b(-1, True), b(1, True), b(-7, True), b(-200, True), b(200, True)] == [0, 1, 17, 7, 15, 31]
    # causal: keys after the query all map to bucket 0; 16 exact, then log-spaced up to 31
    assert [b(3, False), b(-1, False), b(-15, False), b(-1000, False)] == [0, 1, 15, 31]


@pytest.mark.parametrize("align", ["top_left", "bottom_right"])
def test_lazy_bias_matches_a_naive_loop(align):
    H, L, S = 3, 5, 9
    table = torch.randn(H, 8)
    bias = t5(table, bidirectional=True, num_buckets=8, max_distance=20, align=align).materialize(L, S)
    off = 0 if align == "top_left" else S - L
    for i in range(L):
        for j in range(S):
            bucket = int(t5_code_bucket(torch.tensor(j - (i + off)), True, 8, 20))
            torch.testing.assert_close(bias[:, i, j], table[:, bucket])


class _Spy(T5Bias):
    """Records the extent of every tile a kernel asks for."""

    tiles: list

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        self.tiles.append((q1 - q0, k1 - k0))
        return super().tile(q0, q1, k0, k1, L=L, S=S, device=device)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_tiled_kernel_equals_naive_without_materialising_the_plane(bidirectional):
    torch.manual_seed(0)
    H, L, S, D = 2, 300, 300, 8
    q, k, v = (torch.randn(1, H, n, D, dtype=torch.float64, requires_grad=True) for n in (L, S, S))
    table = torch.nn.Parameter(torch.randn(H, 16, dtype=torch.float64))
    spy = _Spy(table, bidirectional=bidirectional, num_buckets=16, max_distance=64)
    spy.tiles = []
    mask = qkv.masks.causal() if not bidirectional else None
    out = qkv.attend(q, k, v, bias=spy, mask=mask, backend="tiled").output
    grads = torch.autograd.grad(out.square().sum(), [q, k, v, table])
    assert spy.tiles and max(a * b for a, b in spy.tiles) < L * S  # never the whole (L, S) plane
    ref_bias = t5(table, bidirectional=bidirectional, num_buckets=16, max_distance=64)
    ref = qkv.attend(q, k, v, bias=ref_bias, mask=mask, backend="naive").output
    ref_grads = torch.autograd.grad(ref.square().sum(), [q, k, v, table])
    torch.testing.assert_close(out, ref)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)


def test_flex_form_equals_the_tiles():
    H, L, S = 2, 4, 7
    bias = t5(torch.randn(H, 8), bidirectional=False, num_buckets=8, max_distance=16)
    fn = bias.flex(B=1, H=H, L=L, S=S, device=torch.device("cpu"))
    b, h = torch.zeros(1, 1, 1, 1, dtype=torch.long), torch.arange(H)[None, :, None, None]
    q, kv = torch.arange(L)[None, None, :, None], torch.arange(S)[None, None, None, :]
    torch.testing.assert_close(fn(b, h, q, kv), bias.materialize(L, S)[None])


def test_module_owns_its_table_and_works_in_multihead_attention():
    torch.manual_seed(0)
    pb = T5RelativeBias(2, num_buckets=8, max_distance=16)
    with torch.no_grad():
        pb.weight.normal_()
    mha = qkv.MultiHeadAttention(8, 2, position_bias=pb)
    assert any(p is pb.weight for p in mha.parameters())
    x = torch.randn(2, 5, 8)
    plain = qkv.MultiHeadAttention(8, 2)
    plain.load_state_dict({k: v for k, v in mha.state_dict().items() if not k.startswith("position_bias")})
    torch.testing.assert_close(mha(x).output, plain(x, bias=pb().materialize(5, 5)).output)
    mha(x).output.sum().backward()
    assert pb.weight.grad is not None and pb.weight.grad.abs().sum() > 0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_buckets"):
        t5(2, num_buckets=2)
    with pytest.raises(ValueError, match="max_distance"):
        t5(2, num_buckets=32, max_distance=8)
    with pytest.raises(ValueError, match="table"):
        t5(torch.randn(2, 5), num_buckets=8)
    with pytest.raises(TypeError, match="bidirectional"):
        relative_position_bucket(torch.tensor([1]), bidirectional="yes")
