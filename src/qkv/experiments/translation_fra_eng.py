"""``translation-fra-eng``: the seq2seq attention variants on real English -> French sentence pairs.

Data: Tatoeba pairs as packaged by manythings.org (:mod:`qkv.tasks.tatoeba`): ``--data-dir``,
``$QKV_DATA_DIR``, the cache, or, on first use, a download into the cache (a 10-second network
timeout; ``--offline`` or ``--set download=false`` never downloads). Short sentences only
(``max_words`` tokens per side). The split is by *English sentence* (seeded shuffle), so no test
source sentence was seen in training; every French translation of a test sentence is a
reference for BLEU (Papineni et al. 2002), computed by sacrebleu (:mod:`qkv.tasks.bleu`; default
13a tokenizer over qkv's space-joined word tokens, its signature recorded in the notes). Models:
:class:`qkv.models.Seq2Seq` with the attention variants of ``seq2seq-attention`` (Bahdanau et al.
2015; Luong et al. 2015).

An explicit ``--data-dir`` that cannot be used (no such path, ``fra.txt`` not a regular file,
empty or not in Tatoeba's format) is a usage error; a directory that simply holds no Tatoeba
data (the tour passes one ``--data-dir`` to every experiment) is not, and the experiment is
skipped with instructions.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from qkv.experiments.base import DataUnavailable, Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.config import ConfigError
from qkv.experiments.registry import register
from qkv.experiments.seq2seq_common import (
    PairBatches,
    attention_figures,
    check_variants,
    greedy_decode,
    heatmap_entry,
    save_heatmap_data,
    seq2seq_loss,
    teacher_forced,
    variant_model,
)
from qkv.models.seq2seq import Seq2SeqConfig
from qkv.tasks import tatoeba
from qkv.tasks.bleu import corpus_bleu
from qkv.tasks.vocab import Vocab, word_tokenize
from qkv.train.loop import TrainConfig

__all__ = ["TranslationFraEng", "TranslationFraEngConfig"]


@dataclass(frozen=True)
class TranslationFraEngConfig:
    """Config of ``translation-fra-eng``.

    Attributes:
        data_dir: where ``fra.txt`` (or ``fra-eng.zip``) is; empty: ``$QKV_DATA_DIR``, then the cache.
        download: fetch the archive into the cache when it is not found (not with ``--offline``).
        max_words: keep pairs with at most this many tokens on each side.
        max_pairs: use only the first ``max_pairs`` qualifying pairs (0: all).
        valid_size, test_size: English sentences held out for validation / test.
        min_freq: tokens seen fewer times in training become ``<unk>``.
    """

    data_dir: str = ""
    download: bool = True
    max_words: int = 8
    max_pairs: int = 0
    valid_size: int = 300
    test_size: int = 1000
    min_freq: int = 2
    variants: tuple[str, ...] = ("global/additive", "global/dot", "global/general", "global/concat",
                                 "local-p/general")
    model: Seq2SeqConfig = field(default_factory=lambda: Seq2SeqConfig(embed_dim=64, hidden=128, window=3,
                                                                        dropout=0.2))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=3000, batch_size=64, lr=3e-3, warmup_steps=100, eval_every=500, checkpoint_every=500,
        monitor="bleu", monitor_mode="max", patience=3,
    ))

    def __post_init__(self) -> None:
        check_variants(self.variants)
        if self.max_words < 1 or self.max_pairs < 0 or self.valid_size < 1 or self.test_size < 1:
            raise ValueError(
                f"need max_words >= 1, max_pairs >= 0, valid_size >= 1, test_size >= 1; got {self.max_words}, "
                f"{self.max_pairs}, {self.valid_size}, {self.test_size}"
            )


def split_pairs(pairs: list[tuple[list[str], list[str]]], *, seed: int, valid: int, test: int) -> dict[str, list]:
    """Group pairs by English sentence, shuffle the sentences with ``seed`` and split them.

    Returns ``{"train": [(src, tgt)], "valid"/"test": [(src, [refs])]}``.

    Raises:
        ValueError: fewer distinct English sentences than ``valid + test + 1``.
    """
    groups: dict[tuple[str, ...], list[list[str]]] = defaultdict(list)
    for src, tgt in pairs:
        groups[tuple(src)].append(tgt)
    keys = sorted(groups)
    if len(keys) < valid + test + 1:
        raise ValueError(f"only {len(keys)} distinct English sentences, need more than valid_size + test_size = "
                         f"{valid + test}; lower them or raise max_words / max_pairs")
    random.Random(seed).shuffle(keys)
    held = {"valid": keys[:valid], "test": keys[valid : valid + test]}
    train = [(list(k), t) for k in keys[valid + test :] for t in groups[k]]
    return {"train": train, **{name: [(list(k), groups[k]) for k in ks] for name, ks in held.items()}}


@register
class TranslationFraEng(Experiment):
    name = "translation-fra-eng"
    description = "The seq2seq attention variants on Tatoeba English->French short sentences, BLEU per variant"
    Config = TranslationFraEngConfig
    targets = (Target("best_bleu", ">=", 25.0, "best variant, sacrebleu corpus BLEU on held-out English sentences"),)
    quick_overrides: ClassVar[dict[str, Any]] = {
        "max_words": 5, "max_pairs": 6000, "valid_size": 100, "test_size": 300,
        "variants": ("global/additive", "global/general", "local-p/general"),
        "model.hidden": 96, "model.dropout": 0.0, "train.max_steps": 500, "train.lr": 5e-3, "train.warmup_steps": 30,
        "train.eval_every": 250, "train.checkpoint_every": 250, "train.patience": 0,
    }
    quick_targets = (Target("best_bleu", ">=", 8.0, "best variant, sacrebleu corpus BLEU after the quick run"),)

    def check(self, config: TranslationFraEngConfig, *, offline: bool = False) -> None:
        """An explicit ``data_dir`` must exist and hold a usable ``fra.txt`` if it holds one (a usage error)."""
        if config.data_dir:
            try:
                tatoeba.check_data_dir(config.data_dir)
            except (FileNotFoundError, tatoeba.TatoebaFormatError) as e:
                raise ConfigError(f"--data-dir: {e}") from None

    def load(self, config: TranslationFraEngConfig, *, offline: bool = False) -> list[tuple[list[str], list[str]]]:
        """Tokenized, length-filtered (English, French) pairs; DataUnavailable if there is no data."""
        data_dir = config.data_dir or None
        try:
            path = tatoeba.find_fra_txt(data_dir)
        except FileNotFoundError as e:
            raise DataUnavailable(f"{e}.\n{tatoeba.missing_data_message(data_dir)}") from None
        if path is None and config.download and not offline:
            try:
                path = tatoeba.download(timeout=10.0)
            except (OSError, ValueError) as e:
                raise DataUnavailable(f"downloading {tatoeba.URL} failed: {e}\n"
                                      f"{tatoeba.missing_data_message(data_dir)}") from None
        if path is None:
            why = "--offline: not downloading. " if offline and config.download else ""
            raise DataUnavailable(why + tatoeba.missing_data_message(data_dir))
        pairs = []
        for en, fr in tatoeba.load_pairs(path):
            src, tgt = word_tokenize(en), word_tokenize(fr)
            if 0 < len(src) <= config.max_words and 0 < len(tgt) <= config.max_words:
                pairs.append((src, tgt))
                if config.max_pairs and len(pairs) >= config.max_pairs:
                    break
        return pairs

    def run(self, config: TranslationFraEngConfig, ctx: RunContext) -> ExperimentResult:
        pairs = self.load(config, offline=ctx.offline)
        split = split_pairs(pairs, seed=ctx.seed, valid=config.valid_size, test=config.test_size)
        train = split["train"]
        src_vocab = Vocab.build([s for s, _ in train], min_freq=config.min_freq)
        tgt_vocab = Vocab.build([t for _, t in train], min_freq=config.min_freq)
        train_data = PairBatches([s for s, _ in train], [t for _, t in train], src_vocab, tgt_vocab)
        held = {}
        for name in ("valid", "test"):
            items = split[name]
            # the first reference is the teacher-forced target; all references count for BLEU
            held[name] = (PairBatches([s for s, _ in items], [r[0] for _, r in items], src_vocab, tgt_vocab),
                          [r for _, r in items])
        shown_idx = [i for i, (s, _) in enumerate(split["test"]) if len(s) >= 3][:3] or [0]
        shown = PairBatches([split["test"][i][0] for i in shown_idx], [split["test"][i][1][0] for i in shown_idx],
                            src_vocab, tgt_vocab)
        max_len = config.max_words + 3
        ctx.log(f"  {len(pairs)} pairs (<= {config.max_words} tokens): {len(train)} train pairs, "
                f"{config.valid_size} valid / {config.test_size} test English sentences; "
                f"vocab en {len(src_vocab)}, fr {len(tgt_vocab)}")

        signature = [""]

        def bleu_of(model: torch.nn.Module, name: str, progress: bool = False) -> tuple[float, float]:
            data, refs = held[name]
            dec = greedy_decode(model, data, tgt_vocab, max_len=max_len, progress=progress, desc=f"{name} decode")
            em = sum(h in r for h, r in zip(dec.tokens, refs, strict=True)) / len(refs)
            bleu = corpus_bleu(dec.tokens, refs)
            signature[0] = bleu.signature
            return bleu.score, em

        rows, metrics, panels = [], {}, []
        for variant in config.variants:
            ctx.seed_variant(variant)
            model = variant_model(variant, config.model, src_vocab, tgt_vocab)

            def evaluate(m: torch.nn.Module) -> dict[str, float]:
                bleu, _ = bleu_of(m, "valid")
                return {"bleu": bleu, "loss": teacher_forced(m, held["valid"][0])[0]}

            fit = ctx.fit(variant, model, train_data, seq2seq_loss, train=config.train, evaluate=evaluate)
            with torch.no_grad():
                bleu, em = bleu_of(model, "test", progress=ctx.progress)
                loss, tok_acc, _ = teacher_forced(model, held["test"][0])
                dec = greedy_decode(model, shown, tgt_vocab, max_len=max_len)
            metrics[f"bleu/{variant}"] = bleu
            rows.append([variant, bleu, em, tok_acc, loss, fit.steps, fit.best_step or fit.steps])
            for j, i in enumerate(shown_idx):
                target = [*dec.tokens[j], "<eos>"][: dec.weights[j].shape[0]]
                panels.append(heatmap_entry(variant, split["test"][i][0], target, dec.weights[j], j))
            ctx.log(f"  {variant}: BLEU {bleu:.2f}, exact match {em:.3f}")
        metrics["best_bleu"] = max(metrics[f"bleu/{v}"] for v in config.variants)
        save_heatmap_data(ctx.path("attention.json"), panels)
        table = Table("Held-out English sentences per variant",
                      ["variant", "BLEU", "exact match (any reference)", "token accuracy (first ref.)",
                       "loss (first ref.)", "steps", "best step"], rows)
        ctx.save_json("variants.json", {"rows": rows, "bleu_signature": signature[0]})
        notes = [f"BLEU: sacrebleu corpus BLEU ({signature[0]}) over qkv's word tokens (lower-cased, punctuation "
                 f"split) joined by spaces; all French translations of a test sentence are references; "
                 f"{len(pairs)} pairs with <= {config.max_words} tokens per side."]
        return ExperimentResult(metrics=metrics, tables=[table], notes=notes)

    def figures(self, run_dir: Path, config: TranslationFraEngConfig) -> list[Figure]:
        return attention_figures(run_dir, "Greedy translation of held-out sentence {n}: attention per variant "
                                 "(rows: French output words, columns: English input words).", ncols=3)
