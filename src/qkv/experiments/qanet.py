"""``qanet``: a small QANet reader (Yu et al. 2018) on a synthetic span-extraction task, EM and F1.

Model (:class:`qkv.models.qanet.QANet`, Fig. 1): word embeddings → one embedding encoder block (shared by
context and question) → context-query attention (trilinear similarity; its two reads are :func:`qkv.attend`
calls, :mod:`qkv.layers.context_query`) → the model encoder stack applied three times with shared weights →
start/end pointer, decoded by the exact joint argmax over spans of at most ``max_span`` tokens
(:func:`qkv.layers.span_pointer.best_span`). Trained with the summed start and end negative log-likelihoods
(AdamW, the shared Trainer); layer dropout with :math:`p_L = 0.9`.

Data (:mod:`qkv.tasks.span_qa`): ``data=synthetic`` (default) generates paragraphs of facts about coloured
objects, people, places and cities with five question kinds whose answers are spans (one or two tokens) and
same-noun distractors; train, validation (monitored) and test sets come from one seeded generator.
``data=babi`` turns the bAbI tasks in ``babi_tasks`` (``--data-dir``) into span questions (answers that are
words of a supporting statement; 10% of the training stories are held out, the test files are used when
present); ``data=squad`` reads SQuAD v1.1 (``train-v1.1.json``/``dev-v1.1.json`` in ``--data-dir``, contexts cut
to ``max_context`` tokens). Their metrics carry a ``babi_``/``squad_`` prefix.

Measured on the test set: SQuAD's exact match and F1 (:mod:`qkv.tasks.squad_eval`, percent) against a
trivial baseline (each question kind's most frequent training answer), per question kind; the figure draws
the context-query attention of a few test questions with the words on both axes.

There is no published number for the synthetic task; QANet reaches 73.6 EM / 82.7 F1 on the SQuAD v1.1
dev set with its full setup (Yu et al. 2018, Table 2) — a reference, not a target here.

Shape legend: ``N`` examples, ``B`` batch, ``n`` context tokens, ``m`` question tokens.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from qkv.experiments.base import DataUnavailable, Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.config import ConfigError
from qkv.experiments.registry import register
from qkv.experiments.seq2seq_common import model_device
from qkv.layers.span_pointer import best_span, span_nll
from qkv.models.qanet import QANet
from qkv.tasks import babi, squad
from qkv.tasks.span_qa import SpanExample, SpanTensors, babi_span_examples, build_vocab, encode, generate
from qkv.tasks.squad_eval import exact_match, f1, max_over_gold
from qkv.train.loop import TensorBatches, TrainConfig
from qkv.viz.heatmap import HeatmapPanel, save_attention_panels

__all__ = ["QANetConfig", "QANetExperiment", "QANetModelConfig", "SpanDataConfig"]

PAPER_SQUAD_DEV = {"exact_match": 73.6, "f1": 82.7}  # Yu et al. 2018, Table 2 (a reference only)


@dataclass(frozen=True)
class SpanDataConfig:
    """The data.

    Attributes:
        source: ``"synthetic"``, ``"babi"`` or ``"squad"`` (the last two need their files: ``--data-dir``, the
            run config's ``data_dir``).
        babi_tasks: bAbI tasks turned into span questions (answers found in a supporting statement).
        train_examples, val_examples, test_examples: synthetic examples per split.
        objects, people: ``(min, max)`` per synthetic paragraph.
        max_context: contexts are cut to this many tokens (SQuAD; questions whose answer ends later are dropped).
        max_span: the longest predicted span in tokens.
        vocab_size: the largest vocabulary (most frequent training words; the rest are ``<unk>``).
    """

    source: Literal["synthetic", "babi", "squad"] = "synthetic"
    babi_tasks: tuple[int, ...] = (1,)
    train_examples: int = 8000
    val_examples: int = 500
    test_examples: int = 1000
    objects: tuple[int, int] = (3, 5)
    people: tuple[int, int] = (2, 4)
    max_context: int = 400
    max_span: int = 10
    vocab_size: int = 30000

    def __post_init__(self) -> None:
        for name in ("train_examples", "val_examples", "test_examples", "max_context", "max_span", "vocab_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if not self.babi_tasks or any(t not in babi.TASK_NAMES for t in self.babi_tasks):
            raise ValueError(f"data.babi_tasks must be bAbI task numbers 1-20, got {self.babi_tasks}")


@dataclass(frozen=True)
class QANetModelConfig:
    """QANet's sizes (the paper's: dim 128, 8 heads, 4 embedding convolutions, 7 model blocks of 2)."""

    dim: int = 48
    num_heads: int = 4
    embed_convs: int = 2
    embed_kernel: int = 7
    model_blocks: int = 2
    model_convs: int = 2
    model_kernel: int = 5
    dropout: float = 0.1
    p_last: float = 0.9


@dataclass(frozen=True)
class QANetConfig:
    data: SpanDataConfig = field(default_factory=SpanDataConfig)
    data_dir: str = ""
    model: QANetModelConfig = field(default_factory=QANetModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=800, batch_size=32, lr=3e-3, warmup_steps=50, eval_every=200, checkpoint_every=200,
        monitor="f1", monitor_mode="max"))
    figure_questions: int = 3


@dataclass
class _Splits:
    train: SpanTensors
    val: SpanTensors
    test: SpanTensors
    prefix: str
    note: str


def _synthetic(config: SpanDataConfig, seed: int) -> tuple[list[SpanExample], list[SpanExample], list[SpanExample]]:
    g = torch.Generator().manual_seed(seed)
    kw = {"generator": g, "objects": config.objects, "people": config.people}
    return (generate(config.train_examples, **kw), generate(config.val_examples, **kw),
            generate(config.test_examples, **kw))


def _babi(config: SpanDataConfig, data_dir: str, seed: int) -> tuple[list, list, list, str]:
    found = babi.find_babi_dir(data_dir or None)
    if found is None:
        raise DataUnavailable(babi.missing_data_message(data_dir or None))
    g = torch.Generator().manual_seed(seed)
    train, val, test, skipped, tested = [], [], [], 0, True
    for task in config.babi_tasks:
        stories, test_stories = babi.load_task(found, task)
        tr, va = babi.split_stories(stories, 0.1, generator=g)
        for part, out in ((tr, train), (va, val), (test_stories or va, test)):
            ex, sk = babi_span_examples(part)
            out.extend(ex)
            skipped += sk
        tested = tested and test_stories is not None
    if not train:
        raise DataUnavailable(f"no question of bAbI tasks {config.babi_tasks} has its answer in the story")
    note = (f"bAbI tasks {config.babi_tasks} from {found}; {skipped} questions skipped (answer not a story word); "
            f"reported split: {'test files' if tested else 'held-out 10% of the training stories'}")
    return train, val, test, note


def _squad(config: SpanDataConfig, data_dir: str, seed: int) -> tuple[list, list, list, str]:
    train_path, dev_path = squad.find_squad("train", data_dir or None), squad.find_squad("dev", data_dir or None)
    if train_path is None or dev_path is None:
        raise DataUnavailable(f"SQuAD v1.1 files ({', '.join(squad.FILES.values())}) were not found in "
                              f"{data_dir or '$QKV_DATA_DIR'} or {squad.cache_dir()}; download them from "
                              f"{', '.join(squad.URLS.values())} and pass --data-dir")
    train, _ = squad.load_squad(train_path)
    dev, _ = squad.load_squad(dev_path)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(train), generator=g).tolist()
    n_val = max(1, min(len(train) // 20, 1000))
    return ([train[i] for i in perm[n_val:]], [train[i] for i in perm[:n_val]], dev,
            f"SQuAD v1.1 from {train_path.parent}; contexts cut to {config.max_context} tokens")


def _splits(config: QANetConfig, seed: int) -> tuple[_Splits, Any]:
    d = config.data
    if d.source == "synthetic":
        tr, va, te = _synthetic(d, seed)
        prefix, note = "", "synthetic span task (qkv.tasks.span_qa)"
    elif d.source == "babi":
        tr, va, te, note = _babi(d, config.data_dir, seed)
        prefix = "babi_"
    else:
        tr, va, te, note = _squad(d, config.data_dir, seed)
        prefix = "squad_"
    vocab = build_vocab(tr)
    if len(vocab) > d.vocab_size + 4:
        from qkv.tasks.vocab import Vocab

        vocab = Vocab.build((seq for ex in tr for seq in (ex.context, ex.question)), max_size=d.vocab_size)
    parts = (("train", tr), ("val", va), ("test", te))
    enc = {name: encode(ex, vocab, max_context=d.max_context) for name, ex in parts}
    return _Splits(enc["train"], enc["val"], enc["test"], prefix, note), vocab


def _loss(model: QANet, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(batch["context"], batch["question"])
    return span_nll(out.logits, batch["start"], batch["end"])


@torch.no_grad()
def _predict(model: QANet, data: SpanTensors, *, max_span: int, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted ``(start, end)`` ``(N,)`` each, in eval mode."""
    device = model_device(model)
    was = model.training
    model.eval()
    starts, ends = [], []
    for i in range(0, len(data), batch):
        sl = slice(i, i + batch)
        c, q = data.context[sl], data.question[sl]
        n = int((c != 0).sum(1).max())  # trim the batch's padding
        out = model(c[:, :n].to(device), q[:, : int((q != 0).sum(1).max())].to(device))
        s, e, _ = best_span(out.logits.start.exp(), out.logits.end.exp(), max_len=max_span)
        starts.append(s.cpu())
        ends.append(e.cpu())
    model.train(was)
    return torch.cat(starts), torch.cat(ends)


def _scores(data: SpanTensors, starts: torch.Tensor, ends: torch.Tensor) -> dict[str, Any]:
    """EM/F1 in percent overall and per kind, from the predicted spans' text against the gold answers."""
    per: dict[str, list[tuple[float, float]]] = {}
    for ex, s, e in zip(data.examples, starts.tolist(), ends.tolist(), strict=True):
        e = min(e, len(ex.context) - 1)
        s = min(s, e)
        text = ex.text_of(s, e)
        per.setdefault(ex.kind, []).append((max_over_gold(exact_match, text, ex.answers),
                                            max_over_gold(f1, text, ex.answers)))
    allv = [v for vs in per.values() for v in vs]
    return {"exact_match": 100 * sum(v[0] for v in allv) / len(allv), "f1": 100 * sum(v[1] for v in allv) / len(allv),
            "kinds": {k: (100 * sum(v[0] for v in vs) / len(vs), 100 * sum(v[1] for v in vs) / len(vs), len(vs))
                      for k, vs in sorted(per.items())}}


def _baseline(train: SpanTensors, test: SpanTensors) -> dict[str, float]:
    """Each question kind's most frequent training answer, predicted for every test question of that kind."""
    common = {}
    for kind in {ex.kind for ex in train.examples}:
        common[kind] = Counter(ex.answers[0] for ex in train.examples if ex.kind == kind).most_common(1)[0][0]
    preds = [common.get(ex.kind, "") for ex in test.examples]
    em = sum(max_over_gold(exact_match, p, ex.answers) for p, ex in zip(preds, test.examples, strict=True))
    f = sum(max_over_gold(f1, p, ex.answers) for p, ex in zip(preds, test.examples, strict=True))
    return {"exact_match": 100 * em / len(preds), "f1": 100 * f / len(preds)}


@register
class QANetExperiment(Experiment):
    name = "qanet"
    description = "QANet (encoder blocks + context-query attention) on a synthetic span-extraction task: EM / F1"
    Config = QANetConfig
    targets = (
        Target("exact_match", ">=", 95.0, "held-out exact match on the synthetic task (no paper number; "
               "QANet: 73.6 EM on SQuAD dev, a reference only)"),
        Target("f1", ">=", 97.0, "held-out F1 on the synthetic task (QANet: 82.7 F1 on SQuAD dev, a reference only)"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {
        "train.max_steps": 160, "train.eval_every": 80, "train.warmup_steps": 20, "train.lr": 5e-3,
        "train.schedule": "constant",
        "data.train_examples": 2000, "data.val_examples": 200, "data.test_examples": 500,
        "data.objects": (2, 4), "data.people": (1, 3),
        "model.dim": 32, "model.num_heads": 2, "model.model_blocks": 1, "model.embed_convs": 1, "model.dropout": 0.0,
    }
    quick_targets = (
        Target("exact_match", ">=", 60.0, "held-out exact match after the quick run (the most-frequent-answer "
               "baseline: ~10)"),
        Target("em_over_baseline", ">=", 40.0, "exact match minus the trivial baseline's, in points"),
    )

    def check(self, config: QANetConfig, *, offline: bool = False) -> None:
        if config.data_dir and not Path(config.data_dir).expanduser().exists():
            raise ConfigError(f"--data-dir {config.data_dir!r} does not exist")
        if config.data.source != "synthetic" and not config.data_dir:
            raise ConfigError(f"data.source={config.data.source} needs --data-dir (the folder holding the files)")

    def run(self, config: QANetConfig, ctx: RunContext) -> ExperimentResult:
        splits, vocab = _splits(config, ctx.seed)
        m, d = config.model, config.data
        ctx.seed_variant("qanet")
        model = QANet(len(vocab), dim=m.dim, num_heads=m.num_heads, embed_convs=m.embed_convs,
                      embed_kernel=m.embed_kernel, model_blocks=m.model_blocks, model_convs=m.model_convs,
                      model_kernel=m.model_kernel, dropout=m.dropout, p_last=m.p_last)
        tr = splits.train
        data = TensorBatches(context=tr.context, question=tr.question, start=tr.start, end=tr.end)

        def evaluate(model: QANet) -> dict[str, float]:
            s, e = _predict(model, splits.val, max_span=d.max_span)
            sc = _scores(splits.val, s, e)
            return {"exact_match": sc["exact_match"], "f1": sc["f1"]}

        fit = ctx.fit("qanet", model, data, _loss, train=config.train, evaluate=evaluate)
        model = model.cpu().eval()
        s, e = _predict(model, splits.test, max_span=d.max_span)
        sc = _scores(splits.test, s, e)
        base = _baseline(splits.train, splits.test)
        p = splits.prefix
        metrics = {f"{p}exact_match": sc["exact_match"], f"{p}f1": sc["f1"], f"{p}baseline_exact_match":
                   base["exact_match"], f"{p}baseline_f1": base["f1"],
                   f"{p}em_over_baseline": sc["exact_match"] - base["exact_match"]}
        self._save_attention(ctx, model, splits.test, s, e, config.figure_questions)
        rows = [[k, n, round(em, 2), round(f, 2)] for k, (em, f, n) in sc["kinds"].items()]
        rows.append(["all", len(splits.test), round(sc["exact_match"], 2), round(sc["f1"], 2)])
        rows.append(["baseline: most frequent answer of the kind", len(splits.test), round(base["exact_match"], 2),
                     round(base["f1"], 2)])
        params = sum(t.numel() for t in model.parameters())
        return ExperimentResult(metrics=metrics, tables=[Table(
            f"held-out EM / F1 (%) by question kind ({len(tr)} training questions, {fit.steps} steps, "
            f"{params} parameters)", ["kind", "questions", "exact match", "F1"], rows)],
            notes=[splits.note, "QANet's published SQuAD v1.1 dev result (full model, GloVe + characters, "
                   f"augmentation): {PAPER_SQUAD_DEV['exact_match']} EM / {PAPER_SQUAD_DEV['f1']} F1 "
                   "(reference only)."])

    @staticmethod
    def _save_attention(ctx: RunContext, model: QANet, test: SpanTensors, starts: torch.Tensor, ends: torch.Tensor,
                        count: int) -> None:
        items = []
        seen: set[str] = set()
        for i, ex in enumerate(test.examples):  # one question per kind first, up to `count`
            if len(items) >= count:
                break
            if ex.kind in seen and len(seen) < len({e.kind for e in test.examples}):
                continue
            seen.add(ex.kind)
            n, mq = len(ex.context), len(ex.question)
            with torch.no_grad():
                out = model(test.context[i:i + 1, :n], test.question[i:i + 1, :mq], return_attention=True)
            att = out.attention
            assert att is not None and att.row_weights is not None and att.column_weights is not None
            items.append({"context": list(ex.context), "question": list(ex.question), "answer": ex.answers[0],
                          "gold": [ex.start, ex.end], "pred": [int(starts[i]), int(ends[i])],
                          "c2q": att.row_weights[0].tolist(), "q2c": att.column_weights[0].tolist()})
        ctx.save_json("qanet_attention.json", {"items": items})

    def figures(self, run_dir: Path, config: QANetConfig) -> list[Figure]:
        path = run_dir / "qanet_attention.json"
        if not path.exists():
            return []
        items = json.loads(path.read_text())["items"]
        if not items:
            return []
        panels = []
        for it in items:
            pred = " ".join(it["context"][it["pred"][0]:it["pred"][1] + 1])
            head = f"Q: {' '.join(it['question'])}  gold: {it['answer']}  predicted: {pred}"
            c2q = torch.tensor(it["c2q"]).T  # (m, n): column i is context word i's distribution over the question
            panels.append(HeatmapPanel(head, c2q, it["context"], it["question"]))
        out = save_attention_panels(panels, run_dir / "figures" / "qanet_attention.png", ncols=1, vmax=None)
        return [Figure(str(out.relative_to(run_dir)),
                       "QANet's context-to-query attention S̄ for held-out questions, words on both axes: column i "
                       "is context word i's softmax over the question words (the read A = S̄Q, one attend call; "
                       "each column sums to 1). The query-to-context weights S̿ are saved in qanet_attention.json.")]
