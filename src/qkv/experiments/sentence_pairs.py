"""``sentence-pairs``: BCNN vs ABCNN-1/2/3 vs attention-based MPCNN on sentence pairs, with attention that
has a right answer.

Task (:mod:`qkv.tasks.sentence_pairs`): seeded synthetic paraphrase pairs — synonym substitution,
active/passive, a moved prepositional phrase — against non-paraphrases made by swapping who did what to whom,
inserting ``not`` or replacing a word. The gold alignment of each pair is known, so besides accuracy the
run measures **alignment accuracy**: for each word of sentence 0 with a gold partner, is the attention
row's argmax over sentence 1 the partner (chance: ``1 / len(sentence 1)``, about 0.1)? Words start from
"pretrained" clustered vectors (synonyms near each other, as word2vec would place them), which are then
trained.

Models: :class:`qkv.models.abcnn.ABCNN` (Yin et al. 2016; ``bcnn`` has no attention, ``abcnn1`` attends
on the input, ``abcnn2`` on the convolution outputs, ``abcnn3`` both) and :class:`qkv.models.mpcnn.MPCNN`
with He et al. 2016's parameter-free cosine attention interaction. Each attention matrix is the ``scores``
of one ``qkv.attend`` call (:func:`qkv.functional.pair_attention.pair_attention_matrix`). Alignment is
measured on the first layer's matrices: ``input`` (words x words) and ``conv`` (the block of the
convolution-column matrix centred on the words, :func:`qkv.models.abcnn.conv_word_view`).

``--set data.dataset=sick`` (with ``--data-dir`` holding ``SICK.txt``) trains the same variants on SICK's
3-way entailment labels (no alignment there). Reference only: ABCNN-3 reaches 86.2% on SICK entailment
(Yin et al. 2016, table 7, with word2vec and linguistic features this run does not have).

Shape legend: ``N`` pairs, ``L`` padded length, ``Lc = L + w - 1`` convolution columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from qkv.experiments.base import DataUnavailable, Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.config import ConfigError
from qkv.experiments.registry import register
from qkv.experiments.seq2seq_common import model_device
from qkv.models.abcnn import ABCNN, ABCNN_VARIANTS, conv_word_view
from qkv.models.mpcnn import MPCNN
from qkv.tasks import sentence_pairs as sp
from qkv.train.loop import TensorBatches, TrainConfig
from qkv.viz.heatmap import HeatmapPanel, save_attention_panels

__all__ = ["PairDataConfig", "PairModelConfig", "SentencePairsConfig", "SentencePairsExperiment"]

VARIANTS = (*ABCNN_VARIANTS, "mpcnn-attention", "mpcnn")
KINDS = ("active", "passive", *sp.NEGATIVE_KINDS)  # how sentence 1 was made (synthetic task)


@dataclass(frozen=True)
class PairDataConfig:
    """``dataset``: ``"synthetic"`` or ``"sick"``; the synthetic task's sizes and probabilities."""

    dataset: str = "synthetic"
    train_pairs: int = 8000
    test_pairs: int = 1000
    synonym_p: float = 0.5
    embedding_noise: float = 0.5  # of the clustered "pretrained" vectors (synonym cosine ~ 1/(1 + noise²))
    download: bool = False  # SICK: fetch sp.SICK_URL into the cache when it is nowhere else

    def __post_init__(self) -> None:
        if self.dataset not in ("synthetic", "sick"):
            raise ValueError(f"data.dataset must be 'synthetic' or 'sick', got {self.dataset!r}")
        if self.train_pairs < 2 or self.test_pairs < 2:
            raise ValueError(f"data.train_pairs and data.test_pairs must be >= 2, got {self.train_pairs}, "
                             f"{self.test_pairs}")
        if not 0 <= self.synonym_p <= 1 or self.embedding_noise < 0:
            raise ValueError(f"data.synonym_p must be in [0, 1] and data.embedding_noise >= 0, got "
                             f"{self.synonym_p}, {self.embedding_noise}")


@dataclass(frozen=True)
class PairModelConfig:
    """Widths shared by the variants; ABCNN's filter width and layers; MPCNN's filter counts."""

    embed_dim: int = 32
    hidden_dim: int = 32
    width: int = 3
    num_layers: int = 1
    trainable_embeddings: bool = True
    pair_features: bool = True  # ABCNN: add |r0 - r1| and r0 * r1 to the LR input
    holistic_filters: int = 16
    per_dim_filters: int = 2


@dataclass(frozen=True)
class SentencePairsConfig:
    variants: tuple[str, ...] = VARIANTS[:5]
    data: PairDataConfig = field(default_factory=PairDataConfig)
    model: PairModelConfig = field(default_factory=PairModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=3000, batch_size=64, lr=3e-3, warmup_steps=50, eval_every=500, checkpoint_every=500,
        monitor="acc", monitor_mode="max"))
    data_dir: str = ""
    shown_pairs: int = 3

    def __post_init__(self) -> None:
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise ValueError(f"variants must be a non-empty selection of {VARIANTS}, got {self.variants}")


def _data(config: SentencePairsConfig, seed: int, offline: bool) -> tuple[sp.SentencePairs, sp.SentencePairs]:
    if config.data.dataset == "synthetic":
        gen = torch.Generator().manual_seed(seed)
        kw = {"generator": gen, "synonym_p": config.data.synonym_p}
        return sp.make_pairs(config.data.train_pairs, **kw), sp.make_pairs(config.data.test_pairs, **kw)
    data_dir = config.data_dir or None
    try:
        path = sp.find_sick(data_dir)
    except FileNotFoundError as e:
        raise DataUnavailable(f"{e}; put SICK.txt there") from None
    if path is None and config.data.download and not offline:
        try:
            path = sp.download()
        except (OSError, ValueError) as e:
            raise DataUnavailable(f"downloading {sp.SICK_URL} failed: {e}") from None
    if path is None:
        raise DataUnavailable(f"SICK.txt not found in {data_dir or '(no --data-dir)'}, $QKV_DATA_DIR or "
                              f"{sp.cache_dir()}; pass --data-dir PATH (PATH/SICK.txt) or --set data.download=true "
                              f"(fetches {sp.SICK_URL})")
    sets = sp.load_sick(path)
    return sets["TRAIN"], sets["TEST"]


def _build(variant: str, config: PairModelConfig, pairs: sp.SentencePairs, num_classes: int,
           vectors: torch.Tensor) -> nn.Module:
    common = {"num_classes": num_classes, "embed_dim": config.embed_dim, "vectors": vectors,
              "trainable_embeddings": config.trainable_embeddings}
    if variant in ABCNN_VARIANTS:
        return ABCNN(len(pairs.vocab), variant=variant, length=pairs.tokens0.shape[1], hidden_dim=config.hidden_dim,
                     width=config.width, num_layers=config.num_layers, pair_features=config.pair_features, **common)
    return MPCNN(len(pairs.vocab), attention=variant == "mpcnn-attention", holistic_filters=config.holistic_filters,
                 per_dim_filters=config.per_dim_filters, hidden_dim=2 * config.hidden_dim, **common)


def _batch_call(model: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
    return model(batch["tokens0"], batch["tokens1"], batch["lengths0"], batch["lengths1"])


def _loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(_batch_call(model, batch).logits, batch["labels"])


def _tensors(pairs: sp.SentencePairs) -> dict[str, torch.Tensor]:
    return {"tokens0": pairs.tokens0, "tokens1": pairs.tokens1, "lengths0": pairs.lengths0,
            "lengths1": pairs.lengths1, "labels": pairs.labels}


def word_attention(attention: list[dict[str, torch.Tensor]], *, width: int, length: int) -> dict[str, torch.Tensor]:
    """The first layer's attention matrices as words x words: ``input`` as is, ``conv`` by :func:`conv_word_view`."""
    if not attention:
        return {}
    first = attention[0]
    out = {}
    if "input" in first:
        out["input"] = first["input"]
    if "conv" in first:
        out["conv"] = conv_word_view(first["conv"], width, length)
    return out


def _measure(model: nn.Module, pairs: sp.SentencePairs, width: int) -> dict[str, float]:
    device = model_device(model)
    model.eval()
    hits, matrices = [], {}
    with torch.no_grad():
        for start in range(0, len(pairs), 500):
            batch = {k: v[start: start + 500].to(device) for k, v in _tensors(pairs).items()}
            out = _batch_call(model, batch)
            hits.append((out.logits.argmax(-1) == batch["labels"]).cpu())
            for level, a in word_attention(out.attention, width=width, length=pairs.tokens0.shape[1]).items():
                matrices.setdefault(level, []).append(a.cpu())
    model.train()
    hit = torch.cat(hits).float()
    metrics = {"acc": float(hit.mean())}
    for kind in sorted(set(pairs.kinds)) if len(set(pairs.kinds)) > 1 else ():  # accuracy per way of making the pair
        metrics[f"kind_{kind}"] = float(hit[[i for i, k in enumerate(pairs.kinds) if k == kind]].mean())
    if bool((pairs.align >= 0).any()):
        for level, parts in matrices.items():
            metrics[f"align_{level}"] = sp.alignment_accuracy(torch.cat(parts), pairs.align, pairs.lengths1)
    return metrics


def _shown(pairs: sp.SentencePairs, count: int) -> list[int]:
    """Up to ``count`` test pairs for the figure, one per way of making the pair first (passive, swap, replace...)."""
    order = ("passive", "swap", "replace", "negation", "active")
    firsts = [pairs.kinds.index(k) for k in order if k in pairs.kinds]
    rest = [n for n in range(len(pairs)) if n not in firsts]
    return (firsts + rest)[:count]


def _slug(variant: str) -> str:
    return variant.replace("-", "_")


@register
class SentencePairsExperiment(Experiment):
    name = "sentence-pairs"
    description = "BCNN vs ABCNN-1/2/3 vs attention MPCNN on synthetic paraphrase pairs: accuracy and word alignment"
    Config = SentencePairsConfig
    targets = (
        Target("acc_abcnn3", ">=", 0.95, "ABCNN-3 held-out accuracy (synthetic pairs; no paper number for this task)"),
        Target("align_abcnn1_input", ">=", 0.8, "ABCNN-1's input attention: argmax at the gold partner"),
        Target("align_abcnn2_conv", ">=", 0.6, "ABCNN-2's convolution-level attention: argmax at the gold partner"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {
        "data.train_pairs": 2000, "data.test_pairs": 500, "train.max_steps": 200, "train.batch_size": 32,
        "train.lr": 1e-2, "train.eval_every": 200, "train.checkpoint_every": 200, "train.warmup_steps": 10,
        "model.embed_dim": 24, "model.hidden_dim": 24, "model.holistic_filters": 8,
    }
    quick_targets = (
        Target("acc_mpcnn_attention", ">=", 0.8, "attention MPCNN held-out accuracy after the quick run (chance 0.5)"),
        Target("acc_abcnn3", ">=", 0.65, "ABCNN-3 held-out accuracy after the quick run (chance 0.5)"),
        Target("align_abcnn1_input", ">=", 0.5, "ABCNN-1 input attention alignment (chance ~0.12)"),
        Target("align_abcnn2_conv", ">=", 0.3, "ABCNN-2 convolution-level attention alignment (chance ~0.12)"),
        Target("align_mpcnn_attention_input", ">=", 0.5, "MPCNN cosine attention alignment (chance ~0.12)"),
    )

    def check(self, config: SentencePairsConfig, *, offline: bool = False) -> None:
        """An explicit ``data_dir`` must exist (a usage error)."""
        if config.data_dir and not Path(config.data_dir).expanduser().exists():
            raise ConfigError(f"--data-dir: {config.data_dir!r} does not exist")

    def run(self, config: SentencePairsConfig, ctx: RunContext) -> ExperimentResult:
        train, test = _data(config, ctx.seed, ctx.offline)
        num_classes = int(max(train.labels.max(), test.labels.max())) + 1
        vectors = sp.clustered_vectors(train.vocab, config.model.embed_dim, noise=config.data.embedding_noise,
                                       generator=torch.Generator().manual_seed(ctx.seed + 1))
        L, width = train.tokens0.shape[1], config.model.width
        metrics: dict[str, float] = {}
        chance = sp.chance_alignment(test)
        if chance == chance:  # not NaN: the data has gold alignments
            metrics["chance_align"] = chance
            cos = torch.einsum("nld,nsd->nls", *(F.normalize(vectors[t], dim=-1) for t in (test.tokens0, test.tokens1)))
            metrics["embedding_align"] = sp.alignment_accuracy(cos, test.align, test.lengths1)
        rows, shown = [], _shown(test, config.shown_pairs)
        saved: dict[str, Any] = {"pairs": [{"words": test.words(n), "label": int(test.labels[n]),
                                            "kind": test.kinds[n]} for n in shown], "variants": {}}
        data = TensorBatches(**_tensors(train))
        for variant in config.variants:
            ctx.seed_variant(variant)
            model = _build(variant, config.model, train, num_classes, vectors)
            fit = ctx.fit(variant, model, data, _loss, train=config.train, evaluate=lambda m: _measure(m, test, width))
            model = model.cpu()
            got = _measure(model, test, width)
            metrics[f"acc_{_slug(variant)}"] = got["acc"]
            for level in ("input", "conv"):
                if f"align_{level}" in got:
                    metrics[f"align_{_slug(variant)}_{level}"] = got[f"align_{level}"]
            rows.append([variant, got["acc"], got.get("align_input", "—"), got.get("align_conv", "—"),
                         *(got.get(f"kind_{k}", "—") for k in KINDS), fit.steps])
            model.eval()
            with torch.no_grad():
                batch = {k: v[shown] for k, v in _tensors(test).items()}
                att = word_attention(_batch_call(model, batch).attention, width=width, length=L)
            saved["variants"][variant] = {
                level: [a[i, : int(test.lengths0[n]), : int(test.lengths1[n])].tolist() for i, n in enumerate(shown)]
                for level, a in att.items()}
        ctx.save_json("sentence_pairs.json", saved)
        notes = []
        if "chance_align" in metrics:
            notes.append(f"alignment chance level {metrics['chance_align']:.3f}; the initial word vectors' cosine "
                         f"alone aligns {metrics['embedding_align']:.3f}")
        return ExperimentResult(metrics=metrics, notes=notes, tables=[Table(
            f"held-out pairs ({config.data.dataset}, {len(test)} pairs)",
            ["variant", "accuracy", "alignment (input attention)", "alignment (conv attention)",
             *(f"acc. {k}" for k in KINDS), "steps"], rows)])

    def figures(self, run_dir: Path, config: SentencePairsConfig) -> list[Figure]:
        path = run_dir / "sentence_pairs.json"
        if not path.exists():
            return []
        data = json.loads(path.read_text())
        panels, labels = [], []
        columns = [(v, level) for v in config.variants if v in data["variants"]
                   for level in ("input", "conv") if level in data["variants"][v]]
        if not columns:
            return []
        for i, pair in enumerate(data["pairs"]):
            w0, w1 = pair["words"]
            labels.append(f"{pair['kind']} (label {pair['label']})")
            for variant, level in columns:
                panels.append(HeatmapPanel(f"{variant} {level}", data["variants"][variant][level][i], w1, w0))
        out = save_attention_panels(panels, run_dir / "figures" / "sentence_pairs_attention.png", ncols=len(columns),
                                    row_labels=labels, vmax=None)
        return [Figure(str(out.relative_to(run_dir)),
                       "First-layer attention matrices of held-out pairs: rows are the words of sentence 0, columns "
                       "those of sentence 1 (ABCNN: match-score 1/(1+|x-y|); MPCNN: cosine). Each row's peak "
                       "should sit on the word's synonym or copy.")]
