"""``pointer-sort``: a pointer network sorts numbers by pointing at them in ascending order.

Task (:mod:`qkv.tasks.sorting`): ``n`` numbers uniform in ``[0, 1)``; the answer is the sequence of their
positions in ascending order of value. Model (:class:`qkv.memory.PointerNetwork`, Vinyals et al. 2015): an LSTM
encoder over the numbers, an LSTM decoder fed the number it pointed to last, and the additive-attention
distribution over the inputs as its output, with positions already chosen masked (the answer is a
permutation). One model per ``n``. Measured on held-out sets: exact-sequence accuracy with greedy decoding and
with beam search (chance is ``1/n!``).

The Ptr-Net paper shows no sorting number; the full run's targets are this project's goals. The figure draws
each number at (value, position) and the pointer distribution over them at every step.

Shape legend: ``B`` examples, ``N`` numbers, ``T`` output steps (``N``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from qkv.experiments.base import Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.registry import register
from qkv.memory.pointer import PointerNetwork
from qkv.tasks.sorting import SortingData, make_sorting, sorted_accuracy
from qkv.train.loop import TensorBatches, TrainConfig
from qkv.viz.pointer import PointerPanel, plot_pointer_steps

__all__ = ["PointerSort", "PointerSortConfig"]


@dataclass(frozen=True)
class PointerSortConfig:
    """``ns``: one model per length; ``train_size``/``test_size`` examples each; model width; beam width."""

    ns: tuple[int, ...] = (5, 10)
    train_size: int = 100_000
    test_size: int = 2000
    hidden_dim: int = 128
    beam_width: int = 4
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=4000, batch_size=128, lr=2e-3, warmup_steps=100, eval_every=500, checkpoint_every=500,
        monitor="acc", monitor_mode="max", grad_clip=2.0))

    def __post_init__(self) -> None:
        if not self.ns or any(n < 2 for n in self.ns):
            raise ValueError(f"ns must be lengths >= 2, got {self.ns}")
        if self.train_size < 1 or self.test_size < 1:
            raise ValueError(f"train_size and test_size must be >= 1, got {self.train_size}, {self.test_size}")


def _accuracy(model: PointerNetwork, data: SortingData, beam_width: int = 1) -> float:
    was_training = model.training
    model.eval()
    out = model.decode(data.values, beam_width=beam_width)
    model.train(was_training)
    return float(sorted_accuracy(data.values, out.indices).float().mean())


@register
class PointerSort(Experiment):
    name = "pointer-sort"
    description = "Pointer network (Vinyals et al. 2015): sort uniform numbers by pointing at them in order"
    Config = PointerSortConfig
    targets = (
        Target("acc_5", ">=", 0.95, "n = 5 exact sorted sequences, greedy (project goal; chance 1/120)"),
        Target("acc_10", ">=", 0.5, "n = 10 exact sorted sequences, greedy (project goal; chance 1/10!)"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {
        "ns": (5,), "train_size": 20_000, "test_size": 500, "train.max_steps": 450, "train.eval_every": 450,
        "train.checkpoint_every": 450, "hidden_dim": 64, "train.warmup_steps": 30,
        "train.schedule": "constant", "train.lr": 5e-3,
    }
    quick_targets = (Target("acc_5", ">=", 0.7, "n = 5 exact sorted sequences after the quick run (chance 1/120)"),)

    def run(self, config: PointerSortConfig, ctx: RunContext) -> ExperimentResult:
        metrics: dict[str, float] = {}
        rows, panels = [], []
        for n in config.ns:
            gen = torch.Generator().manual_seed(ctx.seed * 1000 + n)
            train, test = (make_sorting(config.train_size, n, generator=gen),
                           make_sorting(config.test_size, n, generator=gen))
            val = make_sorting(500, n, generator=gen)  # checkpoint selection: never the test set
            variant = f"n{n}"
            ctx.seed_variant(variant)
            model = PointerNetwork(1, config.hidden_dim, permutation=True)
            fit = ctx.fit(variant, model, TensorBatches(inputs=train.values, targets=train.order),
                          lambda m, b: m.loss(b["inputs"], b["targets"]), train=config.train,
                          evaluate=lambda m, val=val: {"acc": _accuracy(m, val)})
            model.cpu()
            greedy, beam = _accuracy(model, test), _accuracy(model, test, config.beam_width)
            metrics[f"acc_{n}"], metrics[f"acc_{n}_beam"] = greedy, beam
            rows.append([n, config.test_size, greedy, beam, fit.steps])
            model.eval()
            out = model.greedy(test.values[:2])
            for i in range(2):
                v = test.values[i, :, 0]
                panels.append({"points": [[float(v[j]), j] for j in range(n)], "weights": out.weights[i].tolist(),
                               "chosen": out.indices[i].tolist(), "title": f"n = {n}, example {i}"})
        ctx.save_json("pointer_sort.json", {"panels": panels})
        return ExperimentResult(metrics=metrics, tables=[Table(
            "held-out exact sorted sequences", ["n", "examples", "greedy", f"beam {config.beam_width}", "steps"],
            rows)], notes=["chance accuracy is 1/n!; x = value, y = input position in the figure"])

    def figures(self, run_dir: Path, config: PointerSortConfig) -> list[Figure]:
        path = run_dir / "pointer_sort.json"
        if not path.exists():
            return []
        panels = [PointerPanel(closed=False, **p) for p in json.loads(path.read_text())["panels"]]
        plot_pointer_steps(panels, run_dir / "figures" / "pointer_sort.png")
        return [Figure("figures/pointer_sort.png",
                       "Sorting by pointing: each number drawn at (value, input position); at each decoding step the "
                       "points are sized and coloured by the pointer distribution (the additive-attention weights), "
                       "the red ring is the greedy pick and the grey line the sequence so far.")]
