"""MultiHeadAttention against torch.nn.MultiheadAttention with copied weights, and a float64 gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

import qkv

E, H, B, L, S = 16, 4, 3, 5, 7
TOL = {"atol": 1e-5, "rtol": 1e-5}


def pair(**kwargs) -> tuple[nn.MultiheadAttention, qkv.MultiHeadAttention]:
    ref = nn.MultiheadAttention(E, H, batch_first=True, **kwargs).eval()
    return ref, qkv.MultiHeadAttention.from_torch(ref).eval()


def test_self_attention_matches_torch() -> None:
    ref, ours = pair()
    x = torch.randn(B, L, E)
    expected, w = ref(x, x, x)
    out = ours(x, need_weights=True)
    torch.testing.assert_close(out.output, expected, **TOL)
    torch.testing.assert_close(out.weights, w, **TOL)


def test_cross_attention_with_key_padding_matches_torch() -> None:
    ref, ours = pair()
    x, y = torch.randn(B, L, E), torch.randn(B, S, E)
    lengths = torch.tensor([7, 4, 1])
    ignore = torch.arange(S)[None, :] >= lengths[:, None]  # torch: True = ignore
    expected, w = ref(x, y, y, key_padding_mask=ignore, average_attn_weights=False)
    out = ours(x, y, key_mask=~ignore, need_weights=True, average_weights=False)
    torch.testing.assert_close(out.output, expected, **TOL)
    torch.testing.assert_close(out.weights, w, **TOL)
    # the same mask as a lazy padding mask
    lazy = ours(x, y, attn_mask=qkv.masks.padding(lengths))
    torch.testing.assert_close(lazy.output, expected, **TOL)


def test_causal_matches_torch() -> None:
    ref, ours = pair()
    x = torch.randn(B, L, E)
    future = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)  # torch: True = ignore
    expected, w = ref(x, x, x, attn_mask=future)
    out = ours(x, causal=True, need_weights=True)
    torch.testing.assert_close(out.output, expected, **TOL)
    torch.testing.assert_close(out.weights, w, **TOL)
    torch.testing.assert_close(ours(x, attn_mask=~future).output, expected, **TOL)


def test_kdim_vdim_and_no_bias_match_torch() -> None:
    ref, ours = pair(kdim=6, vdim=3, bias=False)
    x, k, v = torch.randn(B, L, E), torch.randn(B, S, 6), torch.randn(B, S, 3)
    expected, w = ref(x, k, v)
    out = ours(x, k, v, need_weights=True)
    torch.testing.assert_close(out.output, expected, **TOL)
    torch.testing.assert_close(out.weights, w, **TOL)


def test_per_batch_attn_mask_matches_torch() -> None:
    ref, ours = pair()
    x, y = torch.randn(B, L, E), torch.randn(B, S, E)
    allowed = torch.rand(B, L, S) > 0.3
    allowed[..., 0] = True  # torch gives NaN on fully masked rows; qkv gives zeros (tested elsewhere)
    torch_mask = (~allowed).repeat_interleave(H, dim=0)  # torch: (B*H, L, S), True = ignore
    expected, _ = ref(x, y, y, attn_mask=torch_mask)
    torch.testing.assert_close(ours(x, y, attn_mask=allowed).output, expected, **TOL)


def test_from_torch_keeps_training_mode_and_dropout() -> None:
    ref = nn.MultiheadAttention(E, H, dropout=0.25, batch_first=True)
    ours = qkv.MultiHeadAttention.from_torch(ref)
    assert ours.training and ours.dropout == 0.25


def test_grouped_query_heads_equal_repeated_kv_heads() -> None:
    """GQA with Hkv heads equals full MHA whose k/v projections repeat each kv head G times."""
    gqa = qkv.MultiHeadAttention(E, H, num_kv_heads=2).eval()
    full = qkv.MultiHeadAttention(E, H).eval()
    d = E // H
    with torch.no_grad():
        full.q_proj.load_state_dict(gqa.q_proj.state_dict())
        full.out_proj.load_state_dict(gqa.out_proj.state_dict())
        for src, dst in ((gqa.k_proj, full.k_proj), (gqa.v_proj, full.v_proj)):
            w = src.weight.reshape(2, d, E).repeat_interleave(2, dim=0).reshape(E, E)
            dst.weight.copy_(w)
            dst.bias.copy_(src.bias.reshape(2, d).repeat_interleave(2, dim=0).reshape(E))
    x = torch.randn(B, L, E)
    torch.testing.assert_close(gqa(x, causal=True).output, full(x, causal=True).output, **TOL)


@pytest.mark.parametrize("score", ["scaled_dot", "additive", "bilinear", "cosine"])
def test_gradcheck_float64(score: str) -> None:
    """Inputs and every parameter of a whole MultiHeadAttention, with a key padding mask."""
    mha = qkv.MultiHeadAttention(8, 2, score=score, dtype=torch.float64)
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    key_mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    names = [n for n, _ in mha.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in mha.parameters()]

    def f(x, y, *ps):
        return functional_call(mha, dict(zip(names, ps, strict=True)), (x, y), {"key_mask": key_mask}).output

    assert torch.autograd.gradcheck(f, (x, y, *params))


def test_fully_masked_rows_are_zero_not_nan() -> None:
    mha = qkv.MultiHeadAttention(E, H)
    x = torch.randn(B, L, E, requires_grad=True)
    key_mask = torch.ones(B, L, dtype=torch.bool)
    key_mask[1] = False  # batch row 1 has no keys at all
    out = mha(x, key_mask=key_mask)
    assert torch.isfinite(out.output).all()
    # with no key, the heads read zeros: output is the out-projection's bias alone
    torch.testing.assert_close(out.output[1], mha.out_proj.bias.expand(L, E))
    out.output.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"embed_dim": 10, "num_heads": 3}, ValueError, "num_heads (3) must divide embed_dim (10)"),
        ({"embed_dim": 8, "num_heads": 4, "num_kv_heads": 3}, ValueError, "num_kv_heads"),
        ({"embed_dim": 0, "num_heads": 1}, ValueError, "embed_dim"),
        ({"embed_dim": 8, "num_heads": 2, "dropout": -0.1}, ValueError, "dropout"),
        ({"embed_dim": 8, "num_heads": 2, "score": "nope"}, ValueError, "score must be one of"),
    ],
)
def test_constructor_errors(kwargs, exc, words) -> None:
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        qkv.MultiHeadAttention(**kwargs)


def test_forward_errors_name_argument_and_shape() -> None:
    mha = qkv.MultiHeadAttention(E, H)
    with pytest.raises(ValueError, match=r"query must have last dim 16, got shape \(2, 3, 5\)"):
        mha(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"query must have 3 dims, got shape \(3, 16\)"):
        mha(torch.randn(3, E))
    with pytest.raises(ValueError, match=r"must agree on B and S"):
        mha(torch.randn(2, 3, E), torch.randn(2, 4, E), torch.randn(2, 5, E))
    with pytest.raises(ValueError, match=r"key_mask must be a bool tensor of shape \(B, S\) = \(2, 3\)"):
        mha(torch.randn(2, 3, E), key_mask=torch.ones(2, 3))
    with pytest.raises(TypeError, match=r"torch\.nn\.MultiheadAttention"):
        qkv.MultiHeadAttention.from_torch(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="add_bias_kv"):
        qkv.MultiHeadAttention.from_torch(nn.MultiheadAttention(E, H, add_bias_kv=True))
