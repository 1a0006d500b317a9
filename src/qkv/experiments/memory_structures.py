"""``memory-structures``: stack, queue, set, NTM and a plain LSTM on reversal and copy (the book's exercise 8-4).

Tasks (:mod:`qkv.tasks.transduction`): a stream of ``n`` random symbols, a separator, then ``n`` blank steps
during which the model emits the source reversed (``reverse``: last in, first out — a stack's order) or as
it was (``copy``: first in, first out — a queue's order). Training lengths ``min_length..max_length``;
generalisation is measured on longer sources, ``max_length + 1 .. test_max_length``.

Models, each mapping ``(B, T, C)`` to ``(B, T, V)`` logits (the memories return them as ``output`` of a
``MemoryOutput``/``NTMOutput``), trained with cross-entropy on the output steps:

* ``stack`` — :class:`qkv.memory.NeuralStack` (Grefenstette et al. 2015, a controller with a neural stack);
* ``queue`` — :class:`qkv.memory.NeuralQueue` (the same paper's neural queue);
* ``set`` — :class:`qkv.memory.NeuralSet` (content-addressed, unordered);
* ``ntm`` — :class:`qkv.memory.ntm.NTM` (Graves et al. 2014, random access by content and location);
* ``lstm`` — :class:`qkv.models.lstm_baseline.LSTMBaseline`, an LSTM without external memory (a larger one,
  ``lstm_hidden_dim``).

The stack, queue, set and NTM share the controller (``controller``, ``controller_dim``: the NTM's
:func:`qkv.memory.ntm.controller.make_controller`).

Measured on held-out sequences: per-symbol accuracy over the output steps and per-sequence exact match,
at the training lengths and at the longer ones, per model per task (the comparison table), accuracy
against length (a figure), and, for one long test sequence, the stack's and the queue's push/pop strengths
and contents over time (a figure). The report's notes answer exercise 8-4 with these numbers.

Shape legend: ``N`` sequences, ``T`` steps, ``C = V + 1`` input channels, ``V`` symbols.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.experiments.base import Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.registry import register
from qkv.experiments.seq2seq_common import model_device
from qkv.memory.content_set import NeuralSet
from qkv.memory.ntm import NTM
from qkv.memory.queue import NeuralQueue
from qkv.memory.stack import NeuralStack
from qkv.models.lstm_baseline import LSTMBaseline
from qkv.tasks.transduction import IGNORE, TASKS, Transduction, make_transduction
from qkv.train.loop import TensorBatches, TrainConfig
from qkv.viz.mpl import pyplot

__all__ = ["MemoryStructures", "MemoryStructuresConfig", "answer_8_4", "build", "logits", "measure"]

MODELS = ("stack", "queue", "set", "ntm", "lstm")
#: The memory whose order matches each task.
NATURAL = {"reverse": "stack", "copy": "queue"}


@dataclass(frozen=True)
class MemoryStructuresConfig:
    """Tasks, models, lengths and sizes.

    ``matched_only`` trains each ordered memory only on its own task (stack on ``reverse``, queue on
    ``copy``; the other models on every task): the quick run's shortcut.
    """

    tasks: tuple[str, ...] = ("reverse", "copy")
    models: tuple[str, ...] = MODELS
    matched_only: bool = False
    controller: str = "feedforward"  # of the stack, queue, set and NTM: "feedforward" or "lstm"
    vocab_size: int = 8
    min_length: int = 1
    max_length: int = 10
    test_max_length: int = 20
    train_sequences: int = 20000
    test_sequences: int = 600
    controller_dim: int = 64
    memory_dim: int = 32
    lstm_hidden_dim: int = 128
    ntm_slots: int = 48
    ntm_width: int = 20
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=1000, batch_size=64, lr=1e-2, warmup_steps=20, min_lr_ratio=0.1, eval_every=500,
        checkpoint_every=200, log_every=25, monitor="seq_acc", monitor_mode="max"))

    def __post_init__(self) -> None:
        for t in self.tasks:
            if t not in TASKS:
                raise ValueError(f"tasks must be among {TASKS}, got {t!r}")
        for m in self.models:
            if m not in MODELS:
                raise ValueError(f"models must be among {MODELS}, got {m!r}")
        if not self.tasks or not self.models:
            raise ValueError(f"tasks and models must not be empty, got {self.tasks}, {self.models}")
        if self.controller not in ("feedforward", "lstm"):
            raise ValueError(f"controller must be 'feedforward' or 'lstm', got {self.controller!r}")
        if not 1 <= self.min_length <= self.max_length < self.test_max_length:
            raise ValueError(f"need 1 <= min_length <= max_length < test_max_length, got {self.min_length}, "
                             f"{self.max_length}, {self.test_max_length}")
        if self.ntm_slots < 2 * self.test_max_length + 1:
            raise ValueError(f"ntm_slots must hold a test sequence (>= 2 * test_max_length + 1 = "
                             f"{2 * self.test_max_length + 1}), got {self.ntm_slots}")


def logits(model: nn.Module, x: Tensor) -> Tensor:
    """The ``(B, T, V)`` logits of any of the models: the memories' ``output`` field, or the LSTM's tensor."""
    out = model(x)
    return out if isinstance(out, Tensor) else out.output  # (B, T, V)


def build(name: str, config: MemoryStructuresConfig) -> nn.Module:
    """The model ``name`` (one of ``MODELS``) for ``V`` symbols and ``V + 1`` input channels."""
    C, V = config.vocab_size + 1, config.vocab_size
    mem = {"memory_dim": config.memory_dim, "controller": config.controller, "controller_dim": config.controller_dim}
    if name == "stack":
        return NeuralStack(C, V, **mem)
    if name == "queue":
        return NeuralQueue(C, V, **mem)
    if name == "set":
        return NeuralSet(C, V, **mem)
    if name == "lstm":
        return LSTMBaseline(C, V, hidden_dim=config.lstm_hidden_dim)
    if name == "ntm":
        return NTM(C, V, controller=config.controller, controller_dim=config.controller_dim,
                   memory_slots=config.ntm_slots, memory_width=config.ntm_width,
                   state_grad_clip=None)  # as measured (short sequences; see qkv.memory.ntm.gradclip)
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")


def _loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    y = logits(model, batch["inputs"])  # (B, T, V)
    return F.cross_entropy(y.transpose(1, 2), batch["targets"], ignore_index=IGNORE)


def _predict(model: nn.Module, data: Transduction, batch: int = 256) -> Tensor:
    device = model_device(model)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([logits(model, data.inputs[i:i + batch].to(device)).argmax(-1).cpu()
                         for i in range(0, len(data.lengths), batch)])  # (N, T)
    model.train(was_training)
    return out


def measure(model: nn.Module, data: Transduction, max_length: int) -> dict[str, Any]:
    """Exact match and per-symbol accuracy at lengths ``<= max_length`` and above, and per length."""
    pred = _predict(model, data)
    scored = data.scored
    right = (pred == data.targets) & scored  # (N, T)
    exact = (right | ~scored).all(-1)  # (N,)
    n_right, n_scored = right.sum(-1).float(), scored.sum(-1).float()  # (N,)

    def acc(rows: Tensor) -> tuple[float, float]:
        if not rows.any():
            return float("nan"), float("nan")
        return float(exact[rows].float().mean()), float(n_right[rows].sum() / n_scored[rows].sum())

    short = data.lengths <= max_length
    out: dict[str, Any] = {}
    out["seq_acc"], out["sym_acc"] = acc(short)
    out["long_seq_acc"], out["long_sym_acc"] = acc(~short)
    out["by_length"] = {int(n): acc(data.lengths == n)[0] for n in data.lengths.unique()}
    return out


def _validator(valid: Transduction, max_length: int) -> Any:
    """The evaluation during training: accuracy at the training lengths only (held-out sequences)."""
    def evaluate(model: nn.Module) -> dict[str, float]:
        r = measure(model, valid, max_length)
        return {"seq_acc": r["seq_acc"], "sym_acc": r["sym_acc"]}
    return evaluate


def _trace_example(model: nn.Module, data: Transduction, index: int) -> dict[str, Any]:
    """Push/pop strengths, strengths and read weights over time for one sequence (stack or queue model)."""
    n = int(data.lengths[index])
    T = 2 * n + 1
    x = data.inputs[index:index + 1, :T].to(model_device(model))  # (1, T, C)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(x, return_trace=True)
    model.train(was_training)
    trace = out.trace
    return {"length": n, "source": data.sources[index, :n].tolist(),
            "targets": data.targets[index, :T].tolist(), "pred": out.output[0].argmax(-1).cpu().tolist(),
            "push": trace["push"][0].cpu().tolist(), "pop": trace["pop"][0].cpu().tolist(),
            "strengths": trace["strengths"][0, :, :T].cpu().tolist(),
            "read_weights": trace["read_weights"][0, :, :T].cpu().tolist()}


def _fmt(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"  # NaN (no such lengths) as "-"


def _compare(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A sentence comparing the NTM with the memory whose order matches each task, from the numbers."""
    parts = []
    for task, natural in NATURAL.items():
        per = results.get(task, {})
        if "ntm" in per and natural in per:
            gap = per[natural]["long_seq_acc"] - per["ntm"]["long_seq_acc"]
            verdict = "ahead of" if gap > 0.05 else "behind" if gap < -0.05 else "level with"
            parts.append(f"on {task} the {natural} is {verdict} the NTM on the longer sequences")
    return ("; ".join(parts) + ".") if parts else "(the NTM was not run)."


def answer_8_4(results: dict[str, dict[str, dict[str, Any]]], config: MemoryStructuresConfig) -> list[str]:
    """The written answer to exercise 8-4, citing the measured long-length exact matches."""
    def num(task: str, model: str, key: str = "long_seq_acc") -> str:
        r = results.get(task, {}).get(model)
        return "not run" if r is None else _fmt(r[key])

    L, Lt = config.max_length, config.test_max_length
    return [
        "Exercise 8-4 — what each organisation of memory makes easy and hard. Numbers: exact match on "
        f"held-out sequences {L + 1}-{Lt} symbols long, after training on {config.min_length}-{L}.",
        "Stack (last in, first out): reversal is easy — the controller only has to push every input and pop "
        "at every output step, one rule that does not depend on the length, so it generalises "
        f"(reverse: stack {num('reverse', 'stack')}). Anything that needs the oldest item first is hard: "
        f"it sits at the bottom, under everything pushed later (copy: stack {num('copy', 'stack')}).",
        f"Queue (first in, first out): copy is easy for the same reason (copy: queue {num('copy', 'queue')}); "
        f"reversal is hard, the newest item is out of reach (reverse: queue {num('reverse', 'queue')}). Both "
        "structures make reading cheap and addressing implicit: no key, no location, just the strength "
        "of a push and a pop; they cannot look at an item in the middle without removing what is in front.",
        "Set (content addressing, no order): membership and lookup by similarity are easy — one attention "
        "over the stored elements finds an equal element whatever its position (the membership test), but "
        "there is no notion of first or last, so order must be encoded in the elements by the controller; "
        f"order tasks are hard (reverse: set {num('reverse', 'set')}, copy: set {num('copy', 'set')}; at the "
        f"training lengths {num('reverse', 'set', 'seq_acc')} and {num('copy', 'set', 'seq_acc')}: whatever "
        "order the controller writes into the elements does not carry to longer sequences as a push/pop rule does).",
        "NTM (random access: content plus location addressing with shifts): the most general — it can "
        "emulate a stack or a queue by moving its heads one slot at a time, and read any slot without "
        "removing others — but it has to learn the addressing (keys, gates, shifts, sharpening) that the "
        "stack and queue get for free, and its tape is finite (ntm_slots). With the same training steps: "
        f"reverse: ntm {num('reverse', 'ntm')} (stack {num('reverse', 'stack')}), copy: ntm "
        f"{num('copy', 'ntm')} (queue {num('copy', 'queue')}); {_compare(results)}",
        "LSTM without external memory: its state is a fixed-size vector; at the training lengths "
        f"reverse: {num('reverse', 'lstm', 'seq_acc')}, copy: {num('copy', 'lstm', 'seq_acc')}; on the longer "
        f"sequences reverse: lstm {num('reverse', 'lstm')}, copy: lstm {num('copy', 'lstm')} — what it learned "
        "is tied to the lengths it saw, while a memory whose size grows with the input carries over.",
    ]


@register
class MemoryStructures(Experiment):
    name = "memory-structures"
    description = ("stack, queue, set, NTM and LSTM on reversal and copy: what each memory organisation makes "
                   "easy (exercise 8-4)")
    Config = MemoryStructuresConfig
    targets = (
        Target("reverse/stack/long_seq_acc", ">=", 0.9,
               "stack reverses sequences up to twice the training length (Grefenstette et al. 2015: ~1.0)"),
        Target("copy/queue/long_seq_acc", ">=", 0.9,
               "queue copies sequences up to twice the training length (Grefenstette et al. 2015: ~1.0)"),
        Target("reverse/lstm/long_seq_acc", "<=", 0.2, "the LSTM does not generalise to longer sequences"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {
        "models": ("stack", "queue", "lstm"), "matched_only": True, "max_length": 5, "test_max_length": 10,
        "train_sequences": 5000, "test_sequences": 300, "train.max_steps": 300, "train.eval_every": 300,
        "train.checkpoint_every": 150, "train.schedule": "constant"}
    quick_targets = (
        Target("reverse/stack/long_seq_acc", ">=", 0.5,
               "stack reverses sequences longer (6-10) than trained on (1-5)"),
        Target("reverse/stack_minus_lstm_long_seq_acc", ">=", 0.4, "... clearly better than the LSTM"),
        Target("copy/queue/long_seq_acc", ">=", 0.5, "queue copies sequences longer (6-10) than trained on"),
    )

    def run(self, config: MemoryStructuresConfig, ctx: RunContext) -> ExperimentResult:
        metrics: dict[str, float] = {}
        results: dict[str, dict[str, dict[str, Any]]] = {}
        examples: dict[str, Any] = {}
        for t_index, task in enumerate(config.tasks):
            gen = torch.Generator().manual_seed(ctx.seed * 1000 + t_index)
            T = 2 * config.test_max_length + 1
            kw = {"vocab_size": config.vocab_size, "generator": gen, "steps": T}
            train = make_transduction(task, config.train_sequences, min_length=config.min_length,
                                      max_length=config.max_length, **kw)
            test = make_transduction(task, config.test_sequences, min_length=config.min_length,
                                     max_length=config.test_max_length, **kw)
            T_train = 2 * config.max_length + 1
            valid = make_transduction(task, max(50, config.test_sequences // 3), min_length=config.min_length,
                                      max_length=config.max_length, vocab_size=config.vocab_size, generator=gen)
            data = TensorBatches(inputs=train.inputs[:, :T_train], targets=train.targets[:, :T_train])
            results[task] = {}
            for name in config.models:
                if config.matched_only and name in ("stack", "queue") and NATURAL[task] != name:
                    continue
                variant = f"{task}/{name}"
                ctx.seed_variant(variant)
                model = build(name, config)
                fit = ctx.fit(variant, model, data, _loss, train=config.train,
                              evaluate=_validator(valid, config.max_length))
                model = model.cpu()
                r = measure(model, test, config.max_length)
                r["steps"], r["params"] = fit.steps, sum(p.numel() for p in model.parameters())
                results[task][name] = r
                for key in ("seq_acc", "sym_acc", "long_seq_acc", "long_sym_acc"):
                    metrics[f"{variant}/{key}"] = r[key]
                if name == NATURAL[task]:
                    long_rows = torch.nonzero(test.lengths == min(config.max_length + 2, config.test_max_length))
                    index = int(long_rows[0, 0]) if len(long_rows) else int(test.lengths.argmax())
                    examples[variant] = _trace_example(model, test, index)
            if "lstm" in results[task] and NATURAL[task] in results[task]:
                metrics[f"{task}/{NATURAL[task]}_minus_lstm_long_seq_acc"] = (
                    results[task][NATURAL[task]]["long_seq_acc"] - results[task]["lstm"]["long_seq_acc"])
        ctx.save_json("memory_structures.json", {
            "results": results, "examples": examples, "max_length": config.max_length,
            "test_max_length": config.test_max_length, "vocab_size": config.vocab_size})
        rows = [[task, name, _fmt(r["seq_acc"]), _fmt(r["sym_acc"]), _fmt(r["long_seq_acc"]),
                 _fmt(r["long_sym_acc"]), r["steps"], r["params"]]
                for task, per in results.items() for name, r in per.items()]
        L, Lt = config.max_length, config.test_max_length
        table = Table(f"accuracy per memory per task: trained on lengths {config.min_length}-{L}, "
                      f"tested on {config.min_length}-{L} and {L + 1}-{Lt}",
                      ["task", "model", f"exact match {config.min_length}-{L}", f"per symbol {config.min_length}-{L}",
                       f"exact match {L + 1}-{Lt}", f"per symbol {L + 1}-{Lt}", "steps", "parameters"], rows)
        return ExperimentResult(metrics=metrics, tables=[table], notes=answer_8_4(results, config))

    def figures(self, run_dir: Path, config: MemoryStructuresConfig) -> list[Figure]:
        path = run_dir / "memory_structures.json"
        if not path.exists():
            return []
        data = json.loads(path.read_text())
        out = run_dir / "figures"
        out.mkdir(parents=True, exist_ok=True)
        figures = [_length_figure(data, out / "memory_structures_length.png")]
        for variant, ex in data["examples"].items():
            name = variant.replace("/", "_")
            figures.append(_trace_figure(variant, ex, out / f"memory_structures_{name}.png"))
        return figures


def _length_figure(data: dict[str, Any], path: Path) -> Figure:
    plt = pyplot()
    tasks = list(data["results"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for i, (name, r) in enumerate(data["results"][task].items()):  # styles keep overlapping lines visible
            lengths = sorted(int(n) for n in r["by_length"])
            ax.plot(lengths, [r["by_length"][str(n)] for n in lengths], marker="osd^v"[i % 5], ms=4 + i % 3,
                    ls=("-", "--", ":", "-.")[i % 4], label=name)
        ax.axvline(data["max_length"] + 0.5, color="gray", ls="--", lw=1)
        ax.set_title(task)
        ax.set_xlabel("source length (dashed: longest trained)")
        ax.set_ylabel("exact match")
        ax.set_ylim(-0.03, 1.03)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Figure(f"figures/{path.name}", "Exact match against source length, per model and task; right of the "
                  "dashed line the sequences are longer than any seen in training.")


def _trace_figure(variant: str, ex: dict[str, Any], path: Path) -> Figure:
    plt = pyplot()
    task, name = variant.split("/")
    n, T = ex["length"], len(ex["push"])
    labels = [str(s) for s in ex["source"]] + ["|"] + ["_"] * n  # the input at each step
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.42 * T + 2), 6.2), sharex=False,
                             gridspec_kw={"height_ratios": [1, 2.2]})
    ax = axes[0]
    steps = list(range(T))
    ax.plot(steps, ex["push"], marker="o", ms=3, label="push d_t")
    ax.plot(steps, ex["pop"], marker="s", ms=3, label="pop u_t")
    ax.set_xticks(steps, labels)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("input at step t (| separator, _ blank)")
    ax.legend(fontsize=8, loc="center left")
    ax.set_title(f"{name} on {task}: target {ex['source'][::-1] if task == 'reverse' else ex['source']}, "
                 f"output {[p for p, t in zip(ex['pred'], ex['targets'], strict=True) if t != IGNORE]}",
                 fontsize=9)
    ax = axes[1]
    s = torch.tensor(ex["strengths"]).T.numpy()  # (slot, time)
    ax.imshow(s, aspect="auto", cmap="Blues", vmin=0, vmax=1, origin="lower")
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.set_yticks(steps, [f"{i}: {lab}" for i, lab in enumerate(labels)], fontsize=7)
    ax.set_xlabel("step t")
    ax.set_ylabel(f"{name} slot (pushed at step: input)")
    w = torch.tensor(ex["read_weights"]).T  # (slot, time)
    for t in steps:
        for i in range(T):
            if w[i, t] > 0.05:
                ax.text(t, i, f"{w[i, t]:.1f}", ha="center", va="center", fontsize=6, color="red")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Figure(f"figures/{path.name}",
                  f"The {name} at work on one held-out {task} sequence of length {n}: push and pop strengths per "
                  "step (top); the strength of each slot over time (bottom, blue; slot i holds the value pushed "
                  "at step i) with the read weights in red.")
