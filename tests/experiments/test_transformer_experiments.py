"""The Transformer experiments: registered, their models against independent references, tiny end-to-end runs."""

from __future__ import annotations

import math

import pytest
import torch
from einops import rearrange

from qkv.experiments import all_experiments
from qkv.experiments.masked_lm import MASK, MaskedLMEncoder, MaskedSentences, masked_accuracy
from qkv.experiments.runner import run_experiment
from qkv.experiments.transformer_algorithmic import AlgorithmicTransformer, exact_match
from qkv.experiments.vision_attention import DigitViT, ShiftedImages, shift
from qkv.functional.attention import attend
from qkv.functional.masks import key_padding
from qkv.models.decoding import greedy, recompute
from qkv.tasks.algorithmic import encode_pairs, make_pairs, vocab
from qkv.tasks.masking import IGNORE_INDEX
from qkv.tasks.vocab import Vocab

NAMES = ("transformer-algorithmic", "masked-lm", "vision-attention")


def test_registered():
    assert set(NAMES) <= {e.name for e in all_experiments()}


def test_cached_greedy_decoding_equals_recomputation():
    torch.manual_seed(0)
    v = vocab()
    model = AlgorithmicTransformer(len(v), max_length=16, pad_id=v.pad, bos_id=v.bos, eos_id=v.eos, dim=32,
                                   num_heads=4, num_layers=2, ff_dim=64).eval()
    data = encode_pairs(make_pairs("reverse", 6, min_length=2, max_length=7, generator=torch.Generator()), v)
    src, src_len = data.src, data.src_len
    cached = model.generate(src, src_len, max_new_tokens=9)

    def forward(tokens):
        return model(src, src_len, tokens)[0]

    prompt = torch.full((len(src), 1), v.bos)
    full = greedy(recompute(forward), prompt, max_new_tokens=9, eos_id=v.eos, pad_id=v.pad).tokens[:, 1:]
    assert torch.equal(cached, full)
    acc, outputs = exact_match(model, data, v)
    assert len(outputs) == 6 and acc == sum(o == t for o, t in zip(outputs, data.targets, strict=True)) / 6


def test_cross_attention_ignores_source_padding():
    torch.manual_seed(1)
    v = vocab()
    model = AlgorithmicTransformer(len(v), max_length=16, pad_id=v.pad, bos_id=v.bos, eos_id=v.eos, dim=32,
                                   num_heads=2, num_layers=1, ff_dim=64).eval()
    data = encode_pairs([("123", "321"), ("45", "54")], v)
    _, out = model(data.src, data.src_len, data.tgt[:, :-1], return_weights=True)
    w = out.cross_weights[0]  # (B, H, T, S)
    assert torch.all(w[1, :, :, 2:] == 0) and torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)))
    assert out.encoder.weights[0].shape == (2, 2, 3, 3)


def test_masked_lm_weights_are_attend_on_the_projections():
    torch.manual_seed(2)
    model = MaskedLMEncoder(20, max_length=8, pad_id=0, dim=16, num_heads=2, num_layers=1, ff_dim=32).eval()
    tokens = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])
    keep = tokens != 0
    logits, out = model(tokens, keep, return_weights=True)
    x = model.embed_norm(model.positions(model.embed(tokens)))
    attn = model.encoder.layers[0].self_attn
    q = rearrange(attn.q_proj(x), "b l (h d) -> b h l d", h=2)  # (B, H, L, d)
    k = rearrange(attn.k_proj(x), "b s (h d) -> b h s d", h=2)  # (B, H, S, d)
    ref = attend(q, k, k, mask=key_padding(keep), return_weights=True).weights
    assert torch.allclose(out.weights[0], ref, atol=1e-6)
    assert logits.shape == (2, 5, 20) and torch.all(out.weights[0][1, :, :, 3:] == 0)


def test_masked_batches_are_reproducible_and_evaluated_at_chosen_positions():
    v = Vocab([MASK, "a", "b", "c"])
    options = {"vocab_size": len(v), "mask_id": 4, "pad_id": 0, "special_ids": (1, 2, 3), "select_prob": 0.5}
    data = MaskedSentences([["a", "b", "c"] * 3, ["b", "c"]], v, seed=0, options=options)
    idx = torch.tensor([1, 0])
    b1, b2 = data.batch(idx), data.batch(idx)
    assert all(torch.equal(b1[k], b2[k]) for k in b1)
    chosen = b1["labels"] != IGNORE_INDEX
    assert chosen.any() and torch.all(b1["keep"][chosen])
    fixed = data.fixed(1)
    model = MaskedLMEncoder(len(v), max_length=12, pad_id=0, dim=8, num_heads=2, num_layers=1, ff_dim=16)
    logits, _ = model(fixed["inputs"], fixed["keep"])
    sel = fixed["labels"] != IGNORE_INDEX
    expected = float((logits.argmax(-1)[sel] == fixed["labels"][sel]).float().mean())
    assert masked_accuracy(model, fixed)["masked_acc"] == pytest.approx(expected)


def test_shift_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 1, 8, 8, generator=g)
    dy, dx = torch.tensor([0, 1, -1, 2, -2]), torch.tensor([1, 0, -2, 2, 0])
    out = shift(images, dy, dx)
    ref = torch.zeros_like(images)
    for b in range(5):
        for r in range(8):
            for c in range(8):
                rs, cs = r - int(dy[b]), c - int(dx[b])
                if 0 <= rs < 8 and 0 <= cs < 8:
                    ref[b, 0, r, c] = images[b, 0, rs, cs]
    assert torch.equal(out, ref)
    data = ShiftedImages(images, torch.arange(5), max_shift=1, seed=0)
    assert torch.equal(data.batch(torch.tensor([0, 3]))["images"], data.batch(torch.tensor([0, 3]))["images"])


def test_vit_weights_match_a_naive_softmax_with_the_2d_bias():
    torch.manual_seed(3)
    model = DigitViT(patch=2, dim=16, num_heads=2, num_layers=1, ff_dim=32, dropout=0.0).eval()
    layer = model.encoder.layers[0]
    with torch.no_grad():
        layer.self_attn.position_bias.weight.normal_()
    images = torch.rand(2, 1, 8, 8)
    _, out = model(images, return_weights=True)
    x = layer.norm1(model.embed(images))  # (B, 17, E)
    q = rearrange(layer.self_attn.q_proj(x), "b l (h d) -> b h l d", h=2)  # (B, H, L, d)
    k = rearrange(layer.self_attn.k_proj(x), "b s (h d) -> b h s d", h=2)  # (B, H, S, d)
    table = layer.self_attn.position_bias.weight  # (H, 7, 7)
    bias = torch.zeros(2, 17, 17)
    for i in range(1, 17):
        for j in range(1, 17):
            (ri, ci), (rj, cj) = divmod(i - 1, 4), divmod(j - 1, 4)
            bias[:, i, j] = table[:, rj - ri + 3, cj - ci + 3]
    ref = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8) + bias, dim=-1)
    assert torch.allclose(out.weights[0], ref, atol=1e-5)
    grid = model.patch_attention(out.weights[0])
    assert grid.shape == (2, 2, 4, 4) and torch.equal(grid[1, 0, 2, 3], out.weights[0][1, 0, 0, 1 + 2 * 4 + 3])


TINY = {
    "transformer-algorithmic": ["tasks=copy,addition", "data.max_length=3", "data.addition_max_digits=2",
                                "data.train_size=200", "data.valid_size=20", "data.test_size=20", "model.dim=16",
                                "model.ff_dim=32", "model.num_layers=1", "train.max_steps=3", "train.eval_every=3"],
    "masked-lm": ["train_sentences=300", "valid_sentences=20", "test_sentences=30", "model.dim=16",
                  "model.ff_dim=32", "model.num_layers=1", "train.max_steps=3", "train.eval_every=3"],
    "vision-attention": ["model.dim=16", "model.ff_dim=32", "model.num_layers=1", "train.max_steps=3",
                         "train.eval_every=3"],
}


@pytest.mark.parametrize("name", [
    "vision-attention",  # the runner, figures and report end to end, in the default suite (a few seconds)
    pytest.param("transformer-algorithmic", marks=pytest.mark.slow),
    pytest.param("masked-lm", marks=pytest.mark.slow),
])
def test_tiny_run_end_to_end(name, tmp_path):
    summary = run_experiment(name, overrides=TINY[name], out=tmp_path, progress=False, log=lambda m: None)
    assert summary["status"] == "ok" and summary["metrics"]
    assert list((tmp_path / "figures").glob("*.png"))


def test_masked_lm_auto_finds_tatoeba_where_the_loader_looks_and_else_uses_generated(tmp_path, monkeypatch):
    from qkv.experiments.masked_lm import MaskedLM, MaskedLMConfig

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("QKV_DATA_DIR", str(tmp_path / "none"))
    config = MaskedLMConfig(train_sentences=20, valid_sentences=2, test_sentences=2)
    assert MaskedLM().corpus(config, 0)[0] == "generated"
    data = tmp_path / "data"
    data.mkdir()
    (data / "fra.txt").write_text("".join(f"I see {i} cats.\tJe vois {i} chats.\tCC\n" for i in range(30)))
    monkeypatch.setenv("QKV_DATA_DIR", str(data))  # no --data-dir: auto still finds it, as corpus=tatoeba does
    kind, sentences = MaskedLM().corpus(config, 0)
    assert kind == "tatoeba" and len(sentences) == 30 and sentences[0] == ["i", "see", "0", "cats", "."]
    # the targets are the generated corpus's only: a Tatoeba run's tatoeba_* metrics leave them unchecked
    assert all(t.metric.startswith("gen_") for t in (*MaskedLM.targets, *MaskedLM.quick_targets))


def test_masked_lm_tatoeba_corpus_is_skipped_without_data(tmp_path, monkeypatch):
    monkeypatch.setenv("QKV_DATA_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    summary = run_experiment("masked-lm", overrides=["corpus=tatoeba"], out=tmp_path / "run", progress=False,
                             log=lambda m: None)
    assert summary["status"] == "skipped" and "fra" in summary["notes"][0]
