"""Generation: cached decoding equals recomputation (GQA, RoPE, ALiBi, sliding window, encoder-decoder);
greedy, beam search (against exhaustive search) and sampling (against naive filters)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import qkv
from qkv.layers.cache import cache_position
from qkv.models import Transformer, TransformerEncoder, TransformerEncoderLayer
from qkv.models.decoding import beam_search, filter_logits, greedy, length_penalty, recompute, sample
from qkv.positional import LearnedPositions, Rotary, alibi

V, E, H = 11, 16, 4


class TinyLM(nn.Module):
    """A decoder-only language model: embeddings (+ learned positions), pre-LN causal layers, a linear head."""

    def __init__(self, *, num_kv_heads=None, rotary=False, learned=True, bias=None, window=None):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(V, E)
        self.pos = LearnedPositions(64, E, init_std=0.5) if learned else None
        layer = TransformerEncoderLayer(E, H, ff_dim=32, dropout=0.0, norm_first=True, num_kv_heads=num_kv_heads,
                                        rotary=Rotary(E // H) if rotary else None, position_bias=bias)
        self.body = TransformerEncoder(layer, 2)
        self.head = nn.Linear(E, V)
        self.window = window
        self.eval()

    def forward(self, tokens, cache=None):
        x = self.embed(tokens)
        if self.pos is not None:
            x = self.pos(x, offset=cache_position(cache))
        mask = qkv.masks.causal()
        if self.window is not None:
            mask = mask & qkv.masks.window(self.window - 1)
        out = self.body(x, mask=mask, cache=cache)
        return self.head(out.output), out.state

    def step(self, tokens, cache):
        return self(tokens, self.body.empty_cache(window=self.window) if cache is None else cache)

    def full(self, tokens):
        return self(tokens)[0]


CONFIGS = {
    "learned": {},
    "gqa-rotary": {"num_kv_heads": 2, "rotary": True, "learned": False},
    "alibi": {"bias": alibi(H), "learned": False},
    "window-gqa-rotary": {"num_kv_heads": 1, "rotary": True, "window": 4},
    "window-alibi": {"bias": alibi(H), "learned": False, "window": 3},
}


def _prompt(B=3, T=4, seed=0):
    return torch.randint(1, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cached_greedy_equals_recomputation(name):
    lm = TinyLM(**CONFIGS[name])
    prompt = _prompt()
    with torch.no_grad():
        cached = greedy(lm.step, prompt, max_new_tokens=20)
        full = greedy(recompute(lm.full), prompt, max_new_tokens=20)
    assert torch.equal(cached.tokens, full.tokens)
    torch.testing.assert_close(cached.logits, full.logits, atol=1e-5, rtol=1e-5)
    assert cached.tokens.shape == (3, 24) and cached.logits.shape == (3, 20, V)
    if lm.window is not None:  # a sliding window keeps memory bounded
        assert all(c.length == lm.window for c in cached.cache) and cached.cache[0].position == 23


def test_cached_encoder_decoder_equals_recomputation():
    torch.manual_seed(0)
    model = Transformer(E, H, num_encoder_layers=2, num_decoder_layers=2, ff_dim=32, dropout=0.0,
                        num_kv_heads=2).eval()
    embed, head = nn.Embedding(V, E), nn.Linear(E, V)
    src = torch.randn(2, 6, E)
    memory = model.encode(src).output

    def full(tokens):  # beams are rows b·K + k: each sees its row's memory
        rows = memory.repeat_interleave(tokens.shape[0] // memory.shape[0], dim=0)
        return head(model.decode(embed(tokens), rows, mask=qkv.masks.causal()).output)

    def step(tokens, cache):
        cache = model.decoder.empty_cache() if cache is None else cache
        out = model.decode(embed(tokens), memory, mask=qkv.masks.causal(), cache=cache)
        return head(out.output), out.state

    with torch.no_grad():
        cached = greedy(step, _prompt(B=2, T=1), max_new_tokens=8)
        ref = greedy(recompute(full), _prompt(B=2, T=1), max_new_tokens=8)
        beams = beam_search(step, _prompt(B=2, T=1), beam_width=3, max_new_tokens=6, eos_id=0, alpha=0.6)
        beams_ref = beam_search(recompute(full), _prompt(B=2, T=1), beam_width=3, max_new_tokens=6, eos_id=0,
                                alpha=0.6)
    assert torch.equal(cached.tokens, ref.tokens)
    torch.testing.assert_close(cached.logits, ref.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(beams.tokens, beams_ref.tokens)
    torch.testing.assert_close(beams.scores, beams_ref.scores, atol=1e-5, rtol=1e-5)


def _markov(seed=0, vocab=3):
    table = torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed)) * 2

    def step(tokens, cache):
        return table[tokens], cache

    return table, step


def _exhaustive(table, start, n, eos, alpha):
    """Every hypothesis of at most n tokens (only the last may be eos) with its GNMT-normalised score."""
    logp = torch.log_softmax(table, dim=-1)
    hyps = []
    for length in range(1, n + 1):
        for seq in itertools.product(range(table.shape[0]), repeat=length):
            if eos in seq[:-1] or (length < n and seq[-1] != eos):
                continue
            prev, total = start, 0.0
            for tok in seq:
                total += logp[prev, tok].item()
                prev = tok
            hyps.append((total / ((5 + length) / 6) ** alpha, seq))
    return sorted(hyps, reverse=True)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_with_room_for_every_hypothesis_is_exhaustive_search(alpha, seed):
    table, step = _markov(seed)
    n, eos = 3, 0
    hyps = _exhaustive(table, 1, n, eos, alpha)
    out = beam_search(step, torch.tensor([[1]]), beam_width=len(hyps), max_new_tokens=n, eos_id=eos, alpha=alpha)
    torch.testing.assert_close(out.scores[0], torch.tensor([s for s, _ in hyps]), atol=1e-5, rtol=1e-5)
    best = out.tokens[0, 0, 1 : 1 + out.lengths[0, 0]].tolist()
    assert tuple(best) == hyps[0][1]
    torch.testing.assert_close(out.scores, out.log_probs / length_penalty(out.lengths, alpha))


def test_small_beams_find_the_best_hypothesis_of_a_peaked_model():
    table, step = _markov(5, vocab=4)
    hyps = _exhaustive(table, 2, 4, 0, 0.6)
    out = beam_search(step, torch.tensor([[2], [2]]), beam_width=4, max_new_tokens=4, eos_id=0, alpha=0.6)
    assert out.scores[:, 0].tolist() == pytest.approx([hyps[0][0]] * 2, abs=1e-5)
    assert (out.scores[:, :-1] >= out.scores[:, 1:]).all()  # best first


def test_beam_of_one_is_greedy_and_cached_beams_equal_recomputed_ones():
    lm = TinyLM(num_kv_heads=2, rotary=True)
    prompt = _prompt()
    with torch.no_grad():
        g = greedy(lm.step, prompt, max_new_tokens=10)
        b1 = beam_search(lm.step, prompt, beam_width=1, max_new_tokens=10)
        cached = beam_search(lm.step, prompt, beam_width=4, max_new_tokens=10, eos_id=3, alpha=0.6)
        full = beam_search(recompute(lm.full), prompt, beam_width=4, max_new_tokens=10, eos_id=3, alpha=0.6)
    assert torch.equal(b1.tokens[:, 0], g.tokens)
    assert torch.equal(cached.tokens, full.tokens) and torch.equal(cached.lengths, full.lengths)
    torch.testing.assert_close(cached.scores, full.scores, atol=1e-5, rtol=1e-5)
    after_eos = torch.zeros_like(cached.tokens[..., 4:], dtype=torch.bool)
    gen = cached.tokens[..., 4:]
    for t in range(1, gen.shape[-1]):
        after_eos[..., t] = after_eos[..., t - 1] | (gen[..., t - 1] == 3)
    assert (gen[after_eos] == 3).all()  # padded with eos (pad_id defaults to eos_id)


def test_greedy_stops_when_every_row_has_finished_and_pads():
    table = torch.full((4, 4), -5.0)
    table[1, 2], table[2, 0], table[3, 3] = 5.0, 5.0, 5.0  # 1 -> 2 -> eos(0); 3 -> 3 -> ...
    step = lambda tokens, cache: (table[tokens], cache)  # noqa: E731
    out = greedy(step, torch.tensor([[1], [1]]), max_new_tokens=10, eos_id=0)
    assert out.tokens.tolist() == [[1, 2, 0], [1, 2, 0]]
    out = greedy(step, torch.tensor([[1], [3]]), max_new_tokens=4, eos_id=0, pad_id=1)
    assert out.tokens.tolist() == [[1, 2, 0, 1, 1], [3, 3, 3, 3, 3]]


def test_filter_logits_against_naive_sets():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 12, generator=g)
    for k, p in [(3, None), (None, 0.5), (4, 0.3), (None, 0.999), (12, None)]:
        out = filter_logits(logits, temperature=0.7, top_k=k, top_p=p)
        for row, orow in zip(logits, out, strict=True):
            keep = set(range(12))
            if k is not None:
                keep &= set(row.argsort(descending=True)[:k].tolist())
            if p is not None:  # the nucleus of the top-k distribution (top-k first, as Hugging Face orders them)
                probs = torch.zeros(12)
                probs[list(keep)] = (row[list(keep)] / 0.7).softmax(-1)
                nucleus, mass = set(), 0.0
                for i in probs.argsort(descending=True).tolist():
                    nucleus.add(i)
                    mass += probs[i].item()
                    if mass >= p:
                        break
                keep &= nucleus
            assert set(torch.isfinite(orow).nonzero().flatten().tolist()) == keep
            torch.testing.assert_close(orow[list(keep)], row[list(keep)] / 0.7)


def test_sampling_follows_the_filtered_distribution():
    logits = torch.tensor([2.0, 1.5, 1.0, 0.0, -1.0])
    step = lambda tokens, cache: (logits.expand(tokens.shape[0], tokens.shape[1], 5), cache)  # noqa: E731
    n = 4000
    out = sample(step, torch.zeros(n, 1, dtype=torch.long), max_new_tokens=1, top_k=3, temperature=0.5,
                 generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(out.tokens[:, 1], minlength=5).float() / n
    expected = torch.zeros(5)
    expected[:3] = (logits[:3] / 0.5).softmax(-1)
    assert (freq - expected).abs().max() < 4 * math.sqrt(0.25 / n)  # four standard deviations at most


def test_sampling_is_reproducible_cached_equals_recomputed_and_top_k_one_is_greedy():
    lm = TinyLM(rotary=True, num_kv_heads=2)
    prompt = _prompt()
    with torch.no_grad():
        a = sample(lm.step, prompt, max_new_tokens=12, top_p=0.9, generator=torch.Generator().manual_seed(7))
        b = sample(recompute(lm.full), prompt, max_new_tokens=12, top_p=0.9,
                   generator=torch.Generator().manual_seed(7))
        c = sample(lm.step, prompt, max_new_tokens=12, top_p=0.9, generator=torch.Generator().manual_seed(8))
        k1 = sample(lm.step, prompt, max_new_tokens=12, top_k=1, generator=torch.Generator().manual_seed(0))
        g = greedy(lm.step, prompt, max_new_tokens=12)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)
    assert torch.equal(k1.tokens, g.tokens)


def test_errors_name_the_argument():
    step = lambda tokens, cache: (torch.zeros(tokens.shape[0], tokens.shape[1], 3), cache)  # noqa: E731
    p = torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="prompt"):
        greedy(step, torch.zeros(1, 0, dtype=torch.long), max_new_tokens=1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy(step, p, max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        sample(step, p, max_new_tokens=1, temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        sample(step, p, max_new_tokens=1, top_p=1.5)
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(step, p, beam_width=0, max_new_tokens=1)
    with pytest.raises(ValueError, match="alpha"):
        beam_search(step, p, beam_width=2, max_new_tokens=1, alpha=-1)
    with pytest.raises(ValueError, match="eos_id"):
        greedy(step, p, max_new_tokens=1, eos_id=-1)
    with pytest.raises(ValueError, match="logits"):
        greedy(lambda t, c: (torch.zeros(3), c), p, max_new_tokens=1)
