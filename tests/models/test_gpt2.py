"""GPT-2's layout: equal to Hugging Face's GPT2Model / GPT2LMHeadModel with copied weights, cache and generation."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
import transformers  # a declared test dependency (the "test" extra): no skip

import qkv
from qkv.models.decoding import beam_search, greedy, recompute, sample
from qkv.models.gpt2 import GPT2, GPT2Cache, GPT2Config, GPT2LMHead

V, E, H, N, P = 97, 64, 4, 2, 64
ATOL = 1e-5


def _hf_config(**overrides):
    options = dict(n_layer=N, n_embd=E, n_head=H, vocab_size=V, n_positions=P, bos_token_id=0, eos_token_id=V - 1,
                   pad_token_id=0, initializer_range=0.3, attn_implementation="eager")
    options.update(overrides)
    return transformers.GPT2Config(**options)


def _hf_lm(**overrides):
    """A randomly initialised GPT2LMHeadModel (std 0.3: sharp, varied logits, so greedy choices are not near ties)."""
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(_hf_config(**overrides)).eval()


def _close(a, b, keep=None):
    if keep is not None:  # the outputs at padded positions mean nothing
        a, b = a[keep], b[keep]
    torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)


def _padded_batch():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, V - 1, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0  # right padding
    mask[2, 3:] = 0
    return tokens, mask


@pytest.mark.parametrize("padded", [False, True])
def test_hidden_states_logits_and_weights_equal_transformers(padded):
    hf = _hf_lm()
    ours = GPT2LMHead.from_hf(hf).eval()
    tokens, mask = _padded_batch()
    if not padded:
        mask = torch.ones_like(mask)
    keep = mask.bool()
    with torch.no_grad():
        ref = hf(tokens, attention_mask=mask, output_attentions=True, output_hidden_states=True)
        out = ours(tokens, attention_mask=mask, return_weights=True, return_hidden=True)
    _close(out.logits, ref.logits, keep)
    assert len(out.hidden_states) == len(ref.hidden_states) == N + 1
    for a, b in zip(out.hidden_states, ref.hidden_states, strict=True):
        _close(a, b, keep)
    assert len(out.weights) == len(ref.attentions) == N
    for a, b in zip(out.weights, ref.attentions, strict=True):
        assert a.shape == (3, H, 9, 9)
        _close(a.transpose(1, 2), b.transpose(1, 2), keep)  # rows of real queries; padded keys get 0
    if padded:
        assert out.weights[0][1, :, :6, 6:].abs().max() == 0


def test_gpt2model_and_body_of_lm_model():
    hf = _hf_lm()
    base = hf.transformer
    tokens, mask = _padded_batch()
    with torch.no_grad():
        expected = base(tokens, attention_mask=mask).last_hidden_state
        for model in (GPT2.from_hf(base).eval(), GPT2.from_hf(hf).eval()):
            _close(model(tokens, attention_mask=mask).output, expected, mask.bool())
        tied = GPT2LMHead.from_hf(base).eval()  # a GPT2Model: the head is its token embedding
        assert tied.head_weight is tied.transformer.token_embedding.weight
        _close(tied(tokens).logits, hf(tokens).logits)


def test_left_padding_positions_skip_the_padding():
    """qkv counts positions over real tokens (as generate does); transformers' forward needs position_ids for that."""
    hf = _hf_lm()
    ours = GPT2LMHead.from_hf(hf).eval()
    tokens, _ = _padded_batch()
    mask = torch.ones_like(tokens)
    mask[1, :3] = 0
    mask[2, :5] = 0
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = hf(tokens, attention_mask=mask, position_ids=position_ids).logits
        _close(ours(tokens, attention_mask=mask).logits, ref, mask.bool())
        # the same rows without their padding give the same logits
        _close(ours(tokens[2:, 5:]).logits[0], ref[2, 5:])


@pytest.mark.parametrize(
    "options",
    [
        {"activation_function": "relu", "n_inner": 80},
        {"activation_function": "gelu", "scale_attn_by_inverse_layer_idx": True},
        {"scale_attn_weights": False, "layer_norm_epsilon": 1e-3},
        {"tie_word_embeddings": False},
    ],
    ids=["relu-n_inner", "gelu-inverse-layer-scale", "unscaled-eps", "untied-head"],
)
def test_configuration_options_equal_transformers(options):
    hf = _hf_lm(**options)
    ours = GPT2LMHead.from_hf(hf).eval()
    assert (ours.lm_head is None) == options.get("tie_word_embeddings", True)
    tokens, mask = _padded_batch()
    with torch.no_grad():
        _close(ours(tokens, attention_mask=mask).logits, hf(tokens, attention_mask=mask).logits, mask.bool())


def test_float64_model_loads_as_float64():
    hf = _hf_lm().double()
    ours = GPT2LMHead.from_hf(hf)
    assert ours.head_weight.dtype == torch.float64
    tokens, _ = _padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens).logits, hf(tokens).logits, atol=1e-10, rtol=1e-10)


def test_layer_read_is_attend_call():
    """Layer 0's weights are ``attend(q, k, v, mask=causal(), return_weights=True)`` on its own projections."""
    ours = GPT2LMHead.from_hf(_hf_lm()).eval()
    tokens, _ = _padded_batch()
    with torch.no_grad():
        out = ours(tokens, return_weights=True, return_hidden=True)
        layer = ours.transformer.layers[0]
        x = layer.norm1(out.hidden_states[0])
        q, k, v = (proj(x).view(3, 9, H, E // H).transpose(1, 2) for proj in  # (B, H, L, d)
                   (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj))
        ref = qkv.attend(q, k, v, mask=qkv.masks.causal(), return_weights=True)
    torch.testing.assert_close(out.weights[0], ref.weights)


def test_causal_future_tokens_do_not_change_the_past():
    ours = GPT2LMHead.from_hf(_hf_lm()).eval()
    tokens, _ = _padded_batch()
    changed = tokens.clone()
    changed[:, 5:] = (changed[:, 5:] + 7) % V
    with torch.no_grad():
        a, b = ours(tokens).logits, ours(changed).logits
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert (a[:, 5:] - b[:, 5:]).abs().max() > 1e-3


@pytest.mark.parametrize("padded", [False, True])
def test_cached_steps_equal_full_recomputation(padded):
    ours = GPT2LMHead.from_hf(_hf_lm()).eval()
    tokens, _ = _padded_batch()
    mask = torch.ones_like(tokens)
    if padded:
        mask[1, :3] = 0  # left padding
    with torch.no_grad():
        full = ours(tokens, attention_mask=mask).logits
        cache = ours.empty_cache(attention_mask=mask[:, :4])  # the prompt's padding, declared ahead
        pieces = []
        for a, b in ((0, 4), (4, 5), (5, 6), (6, 9)):
            out = ours(tokens[:, a:b], cache=cache)
            cache = out.state
            pieces.append(out.logits)
        assert isinstance(cache, GPT2Cache) and cache.position == 9 and cache.keep.shape == (3, 9)
        _close(torch.cat(pieces, dim=1), full, mask.bool())
        # greedy decoding: the same tokens and logits with the cache and with recomputation
        n = 12
        prompt, prompt_mask = tokens[:, :5], mask[:, :5]
        cached = ours.generate(prompt, attention_mask=prompt_mask if padded else None, max_new_tokens=n)

        def forward(seq):  # the whole prefix, with the prompt's padding
            keep = torch.cat((prompt_mask, torch.ones(3, seq.shape[1] - 5, dtype=torch.long)), dim=1)
            return ours(seq, attention_mask=keep).logits

        again = greedy(recompute(forward), prompt, max_new_tokens=n)
    assert torch.equal(cached.tokens, again.tokens)
    _close(cached.logits, again.logits)


def test_sampling_and_beam_search_through_the_cache():
    ours = GPT2LMHead.from_hf(_hf_lm()).eval()
    prompt = _padded_batch()[0][:2, :4]
    full = recompute(lambda seq: ours(seq).logits)
    with torch.no_grad():
        drawn = [sample(step, prompt, max_new_tokens=8, top_k=20, top_p=0.9, temperature=0.8,
                        generator=torch.Generator().manual_seed(3)) for step in (ours.step, full)]
        assert torch.equal(drawn[0].tokens, drawn[1].tokens)
        via_generate = ours.generate(prompt, max_new_tokens=8, strategy="sample", top_k=20, top_p=0.9,
                                     temperature=0.8, generator=torch.Generator().manual_seed(3))
        assert torch.equal(via_generate.tokens, drawn[0].tokens)
        beams = [beam_search(step, prompt, beam_width=3, max_new_tokens=6, alpha=0.6) for step in (ours.step, full)]
        assert torch.equal(beams[0].tokens, beams[1].tokens)
        torch.testing.assert_close(beams[0].scores, beams[1].scores, atol=1e-5, rtol=1e-5)
        assert torch.equal(ours.generate(prompt, max_new_tokens=6, strategy="beam", beam_width=3, alpha=0.6).tokens,
                           beams[0].tokens)


@pytest.mark.parametrize("padded", [False, True])
def test_greedy_generation_equals_transformers_generate(padded):
    hf = _hf_lm()
    ours = GPT2LMHead.from_hf(hf).eval()
    tokens, _ = _padded_batch()
    prompt = tokens[:, :6].clone()
    mask = torch.ones_like(prompt)
    if padded:  # left padding, as generate expects
        mask[1, :2] = 0
        mask[2, :4] = 0
        prompt[mask == 0] = 0
    n = 16
    with torch.no_grad():
        expected = hf.generate(prompt, attention_mask=mask, max_new_tokens=n, do_sample=False, pad_token_id=0,
                               eos_token_id=V - 1)
    got = ours.generate(prompt, attention_mask=mask if padded else None, max_new_tokens=n, eos_id=V - 1, pad_id=0)
    assert len(set(got.tokens[:, 6:].flatten().tolist())) > 5  # not a degenerate repetition
    assert torch.equal(got.tokens, expected)


def test_initialisation_follows_gpt2():
    model = GPT2(GPT2Config(vocab_size=50, max_positions=16, dim=128, num_layers=8, num_heads=4))
    layer = model.layers[3]
    assert abs(layer.self_attn.q_proj.weight.std().item() - 0.02) < 0.002
    assert abs(layer.ff.linear2.weight.std().item() - 0.02 / math.sqrt(16)) < 0.0005
    assert layer.self_attn.out_proj.bias.abs().max() == 0 and layer.norm1.weight.eq(1).all()


def test_errors_name_the_argument():
    cfg = GPT2Config(vocab_size=V, max_positions=8, dim=E, num_layers=1, num_heads=H)
    model = GPT2LMHead(cfg).eval()
    with pytest.raises(ValueError, match="num_heads"):
        GPT2Config(dim=10, num_heads=4)
    with pytest.raises(ValueError, match="activation"):
        GPT2Config(activation="tanh")
    with pytest.raises(ValueError, match="dropout"):
        GPT2Config(dropout=1.5)
    with pytest.raises(TypeError, match="config"):
        GPT2({"dim": 4})
    with pytest.raises(ValueError, match="tokens"):
        model(torch.randn(2, 3))
    with pytest.raises(ValueError, match="tokens must lie in"):
        model(torch.full((1, 3), V))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.zeros(2, 3, dtype=torch.long), attention_mask=torch.ones(2, 4))
    with pytest.raises(TypeError, match="cache"):
        model(torch.zeros(2, 3, dtype=torch.long), cache=())
    with pytest.raises(ValueError, match="max_length"):  # 9 positions of 8
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="strategy"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), max_new_tokens=2, strategy="nucleus")
    with pytest.raises(TypeError, match="GPT2Model or GPT2LMHeadModel"):
        GPT2LMHead.from_hf(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="activation"):
        GPT2LMHead.from_hf(_hf_lm(activation_function="silu"))


def test_runtime_code_never_imports_transformers():
    src = Path(qkv.__file__).parent
    for path in src.rglob("*.py"):
        text = path.read_text()
        if "transformers" not in text:  # (parsing only the files that mention it keeps this fast)
            continue
        for node in ast.walk(ast.parse(text, str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "transformers" for n in names), path
