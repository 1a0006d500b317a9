"""MultiHeadAttention against torch.nn.MultiheadAttention with copied weights, and a float64 gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

import qkv
from qkv.layers.torch_compat import average_heads, from_torch_masks

E, H, B, L, S = 16, 4, 3, 5, 7
TOL = {"atol": 1e-5, "rtol": 1e-5}


def pair(**kwargs) -> tuple[nn.MultiheadAttention, qkv.MultiHeadAttention]:
    ref = nn.MultiheadAttention(E, H, batch_first=True, **kwargs).eval()
    return ref, qkv.MultiHeadAttention.from_torch(ref).eval()


def test_self_attention_matches_torch() -> None:
    ref, ours = pair()
    x = torch.randn(B, L, E)
    expected, w = ref(x, x, x)
    out = ours(x, return_weights=True)
    assert out.weights.shape == (B, H, L, L)
    torch.testing.assert_close(out.output, expected, **TOL)
    torch.testing.assert_close(average_heads(out.weights), w, **TOL)


def test_cross_attention_with_key_padding_matches_torch() -> None:
    ref, ours = pair()
    x, y = torch.randn(B, L, E), torch.randn(B, S, E)
    lengths = torch.tensor([7, 4, 1])
    ignore = torch.arange(S)[None, :] >= lengths[:, None]  # torch: True = ignore
    expected, w = ref(x, y, y, key_padding_mask=ignore, average_attn_weights=False)
    mask, bias = from_torch_masks(num_heads=H, key_padding_mask=ignore)
    assert bias is None
    out = ours(x, y, mask=mask, bias=bias, return_weights=True)
    torch.testing.assert_close(out.output, expected, **TOL)
    torch.testing.assert_close(out.weights, w, **TOL)
    # the same mask in qkv's own terms: a (B, S) keep mask, and a lazy padding mask from the lengths
    keep = ours(x, y, mask=qkv.masks.key_padding(~ignore), return_weights=True)
    torch.testing.assert_close(keep.output, expected, **TOL)
    torch.testing.assert_close(keep.weights, w, **TOL)
    lazy = ours(x, y, mask=qkv.masks.padding(lengths))
    torch.testing.assert_close(lazy.output, expected, **TOL)


def test_causal_matches_torch() -> None:
    ref, ours = pair()
    x = torch.randn(B, L, E)
    future = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)  # torch: True = ignore
    expected, w = ref(x, x, x, attn_mask=future)
    out = ours(x, mask=qkv.masks.causal(), return_weights=True)
    torch.testing.assert_close(out.output, expected, **TOL)
    torch.testing.assert_close(average_heads(out.weights), w, **TOL)
    torch.testing.assert_close(ours(x, mask=~future).output, expected, **TOL)
    for torch_kwargs in ({"attn_mask": future}, {"is_causal": True}):
        mask, bias = from_torch_masks(num_heads=H, **torch_kwargs)
        torch.testing.assert_close(ours(x, mask=mask, bias=bias).output, expected, **TOL)


def test_float_attn_mask_matches_torch() -> None:
    """torch adds a float attn_mask to the scores: the adapter turns it into qkv's bias."""
    ref, ours = pair()
    x, y = torch.randn(B, L, E), torch.randn(B, S, E)
    added = torch.randn(L, S)
    added[:, 3] = float("-inf")
    expected, w = ref(x, y, y, attn_mask=added)
    mask, bias = from_torch_masks(num_heads=H, attn_mask=added)
    assert mask is None
    out = ours(x, y, mask=mask, bias=bias, return_weights=True)
    torch.testing.assert_close(out.output, expected, **TOL)
    torch.testing.assert_close(average_heads(out.weights), w, **TOL)


def test_kdim_vdim_and_no_bias_match_torch() -> None:
    ref, ours = pair(kdim=6, vdim=3, bias=False)
    x, k, v = torch.randn(B, L, E), torch.randn(B, S, 6), torch.randn(B, S, 3)
    expected, w = ref(x, k, v)
    out = ours(x, k, v, return_weights=True)
    torch.testing.assert_close(out.output, expected, **TOL)
    torch.testing.assert_close(average_heads(out.weights), w, **TOL)


def test_per_batch_attn_mask_matches_torch() -> None:
    ref, ours = pair()
    x, y = torch.randn(B, L, E), torch.randn(B, S, E)
    allowed = torch.rand(B, L, S) > 0.3
    allowed[..., 0] = True  # torch gives NaN on fully masked rows; qkv gives zeros (tested elsewhere)
    torch_mask = (~allowed).repeat_interleave(H, dim=0)  # torch: (B*H, L, S), True = ignore
    expected, _ = ref(x, y, y, attn_mask=torch_mask)
    mask, bias = from_torch_masks(num_heads=H, attn_mask=torch_mask)
    torch.testing.assert_close(ours(x, y, mask=mask, bias=bias).output, expected, **TOL)
    torch.testing.assert_close(ours(x, y, mask=allowed.unsqueeze(1)).output, expected, **TOL)  # (B, 1, L, S)


def test_cached_decoding_matches_full_causal_self_attention() -> None:
    """Bottom-right causal: query step t against the first t + 1 keys equals row t of the full pass."""
    mha = qkv.MultiHeadAttention(E, H).eval()
    T = 6
    x = torch.randn(B, T, E)
    full = mha(x, mask=qkv.masks.causal()).output  # (B, T, E)
    for t in range(T):
        step = mha(x[:, t : t + 1], x[:, : t + 1], mask=qkv.masks.causal()).output  # (B, 1, E)
        torch.testing.assert_close(step, full[:, t : t + 1], **TOL)


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
    causal = qkv.masks.causal()
    torch.testing.assert_close(gqa(x, mask=causal).output, full(x, mask=causal).output, **TOL)


@pytest.mark.parametrize("score", ["scaled_dot", "additive", "bilinear", "cosine"])
def test_gradcheck_float64(score: str) -> None:
    """Inputs and every parameter of a whole MultiHeadAttention, with a key padding mask."""
    mha = qkv.MultiHeadAttention(8, 2, score=score, dtype=torch.float64)
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    mask = qkv.masks.key_padding(torch.tensor([[True, True, True, False], [True, False, False, False]]))
    names = [n for n, _ in mha.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in mha.parameters()]

    def f(x, y, *ps):
        return functional_call(mha, dict(zip(names, ps, strict=True)), (x, y), {"mask": mask}).output

    assert torch.autograd.gradcheck(f, (x, y, *params))


def test_fully_masked_rows_are_zero_not_nan() -> None:
    mha = qkv.MultiHeadAttention(E, H)
    x = torch.randn(B, L, E, requires_grad=True)
    key_mask = torch.ones(B, L, dtype=torch.bool)
    key_mask[1] = False  # batch row 1 has no keys at all
    out = mha(x, mask=qkv.masks.key_padding(key_mask))
    assert torch.isfinite(out.output).all()
    # with no key, the heads read zeros: output is the out-projection's bias alone
    torch.testing.assert_close(out.output[1], mha.out_proj.bias.expand(L, E))
    out.output.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"query_dim": 10, "num_heads": 3}, ValueError, "num_heads (3) must divide query_dim (10)"),
        ({"query_dim": 8, "num_heads": 4, "num_kv_heads": 3}, ValueError, "num_kv_heads"),
        ({"query_dim": 0, "num_heads": 1}, ValueError, "query_dim"),
        ({"query_dim": 8, "num_heads": 2, "dropout": -0.1}, ValueError, "dropout"),
        ({"query_dim": 8, "num_heads": 2, "score": "nope"}, ValueError, "score must be one of"),
        # issue 8 (11): the layer's own checks name the argument
        ({"query_dim": 16, "num_heads": 2, "dropout": "0.1"}, TypeError, "dropout"),
        ({"query_dim": 16, "num_heads": 2, "key_dim": 0}, ValueError, "key_dim"),
        ({"query_dim": 16, "num_heads": 2, "value_dim": -1}, ValueError, "value_dim"),
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
    with pytest.raises(ValueError, match=r"key_padding: keep must be a bool tensor of shape \(B, S\)"):
        mha(torch.randn(2, 3, E), mask=qkv.masks.key_padding(torch.ones(2, 3)))
    with pytest.raises(TypeError, match=r"mask must be a bool tensor"):
        mha(torch.randn(2, 3, E), mask=torch.ones(2, 3))
    with pytest.raises(TypeError, match=r"mask must be a bool tensor"):  # one query: not dropped as "allows all"
        mha(torch.randn(1, 1, E), torch.randn(1, 1, E), mask=torch.ones(1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"does not broadcast"):  # nor an all-True mask of the wrong shape
        mha(torch.randn(1, 1, E), torch.randn(1, 3, E), mask=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask .*\(4, 3\) does not broadcast to the scores' shape \(2, 4, 3, 3\)"):
        mha(torch.randn(2, 3, E), mask=torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"torch\.nn\.MultiheadAttention"):
        qkv.MultiHeadAttention.from_torch(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="add_bias_kv"):
        qkv.MultiHeadAttention.from_torch(nn.MultiheadAttention(E, H, add_bias_kv=True))
