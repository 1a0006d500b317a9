"""``masked-lm``: BERT-style masked-token pre-training of a small Transformer encoder.

Objective (:func:`qkv.tasks.masking.mask_tokens`; Devlin et al. 2019, §3.1 "Masked LM"): 15% of the word
positions are chosen, a chosen word becomes ``<mask>`` 80% of the time, a random word 10% and stays 10%;
the encoder predicts the original word at the chosen positions. Masks are drawn afresh for every batch
(dynamic masking, RoBERTa, Liu et al. 2019 §4.1), from a generator seeded by the batch's example indices, so
a resumed run sees the same masks.

Corpus (``corpus``): ``generated`` — sentences of :mod:`qkv.tasks.toy_grammar`, whose words are predictable
from context (number agreement, an animal's sound, home and prey, a fruit's colour, agreement across a
relative clause); ``tatoeba`` — the English side of the Tatoeba pairs (:mod:`qkv.tasks.tatoeba`,
``--data-dir``); ``auto`` (default) — ``tatoeba`` when ``fra.txt`` is found (``data_dir``, ``$QKV_DATA_DIR``,
then the cache: :func:`qkv.tasks.tatoeba.find_fra_txt`), else ``generated``. The result's metrics carry the
corpus as a prefix (``gen_masked_acc``, ``tatoeba_masked_acc``, ...): the targets are the generated corpus's.
Held-out sentences never occur in training.

Model (:class:`MaskedLMEncoder`): BERT's layout (word and learned position embeddings, LayerNorm, post-LN
:class:`qkv.models.TransformerEncoderLayer` with GELU, every attention ``qkv.attend`` with the scaled dot score
and a key-padding mask) and BERT's prediction head (dense, GELU, LayerNorm, decoder tied to the word embeddings).

Measured on held-out sentences with fixed masks: masked-token accuracy, against the **unigram baseline** —
always predicting the training corpus's commonest word, the best any context-free predictor can do. The
figures show the accuracy curve over training and every head of every layer on one held-out sentence with a
masked word.

Shape legend: ``B`` batch, ``L`` tokens (``<bos>`` words ``<eos>``, padded), ``E`` width, ``H`` heads, ``V`` vocabulary.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.experiments.base import DataUnavailable, Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.config import ConfigError
from qkv.experiments.registry import register
from qkv.experiments.seq2seq_common import model_device
from qkv.functional.masks import key_padding
from qkv.models.transformer import TransformerEncoder, TransformerEncoderLayer, TransformerOutput
from qkv.positional.learned import LearnedPositions
from qkv.tasks import tatoeba
from qkv.tasks.masking import IGNORE_INDEX, MaskedTokens, mask_tokens
from qkv.tasks.toy_grammar import make_sentences
from qkv.tasks.vocab import Vocab, word_tokenize
from qkv.train.loop import TrainConfig
from qkv.train.seeding import batch_seed

__all__ = ["MASK", "MLMModelConfig", "MaskedLM", "MaskedLMConfig", "MaskedLMEncoder", "MaskedSentences",
           "masked_accuracy"]

MASK = "<mask>"


@dataclass(frozen=True)
class MLMModelConfig:
    """The encoder: width, heads, layers, feed-forward width, dropout."""

    dim: int = 64
    num_heads: int = 4
    num_layers: int = 2
    ff_dim: int = 256
    dropout: float = 0.0


@dataclass(frozen=True)
class MaskedLMConfig:
    """Corpus, sizes and the masking rule.

    Attributes:
        corpus: ``"auto"``, ``"generated"`` or ``"tatoeba"`` (see the module docstring).
        data_dir: where Tatoeba's ``fra.txt`` is (``--data-dir``); empty: ``$QKV_DATA_DIR``, then the cache.
        train_sentences: training sentences (at most; Tatoeba may have fewer).
        valid_sentences, test_sentences: held-out sentences (distinct, never in training).
        max_words: Tatoeba sentences longer than this are skipped.
        min_freq: rarer words become ``<unk>`` (Tatoeba).
        select_prob, mask_frac, random_frac: the masking rule (15%, 80/10/10).
    """

    corpus: str = "auto"
    data_dir: str = ""
    train_sentences: int = 20000
    valid_sentences: int = 500
    test_sentences: int = 2000
    max_words: int = 12
    min_freq: int = 2
    select_prob: float = 0.15
    mask_frac: float = 0.8
    random_frac: float = 0.1
    model: MLMModelConfig = field(default_factory=MLMModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=3000, batch_size=128, lr=2e-3, warmup_steps=200, eval_every=250, checkpoint_every=500,
        weight_decay=0.01, monitor="masked_acc", monitor_mode="max"))

    def __post_init__(self) -> None:
        if self.corpus not in ("auto", "generated", "tatoeba"):
            raise ValueError(f"corpus must be 'auto', 'generated' or 'tatoeba', got {self.corpus!r}")
        for name in ("train_sentences", "valid_sentences", "test_sentences", "max_words", "min_freq"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.select_prob <= 1:
            raise ValueError(f"select_prob must be in (0, 1], got {self.select_prob}")


class MaskedLMEncoder(nn.Module):
    """BERT's layout, small: embeddings (+ learned positions, LayerNorm), post-LN encoder layers, the MLM head.

    Args:
        vocab_size: ``V``.
        max_length: the longest input (learned positions exist up to it).
        pad_id: padding id (its embedding is not trained).
        dim, num_heads, num_layers, ff_dim, dropout: the encoder's.
    """

    def __init__(self, vocab_size: int, *, max_length: int, pad_id: int, dim: int = 64, num_heads: int = 4,
                 num_layers: int = 2, ff_dim: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.positions = LearnedPositions(max_length, dim, init_std=0.02)
        self.embed_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        layer = TransformerEncoderLayer(dim, num_heads, ff_dim=ff_dim, dropout=dropout, activation="gelu")
        self.encoder = TransformerEncoder(layer, num_layers)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.head_bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, tokens: Tensor, keep: Tensor, *, return_weights: bool = False) -> tuple[Tensor,
                                                                                              TransformerOutput]:
        """``tokens (B, L)``, ``keep (B, L)`` (True = a real token) -> logits ``(B, L, V)`` and the encoder output."""
        x = self.dropout(self.embed_norm(self.positions(self.embed(tokens))))  # (B, L, E)
        out = self.encoder(x, mask=key_padding(keep), return_weights=return_weights)
        logits = self.head(out.output) @ self.embed.weight.t() + self.head_bias  # (B, L, V): tied decoder
        return logits, out


class MaskedSentences:
    """Sentences as ``<bos> words <eos>``; a :class:`qkv.train.BatchSource` whose batches are freshly masked.

    The mask of a batch is drawn from a generator seeded by ``seed`` and the batch's indices, so it is the
    same on a resumed run; :meth:`fixed` masks the whole set once (evaluation).
    """

    def __init__(self, sentences: list[list[str]], vocabulary: Vocab, *, seed: int, options: dict[str, Any]) -> None:
        self.tokens, self.lengths = vocabulary.pad_batch([vocabulary.encode(s, bos=True) for s in sentences])
        self.keep = torch.arange(self.tokens.shape[1])[None, :] < self.lengths[:, None]  # (N, L)
        self.seed, self.options = seed, options

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def _mask(self, indices: Tensor, seed: int) -> MaskedTokens:
        width = int(self.lengths[indices].max())
        return mask_tokens(self.tokens[indices, :width], keep=self.keep[indices, :width],
                           generator=torch.Generator().manual_seed(seed), **self.options)

    def batch(self, indices: Tensor) -> dict[str, Tensor]:
        m = self._mask(indices, batch_seed(self.seed, indices))
        return {"inputs": m.inputs, "labels": m.labels, "keep": m.keep}

    def fixed(self, seed: int) -> dict[str, Tensor]:
        """The whole set masked once with ``seed`` (the held-out sets' fixed masks)."""
        m = self._mask(torch.arange(len(self)), seed)
        return {"inputs": m.inputs, "labels": m.labels, "keep": m.keep}


def _loss(model: MaskedLMEncoder, batch: dict[str, Tensor]) -> Tensor:
    logits, _ = model(batch["inputs"], batch["keep"])
    # logits (B, L, V) -> (B·L, V), labels (B, L) -> (B·L,)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1),
                           ignore_index=IGNORE_INDEX)


def masked_accuracy(model: MaskedLMEncoder, data: dict[str, Tensor], *, batch_size: int = 500) -> dict[str, float]:
    """Accuracy and cross-entropy at the chosen positions of a fixed-masked set."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    correct = total = 0
    loss = 0.0
    with torch.no_grad():
        for i in range(0, data["inputs"].shape[0], batch_size):
            b = {k: v[i : i + batch_size].to(device) for k, v in data.items()}
            logits, _ = model(b["inputs"], b["keep"])
            sel = b["labels"] != IGNORE_INDEX
            correct += int((logits.argmax(-1)[sel] == b["labels"][sel]).sum())
            loss += float(F.cross_entropy(logits[sel], b["labels"][sel], reduction="sum"))
            total += int(sel.sum())
    model.train(was_training)
    return {"masked_acc": correct / max(total, 1), "masked_loss": loss / max(total, 1)}


def _split(sentences: list[list[str]], config: MaskedLMConfig, seed: int) -> dict[str, list[list[str]]]:
    """Distinct held-out sentences; training keeps every sentence (with repeats) not held out."""
    distinct = sorted({tuple(s) for s in sentences})
    perm = torch.randperm(len(distinct), generator=torch.Generator().manual_seed(seed)).tolist()
    n_valid, n_test = config.valid_sentences, config.test_sentences
    if len(distinct) < n_valid + n_test + 10:
        raise ValueError(f"only {len(distinct)} distinct sentences, need more than valid_sentences + "
                         f"test_sentences = {n_valid + n_test}")
    valid = [list(distinct[i]) for i in perm[:n_valid]]
    test = [list(distinct[i]) for i in perm[n_valid : n_valid + n_test]]
    held = {tuple(s) for s in valid + test}
    train = [s for s in sentences if tuple(s) not in held][: config.train_sentences]
    return {"train": train, "valid": valid, "test": test}


@register
class MaskedLM(Experiment):
    name = "masked-lm"
    description = "BERT-style masked-token pre-training of a small encoder: accuracy vs the unigram baseline, heads"
    Config = MaskedLMConfig
    targets = (
        Target("gen_masked_acc", ">=", 0.65, "held-out masked-token accuracy (generated corpus)"),
        Target("gen_gain_over_unigram", ">=", 0.45,
               "masked-token accuracy minus the unigram baseline's (generated corpus)"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {
        "train_sentences": 6000, "valid_sentences": 300, "test_sentences": 1000, "model.dim": 48,
        "model.ff_dim": 96, "train.max_steps": 400, "train.eval_every": 100, "train.lr": 3e-3,
        "train.warmup_steps": 50, "train.checkpoint_every": 400,
    }
    quick_targets = (
        Target("gen_gain_over_unigram", ">=", 0.25,
               "masked-token accuracy minus the unigram baseline's (generated corpus), quick run"),
    )

    def check(self, config: MaskedLMConfig, *, offline: bool = False) -> None:
        if config.data_dir:
            if config.corpus == "generated":
                raise ConfigError("--data-dir is for corpus=tatoeba (or auto), but corpus is 'generated'")
            try:
                tatoeba.check_data_dir(config.data_dir)
            except (FileNotFoundError, tatoeba.TatoebaFormatError) as e:
                raise ConfigError(f"--data-dir: {e}") from None

    def corpus(self, config: MaskedLMConfig, seed: int) -> tuple[str, list[list[str]]]:
        """The corpus's name and its sentences (word lists); DataUnavailable when Tatoeba is asked for and missing.

        ``auto`` looks for ``fra.txt`` where ``corpus=tatoeba`` would (``data_dir``, ``$QKV_DATA_DIR``, the cache)
        and falls back to the generated corpus when there is none.
        """
        data_dir = config.data_dir or None
        path = None
        if config.corpus != "generated":
            try:
                path = tatoeba.find_fra_txt(data_dir)
            except FileNotFoundError as e:
                raise DataUnavailable(f"{e}.\n{tatoeba.missing_data_message(data_dir)}") from None
            if path is None and config.corpus == "tatoeba":
                raise DataUnavailable(tatoeba.missing_data_message(data_dir))
        if path is None:
            # held-out sentences are distinct, and every copy of them leaves the training set: draw enough
            n = 2 * config.train_sentences + 3 * (config.valid_sentences + config.test_sentences)
            return "generated", make_sentences(n, generator=torch.Generator().manual_seed(seed))
        sentences = [word_tokenize(en) for en, _ in tatoeba.load_pairs(path)]
        return "tatoeba", [s for s in sentences if 0 < len(s) <= config.max_words]

    def run(self, config: MaskedLMConfig, ctx: RunContext) -> ExperimentResult:
        kind, sentences = self.corpus(config, ctx.seed)
        split = _split(sentences, config, ctx.seed)
        counts = Counter(w for s in split["train"] for w in s)
        vocabulary = Vocab([MASK, *sorted((w for w, c in counts.items() if c >= config.min_freq),
                                          key=lambda w: (-counts[w], w))])
        mask_id = vocabulary.stoi[MASK]
        options = {"vocab_size": len(vocabulary), "mask_id": mask_id, "pad_id": vocabulary.pad,
                   "special_ids": (vocabulary.bos, vocabulary.eos, vocabulary.unk), "select_prob": config.select_prob,
                   "mask_frac": config.mask_frac, "random_frac": config.random_frac}
        train = MaskedSentences(split["train"], vocabulary, seed=ctx.seed, options=options)
        valid = MaskedSentences(split["valid"], vocabulary, seed=ctx.seed, options=options).fixed(ctx.seed + 1)
        test = MaskedSentences(split["test"], vocabulary, seed=ctx.seed, options=options).fixed(ctx.seed + 2)
        ctx.log(f"  corpus {kind}: {len(split['train'])} train sentences, vocabulary {len(vocabulary)}")

        # the unigram baseline: the commonest training word that can be chosen, predicted everywhere
        choosable = Counter({w: c for w, c in counts.items() if vocabulary.stoi.get(w, vocabulary.unk) > mask_id})
        top_word = choosable.most_common(1)[0][0]
        labels = test["labels"][test["labels"] != IGNORE_INDEX]
        unigram = float((labels == vocabulary.stoi[top_word]).float().mean())

        ctx.seed_variant("encoder")
        m = config.model
        longest = max(len(s) for part in split.values() for s in part) + 2  # <bos> words <eos>
        model = MaskedLMEncoder(len(vocabulary), max_length=longest, pad_id=vocabulary.pad,
                                dim=m.dim, num_heads=m.num_heads, num_layers=m.num_layers, ff_dim=m.ff_dim,
                                dropout=m.dropout)
        fit = ctx.fit("encoder", model, train, _loss, train=config.train,
                      evaluate=lambda mod: masked_accuracy(mod, valid))
        model = model.cpu()
        result = masked_accuracy(model, test)
        prefix = "gen_" if kind == "generated" else "tatoeba_"  # the targets are the generated corpus's
        metrics = {f"{prefix}{k}": v for k, v in {
            **result, "unigram_acc": unigram, "gain_over_unigram": result["masked_acc"] - unigram,
            "masked_positions": int(labels.numel())}.items()}
        ctx.save_json("mlm_attention.json", {**self._attention(model, split["test"], vocabulary, mask_id),
                                             "unigram_acc": unigram, "top_word": top_word})
        return ExperimentResult(metrics=metrics, tables=[Table(
            "held-out masked-token accuracy", ["corpus", "train sentences", "masked positions", "masked acc",
                                               f"unigram baseline ('{top_word}')", "cross-entropy", "steps"],
            [[kind, len(split["train"]), int(labels.numel()), result["masked_acc"], unigram, result["masked_loss"],
              fit.steps]])],
            notes=[f"corpus {kind}: metrics carry the prefix {prefix}" + (
                "; no Tatoeba fra.txt found (--data-dir, $QKV_DATA_DIR, cache), so corpus=auto used the generated "
                "sentences" if config.corpus == "auto" and kind == "generated" else "")])

    @staticmethod
    def _attention(model: MaskedLMEncoder, sentences: list[list[str]], vocabulary: Vocab, mask_id: int
                   ) -> dict[str, Any]:
        """Every head of every layer on one held-out sentence with its last word before the final punctuation
        masked (in a relative-clause sentence of the generated corpus: the head noun's verb)."""
        sentence = max(sentences[:50], key=len)
        ids = vocabulary.encode(sentence, bos=True)
        masked = max(1, len(ids) - 3)  # ids: <bos> words . <eos>
        inputs = torch.tensor([ids])  # (1, L)
        inputs[0, masked] = mask_id
        model.eval()
        with torch.no_grad():
            logits, out = model(inputs, torch.ones_like(inputs, dtype=torch.bool), return_weights=True)
        tokens = ["<bos>", *sentence, "<eos>"]
        tokens[masked] = MASK
        rows = [[[[round(float(x), 4) for x in r] for r in head] for head in w[0]] for w in out.weights]  # (H, L, L)
        return {"tokens": tokens, "rows": rows, "masked": masked, "answer": sentence[masked - 1],
                "predicted": vocabulary.itos[int(logits[0, masked].argmax())]}

    def figures(self, run_dir: Path, config: MaskedLMConfig) -> list[Figure]:
        from qkv.train.metrics_log import MetricsLog
        from qkv.viz.heatmap import HeatmapPanel, save_attention_panels
        from qkv.viz.mpl import pyplot

        path = run_dir / "mlm_attention.json"
        if not path.exists():
            return []
        data = json.loads(path.read_text())
        figures = []
        curve = [(r["step"], r["masked_acc"]) for r in MetricsLog(run_dir / "metrics.jsonl").read()
                 if r.get("split") == "eval" and "masked_acc" in r]
        if curve:
            plt = pyplot()
            fig, ax = plt.subplots(figsize=(5.5, 3.5))
            ax.plot(*zip(*curve, strict=True), marker="o", ms=3, label="encoder (validation)")
            ax.axhline(data["unigram_acc"], color="gray", ls="--", label=f"unigram baseline ('{data['top_word']}')")
            ax.set_xlabel("step")
            ax.set_ylabel("masked-token accuracy")
            ax.set_ylim(0, 1)
            ax.legend(loc="lower right", fontsize=8)
            out = run_dir / "figures" / "masked_accuracy.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, dpi=100, bbox_inches="tight")
            plt.close(fig)
            figures.append(Figure("figures/masked_accuracy.png", "Masked-token accuracy on held-out sentences "
                                  "(fixed masks) during training, against always predicting the commonest word."))
        tokens = data["tokens"]
        panels = [HeatmapPanel(f"head {h + 1}", w, tokens, tokens) for row in data["rows"] for h, w in enumerate(row)]
        save_attention_panels(panels, run_dir / "figures" / "mlm_heads.png", ncols=len(data["rows"][0]),
                              row_labels=[f"layer {n + 1}" for n in range(len(data["rows"]))],
                              suptitle=f"masked '{data['answer']}', predicted '{data['predicted']}'")
        figures.append(Figure("figures/mlm_heads.png", "Every head of every encoder layer on one held-out sentence "
                              "with one word masked (rows: queries, columns: keys)."))
        return figures
