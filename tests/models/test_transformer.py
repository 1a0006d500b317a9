"""The Transformer blocks: equal to torch.nn's with copied weights; per-head weights, causality, gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import qkv
from qkv.layers.torch_compat import average_heads, from_torch_masks
from qkv.models import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from qkv.positional import Rotary

# torch warns that its encoder cannot use nested tensors for these configurations: irrelevant here
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")

E, H, F = 16, 4, 24
B, S, L = 2, 7, 5


def _bf(x: torch.Tensor, batch_first: bool) -> torch.Tensor:
    return x if batch_first else x.transpose(0, 1)


def _torch_causal(n: int) -> torch.Tensor:
    return nn.Transformer.generate_square_subsequent_mask(n, dtype=torch.bool)  # torch: True = forbidden


def _padding():
    src_pad = torch.zeros(B, S, dtype=torch.bool)
    src_pad[1, 4:] = True  # torch: True = padding
    tgt_pad = torch.zeros(B, L, dtype=torch.bool)
    tgt_pad[0, 3:] = True
    return src_pad, tgt_pad


def _close(a, b, keep=None):
    if keep is not None:  # torch's eval fast path may write anything at padded positions
        a, b = a[keep], b[keep]
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_equals_torch(norm_first, batch_first, activation):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(E, H, F, dropout=0.0, activation=activation, batch_first=batch_first,
                                     norm_first=norm_first).eval()
    ours = TransformerEncoderLayer.from_torch(ref).eval()
    x = torch.randn(B, S, E)
    src_pad, _ = _padding()
    causal = nn.Transformer.generate_square_subsequent_mask(S, dtype=torch.bool)  # torch: True = forbidden
    with torch.no_grad():
        expected = _bf(ref(_bf(x, batch_first), src_mask=causal, src_key_padding_mask=src_pad), batch_first)
    mask, bias = from_torch_masks(num_heads=H, key_padding_mask=src_pad, attn_mask=causal)
    _close(ours(x, mask=mask, bias=bias).output, expected, ~src_pad)
    # qkv's own masks say the same thing: keep = not padding, causal = lower triangle
    _close(ours(x, mask=qkv.masks.key_padding(~src_pad) & qkv.masks.causal()).output, expected, ~src_pad)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
def test_decoder_layer_equals_torch(norm_first, batch_first):
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(E, H, F, dropout=0.0, batch_first=batch_first, norm_first=norm_first).eval()
    ours = TransformerDecoderLayer.from_torch(ref).eval()
    x, memory = torch.randn(B, L, E), torch.randn(B, S, E)
    src_pad, tgt_pad = _padding()
    with torch.no_grad():
        expected = _bf(ref(_bf(x, batch_first), _bf(memory, batch_first),
                           tgt_mask=_torch_causal(L), tgt_is_causal=True,
                           tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad), batch_first)
    out = ours(x, memory, mask=qkv.masks.causal() & qkv.masks.key_padding(~tgt_pad),
               memory_mask=qkv.masks.key_padding(~src_pad))
    _close(out.output, expected)


@pytest.mark.parametrize("norm_first", [False, True])
def test_stacks_and_transformer_equal_torch(norm_first):
    torch.manual_seed(0)
    ref = nn.Transformer(E, H, num_encoder_layers=2, num_decoder_layers=3, dim_feedforward=F, dropout=0.0,
                         norm_first=norm_first, batch_first=False).eval()
    ours = Transformer.from_torch(ref).eval()
    src, tgt = torch.randn(B, S, E), torch.randn(B, L, E)
    src_pad, tgt_pad = _padding()
    with torch.no_grad():
        expected = ref(src.transpose(0, 1), tgt.transpose(0, 1),
                       tgt_mask=_torch_causal(L), src_key_padding_mask=src_pad,
                       tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad).transpose(0, 1)
        enc_expected = ref.encoder(src.transpose(0, 1), src_key_padding_mask=src_pad).transpose(0, 1)
    keep_src = qkv.masks.key_padding(~src_pad)
    out = ours(src, tgt, src_mask=keep_src, tgt_mask=qkv.masks.causal() & qkv.masks.key_padding(~tgt_pad),
               memory_mask=keep_src, return_weights=True, return_hidden=True)
    _close(out.output, expected)
    _close(out.encoder.output, enc_expected, ~src_pad)
    assert len(out.weights) == 3 and len(out.cross_weights) == 3 and len(out.encoder.weights) == 2
    assert out.weights[0].shape == (B, H, L, L) and out.cross_weights[2].shape == (B, H, L, S)
    assert len(out.hidden_states) == 4 and out.hidden_states[-1] is out.output
    # the stacks on their own
    enc = TransformerEncoder.from_torch(ref.encoder).eval()
    _close(enc(src, mask=keep_src).output, enc_expected, ~src_pad)
    dec = TransformerDecoder.from_torch(ref.decoder).eval()
    _close(dec(tgt, out.encoder.output, mask=qkv.masks.causal() & qkv.masks.key_padding(~tgt_pad),
               memory_mask=keep_src).output, expected)


def test_weights_are_the_attend_weights_and_average_to_torchs():
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(E, H, F, dropout=0.0, batch_first=True).eval()
    ours = TransformerEncoderLayer.from_torch(ref).eval()
    x = torch.randn(B, S, E)
    w = ours(x, mask=qkv.masks.causal(), return_weights=True).weights[0]
    mha = ours.self_attn
    q = mha.q_proj(x).view(B, S, H, E // H).transpose(1, 2)  # (B, H, S, d)
    k = mha.k_proj(x).view(B, S, H, E // H).transpose(1, 2)
    v = mha.v_proj(x).view(B, S, H, E // H).transpose(1, 2)
    torch.testing.assert_close(w, qkv.attend(q, k, v, mask=qkv.masks.causal(), return_weights=True).weights)
    causal = nn.Transformer.generate_square_subsequent_mask(S, dtype=torch.bool)
    _, torch_w = ref.self_attn(x, x, x, attn_mask=causal, need_weights=True)  # head-averaged
    torch.testing.assert_close(average_heads(w), torch_w)


def _encoder(**kw) -> TransformerEncoder:
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(E, H, ff_dim=F, dropout=0.0, **kw)
    return TransformerEncoder(layer, 2).eval()


@pytest.mark.parametrize("kw", [{}, {"norm_first": True, "activation": "swiglu", "num_kv_heads": 2},
                                {"rotary": Rotary(4), "score": "cosine"}])
def test_causal_outputs_ignore_future_inputs(kw):
    enc = _encoder(**kw)
    x = torch.randn(B, S, E)
    y = x.clone()
    y[:, 4:] = torch.randn(B, S - 4, E)
    a, b = enc(x, mask=qkv.masks.causal()).output, enc(y, mask=qkv.masks.causal()).output
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_encoder_without_positions_is_permutation_equivariant():
    enc = _encoder(norm_first=True, activation="gelu")
    x = torch.randn(B, S, E)
    perm = torch.randperm(S, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(enc(x[:, perm]).output, enc(x).output[:, perm], atol=1e-5, rtol=1e-5)
    rot = _encoder(rotary=Rotary(4))  # with positions it is not
    assert not torch.allclose(rot(x[:, perm]).output, rot(x).output[:, perm], atol=1e-3)


@pytest.mark.parametrize("norm_first", [False, True])
def test_gradcheck_float64(norm_first):
    torch.manual_seed(0)
    enc = TransformerEncoderLayer(8, 2, ff_dim=8, dropout=0.0, norm_first=norm_first, activation="swiglu",
                                  num_kv_heads=1, rotary=Rotary(4), dtype=torch.float64)
    dec = TransformerDecoderLayer(8, 2, ff_dim=8, dropout=0.0, norm_first=norm_first, dtype=torch.float64)
    x = torch.randn(1, 3, 8, dtype=torch.float64, requires_grad=True)
    m = torch.randn(1, 4, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: enc(x, mask=qkv.masks.causal()).output, (x,))
    assert torch.autograd.gradcheck(lambda x, m: dec(x, m, mask=qkv.masks.causal()).output, (x, m))


def test_stack_options():
    enc = _encoder(norm_first=True)
    assert isinstance(enc.norm, nn.LayerNorm) and _encoder().norm is None  # pre-LN stacks get a final norm
    w0, w1 = (layer.self_attn.q_proj.weight for layer in enc.layers)
    assert not torch.equal(w0, w1)  # clones are re-initialised
    out = enc(torch.randn(B, S, E), return_weights=True, return_hidden=True)
    assert [w.shape for w in out.weights] == [(B, H, S, S)] * 2 and len(out.hidden_states) == 3
    plain = enc(torch.randn(B, S, E))
    assert plain.weights is None and plain.hidden_states is None and plain.state is None


def test_dropout_only_in_training():
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(E, H, dropout=0.5)
    x = torch.randn(B, S, E)
    assert not torch.allclose(layer(x).output, layer(x).output)
    layer.eval()
    torch.testing.assert_close(layer(x).output, layer(x).output)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="activation"):
        TransformerEncoderLayer(E, H, activation="tanh")
    with pytest.raises(ValueError, match="num_heads"):
        TransformerEncoderLayer(E, 3)
    with pytest.raises(ValueError, match="norm_eps"):
        TransformerEncoderLayer(E, H, norm_eps=0)
    with pytest.raises(ValueError, match="x must have last dim"):
        TransformerEncoderLayer(E, H)(torch.randn(1, 2, E + 1))
    with pytest.raises(ValueError, match="memory"):
        TransformerDecoderLayer(E, H)(torch.randn(1, 2, E))
    with pytest.raises(TypeError, match="cache"):
        _encoder()(torch.randn(1, 2, E), cache=(None,))
    with pytest.raises(TypeError, match="TransformerEncoderLayer"):
        TransformerEncoder([])
    with pytest.raises(TypeError, match=r"torch\.nn\.TransformerEncoderLayer"):
        TransformerEncoderLayer.from_torch(nn.Linear(2, 2))


@pytest.mark.slow
def test_torch_compile_of_an_encoder_layer():
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(E, H, ff_dim=F, dropout=0.0, norm_first=True).eval()
    x = torch.randn(B, S, E)
    compiled = torch.compile(lambda x: layer(x, mask=qkv.masks.causal()).output)
    torch.testing.assert_close(compiled(x), layer(x, mask=qkv.masks.causal()).output, atol=1e-5, rtol=1e-5)


def test_from_torch_without_biases_and_with_a_tanh_gelu_module():
    torch.manual_seed(0)
    enc = nn.TransformerEncoderLayer(E, H, F, dropout=0.0, batch_first=True, bias=False,
                                     activation=nn.GELU(approximate="tanh")).eval()
    dec = nn.TransformerDecoderLayer(E, H, F, dropout=0.0, batch_first=True, bias=False).eval()
    x, memory = torch.randn(B, L, E), torch.randn(B, S, E)
    ours = TransformerEncoderLayer.from_torch(enc).eval()
    assert ours.ff.activation == "gelu_tanh" and ours.ff.linear1.bias is None and ours.norm1.bias is None
    with torch.no_grad():
        _close(ours(x).output, enc(x))
        _close(TransformerDecoderLayer.from_torch(dec).eval()(x, memory).output, dec(x, memory))


@pytest.mark.parametrize("layer_type", [TransformerEncoderLayer, TransformerDecoderLayer])
def test_window_option_equals_a_hand_built_band_mask(layer_type):
    torch.manual_seed(0)
    windowed = layer_type(E, H, ff_dim=F, dropout=0.0, window=2).eval()
    plain = layer_type(E, H, ff_dim=F, dropout=0.0).eval()
    plain.load_state_dict(windowed.state_dict())
    x, memory = torch.randn(B, S, E), torch.randn(B, L, E)
    i = torch.arange(S)
    band = (i[:, None] - i[None, :]).abs() <= 2  # the reference: |i - j| <= w, built by hand
    args = (x,) if layer_type is TransformerEncoderLayer else (x, memory)
    got = windowed(*args, return_weights=True)
    want = plain(*args, mask=band, return_weights=True)
    _close(got.output, want.output)
    assert (got.weights[0][..., ~band] == 0).all()
    with pytest.raises(ValueError, match="window"):
        layer_type(E, H, window=-1)


def test_transformer_passes_rotary_window_and_biases_and_cached_decoding_equals_full():
    torch.manual_seed(0)
    model = Transformer(E, H, num_encoder_layers=1, num_decoder_layers=2, ff_dim=F, dropout=0.0,
                        rotary=Rotary(E // H), window=3).eval()
    layers = [*model.encoder.layers, *model.decoder.layers]
    assert all(m.self_attn.rotary is not None and m.self_attn.window == 3 for m in layers)
    src, tgt = torch.randn(B, S, E), torch.randn(B, L, E)
    with torch.no_grad():
        memory = model.encode(src).output
        full = model.decode(tgt, memory, mask=qkv.masks.causal()).output
        cache, steps = model.decoder.empty_cache(), []
        for t in range(L):
            out = model.decode(tgt[:, t : t + 1], memory if t == 0 else None, mask=qkv.masks.causal(), cache=cache)
            cache = out.state
            steps.append(out.output)
        _close(torch.cat(steps, dim=1), full)
        # decode passes bias and memory_bias on: a -inf memory bias on keys equals masking them out
        keep = torch.ones(B, S, dtype=torch.bool)
        keep[:, -2:] = False
        blocked = torch.zeros(B, 1, 1, S).masked_fill(~keep[:, None, None, :], float("-inf"))
        _close(model.decode(tgt, memory, memory_bias=blocked).output,
               model.decode(tgt, memory, memory_mask=qkv.masks.key_padding(keep)).output)
        shift = torch.randn(1, H, L, L)
        _close(model.decode(tgt, memory, bias=shift).output, model.decoder(tgt, memory, bias=shift).output)
        assert not torch.allclose(model.decode(tgt, memory, bias=shift).output, model.decode(tgt, memory).output)
