"""BERT's layout: equal to Hugging Face's BertModel with copied weights, padding and per-head weights."""

from __future__ import annotations

import pytest
import torch
import transformers  # a declared test dependency (the "test" extra): no skip

import qkv
from qkv.models.bert import Bert, BertConfig

V, E, H, N, F, P = 101, 64, 4, 2, 96, 40
ATOL = 1e-5


def _hf_bert(*, pooler: bool = True, **overrides):
    options = dict(vocab_size=V, hidden_size=E, num_hidden_layers=N, num_attention_heads=H, intermediate_size=F,
                   max_position_embeddings=P, type_vocab_size=3, initializer_range=0.2, attn_implementation="eager")
    options.update(overrides)
    torch.manual_seed(0)
    return transformers.BertModel(transformers.BertConfig(**options), add_pooling_layer=pooler).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, V, (3, 9), generator=g)
    types = torch.randint(0, 3, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return tokens, types, mask


def _close(a, b, keep=None):
    if keep is not None:  # the outputs at padded positions mean nothing
        a, b = a[keep], b[keep]
    torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("with_types", [False, True])
def test_hidden_states_pooler_and_weights_equal_transformers(padded, with_types):
    hf = _hf_bert()
    ours = Bert.from_hf(hf).eval()
    assert ours.config.norm_eps == 1e-12 and ours.config.activation == "gelu"
    tokens, types, mask = _batch()
    if not padded:
        mask = torch.ones_like(mask)
    types = types if with_types else None
    keep = mask.bool()
    with torch.no_grad():
        ref = hf(tokens, attention_mask=mask, token_type_ids=types, output_attentions=True, output_hidden_states=True)
        out = ours(tokens, attention_mask=mask, token_types=types, return_weights=True, return_hidden=True)
    _close(out.output, ref.last_hidden_state, keep)
    _close(out.pooled, ref.pooler_output)  # the first token is never padding
    assert len(out.hidden_states) == len(ref.hidden_states) == N + 1
    for a, b in zip(out.hidden_states, ref.hidden_states, strict=True):
        _close(a, b, keep)
    assert len(out.weights) == len(ref.attentions) == N
    for a, b in zip(out.weights, ref.attentions, strict=True):
        assert a.shape == (3, H, 9, 9)
        _close(a.transpose(1, 2), b.transpose(1, 2), keep)  # rows of real queries
    if padded:
        assert out.weights[1][2, :, :, 2:].abs().max() == 0  # padded keys get no weight


def test_padding_equals_the_unpadded_sequence():
    """An independent check of the mask: a padded row's real positions equal the row run alone."""
    ours = Bert.from_hf(_hf_bert()).eval()
    tokens, types, mask = _batch()
    with torch.no_grad():
        padded = ours(tokens, attention_mask=mask, token_types=types)
        alone = ours(tokens[1:2, :5], token_types=types[1:2, :5])
    _close(padded.output[1, :5], alone.output[0])
    _close(padded.pooled[1], alone.pooled[0])


@pytest.mark.parametrize(
    "options", [{"hidden_act": "gelu_new"}, {"hidden_act": "relu", "layer_norm_eps": 1e-5}], ids=["gelu_new", "relu"]
)
def test_configuration_options_and_no_pooler(options):
    hf = _hf_bert(pooler=False, **options)
    ours = Bert.from_hf(hf).eval()
    assert ours.pooler is None
    tokens, types, mask = _batch()
    with torch.no_grad():
        out = ours(tokens, attention_mask=mask.bool(), token_types=types)
        ref = hf(tokens, attention_mask=mask, token_type_ids=types)
    assert out.pooled is None
    _close(out.output, ref.last_hidden_state, mask.bool())


def test_layer_read_is_attend_call():
    """Layer 0's weights are ``attend(q, k, v, mask=key_padding(keep), return_weights=True)`` on its projections."""
    ours = Bert.from_hf(_hf_bert()).eval()
    tokens, types, mask = _batch()
    with torch.no_grad():
        out = ours(tokens, attention_mask=mask, token_types=types, return_weights=True)
        x = ours.embed(tokens, token_types=types)
        attn = ours.layers[0].self_attn
        q, k, v = (proj(x).view(3, 9, H, E // H).transpose(1, 2) for proj in  # (B, H, L, d)
                   (attn.q_proj, attn.k_proj, attn.v_proj))
        ref = qkv.attend(q, k, v, mask=qkv.masks.key_padding(mask.bool()), return_weights=True)
    torch.testing.assert_close(out.weights[0], ref.weights)


def test_errors_name_the_argument():
    model = Bert(BertConfig(vocab_size=V, max_positions=8, dim=E, num_layers=1, num_heads=H, ff_dim=F)).eval()
    tokens = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="num_heads"):
        BertConfig(dim=10, num_heads=4)
    with pytest.raises(ValueError, match="pad_id"):
        BertConfig(vocab_size=5, pad_id=5)
    with pytest.raises(ValueError, match="attention_mask"):
        model(tokens, attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="token_types"):
        model(tokens, token_types=torch.full((2, 3), 2))
    with pytest.raises(ValueError, match="tokens"):
        model(tokens.float())
    with pytest.raises(TypeError, match="BertModel"):
        Bert.from_hf(transformers.GPT2Model(transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10)))
    with pytest.raises(ValueError, match="is_decoder"):
        Bert.from_hf(_hf_bert(is_decoder=True))
