"""``pointer-hull``: a pointer network outputs the planar convex hull of its input points (Vinyals et al. 2015 §4.2).

Task (:mod:`qkv.tasks.hull`): ``n`` points uniform in the unit square; the answer is the hull's vertices from
:class:`scipy.spatial.ConvexHull`, counter-clockwise from the lowest index, then "stop". Model
(:class:`qkv.memory.PointerNetwork` with the end token): the additive-attention distribution over
``[stop, p_1 .. p_n]`` is the output at each step; vertices already output are masked. One model is trained on
point sets of mixed sizes ``min_n..max_n`` (padded; the paper trained on 5-50) and tested on each of
``test_ns``, including sizes longer than any it saw.

Measured (the paper's two numbers): accuracy, the exact hull sequence up to a cyclic rotation, and area
coverage, the predicted polygon's area over the true hull's (0 for a polygon that is not simple), with greedy
decoding and beam search. The paper reports 92.0% accuracy at n = 5 and 87.0% at n = 10.

Shape legend: ``B`` point sets, ``N`` points (padded to ``max_n``), ``M`` hull vertices, ``K = N + 1`` keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from qkv.experiments.base import Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.registry import register
from qkv.memory.pointer import PointerNetwork
from qkv.tasks.hull import area_coverage, hull_accuracy, make_hulls
from qkv.train.loop import TensorBatches, TrainConfig
from qkv.viz.pointer import PointerPanel, plot_pointer_steps

__all__ = ["PointerHull", "PointerHullConfig", "hull_batches"]


@dataclass(frozen=True)
class PointerHullConfig:
    """Training sizes ``min_n..max_n`` (mixed), ``test_ns`` to evaluate, data sizes, model width, beam width."""

    min_n: int = 5
    max_n: int = 10
    test_ns: tuple[int, ...] = (5, 10, 20)
    train_size: int = 200_000
    test_size: int = 1000
    hidden_dim: int = 128
    beam_width: int = 4
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=12000, batch_size=128, lr=5e-3, warmup_steps=100, eval_every=1000, checkpoint_every=500,
        monitor="acc", monitor_mode="max", grad_clip=2.0))

    def __post_init__(self) -> None:
        if not 3 <= self.min_n <= self.max_n:
            raise ValueError(f"need 3 <= min_n <= max_n, got {self.min_n}, {self.max_n}")
        if not self.test_ns or any(n < 3 for n in self.test_ns):
            raise ValueError(f"test_ns must be sizes >= 3, got {self.test_ns}")
        if self.train_size < 1 or self.test_size < 1:
            raise ValueError(f"train_size and test_size must be >= 1, got {self.train_size}, {self.test_size}")


def hull_batches(count: int, min_n: int, max_n: int, *, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Point sets of sizes uniform in ``min_n..max_n``, padded to ``max_n``, with pointer targets.

    Returns ``points (B, max_n, 2)`` in the unit square, ``inputs = 2 points - 1`` (the model's input: centred
    coordinates in ``[-1, 1]``, the same hull, and a much shorter plateau at the start of training),
    ``lengths (B,)`` and ``targets (B, M + 1)``: key positions (point ``i`` is key ``i + 1``) of the hull, then 0
    ("stop"), then ``-1``.
    """
    sizes = torch.randint(min_n, max_n + 1, (count,), generator=generator)
    inputs = torch.zeros(count, max_n, 2)
    parts = {}
    for n in range(min_n, max_n + 1):
        idx = torch.nonzero(sizes == n).squeeze(1)
        if len(idx):
            parts[n] = (idx, make_hulls(len(idx), n, generator=generator))
    width = max(int(d.sizes.max()) for _, d in parts.values()) + 1
    targets = torch.full((count, width), -1, dtype=torch.long)
    for n, (idx, d) in parts.items():
        inputs[idx, :n] = d.points
        t = torch.where(d.hulls >= 0, d.hulls + 1, -1)  # (b, M): key positions of the vertices
        t = torch.cat([t, torch.full((len(idx), 1), -1)], dim=1)
        t[torch.arange(len(idx)), d.sizes] = 0  # "stop" after the last vertex
        targets[idx, : t.shape[1]] = t
    return {"points": inputs, "inputs": 2 * inputs - 1, "lengths": sizes, "targets": targets}


def _vertices(indices: torch.Tensor) -> list[list[int]]:
    """Decoded key positions ``(B, T)`` -> point indices up to "stop"."""
    out = []
    for row in indices.tolist():
        seq = []
        for k in row:
            if k <= 0:
                break
            seq.append(k - 1)
        out.append(seq)
    return out


def _measure(model: PointerNetwork, data: dict[str, torch.Tensor], beam_width: int = 1) -> dict[str, float]:
    was_training = model.training
    model.eval()
    out = model.decode(data["inputs"], lengths=data["lengths"], beam_width=beam_width)
    model.train(was_training)
    points = data["points"].numpy()
    acc, cov = [], []
    for i, pred in enumerate(_vertices(out.indices)):
        truth = _vertices(data["targets"][i : i + 1])[0]
        acc.append(hull_accuracy(pred, truth))
        cov.append(area_coverage(points[i], pred, truth))
    return {"acc": float(np.mean(acc)), "area": float(np.mean(cov))}


@register
class PointerHull(Experiment):
    name = "pointer-hull"
    description = "Pointer network (Vinyals et al. 2015): planar convex hulls; accuracy and area coverage"
    Config = PointerHullConfig
    targets = (
        Target("acc_5_beam", ">=", 0.920, "n = 5 exact hull up to rotation, beam search (paper: 92.0%)"),
        Target("acc_10_beam", ">=", 0.870, "n = 10 exact hull up to rotation, beam search (paper: 87.0%)"),
        Target("area_10_beam", ">=", 0.99, "n = 10 area coverage, beam search (the paper reports over 99%)"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {
        "min_n": 5, "max_n": 5, "test_ns": (5,), "train_size": 20_000, "test_size": 500, "hidden_dim": 64,
        "train.max_steps": 550, "train.eval_every": 550, "train.checkpoint_every": 550, "train.warmup_steps": 30,
        "train.schedule": "constant",
        "train.lr": 5e-3,
    }
    quick_targets = (
        Target("acc_5", ">=", 0.35, "n = 5 exact hull sequences after the quick run, greedy"),
        Target("area_5", ">=", 0.75, "n = 5 area coverage after the quick run, greedy"),
    )

    def run(self, config: PointerHullConfig, ctx: RunContext) -> ExperimentResult:
        gen = torch.Generator().manual_seed(ctx.seed)
        train = hull_batches(config.train_size, config.min_n, config.max_n, generator=gen)
        tests = {n: hull_batches(config.test_size, n, n, generator=gen) for n in config.test_ns}
        val = hull_batches(300, config.min_n, config.max_n, generator=gen)
        ctx.seed_variant("ptr-net")
        model = PointerNetwork(2, config.hidden_dim, end_token=True, permutation=True)
        fit = ctx.fit("ptr-net", model, TensorBatches(**train),
                      lambda m, b: m.loss(b["inputs"], b["targets"], lengths=b["lengths"]), train=config.train,
                      evaluate=lambda m: _measure(m, val))
        model.cpu()
        metrics: dict[str, float] = {}
        rows, panels = [], []
        trained = f"{config.min_n}-{config.max_n}" if config.min_n < config.max_n else str(config.min_n)
        for n, data in tests.items():
            greedy, beam = _measure(model, data), _measure(model, data, config.beam_width)
            metrics.update({f"acc_{n}": greedy["acc"], f"area_{n}": greedy["area"],
                            f"acc_{n}_beam": beam["acc"], f"area_{n}_beam": beam["area"]})
            rows.append([trained, n, greedy["acc"], greedy["area"], beam["acc"], beam["area"]])
            model.eval()
            out = model.greedy(data["inputs"][:2])
            for i in range(2):
                w = out.weights[i]  # (T, K): column 0 is "stop"
                panels.append({"points": data["points"][i].tolist(), "weights": w[:, 1:].tolist(),
                               "stop": w[:, 0].tolist(), "chosen": [k - 1 for k in out.indices[i].tolist()],
                               "truth": _vertices(data["targets"][i : i + 1])[0], "title": f"n = {n}"})
        ctx.save_json("pointer_hull.json", {"panels": panels[:6]})
        return ExperimentResult(metrics=metrics, tables=[Table(
            "held-out convex hulls (paper: 92.0% at n = 5, 87.0% at n = 10)",
            ["trained n", "test n", "accuracy (greedy)", "area (greedy)", f"accuracy (beam {config.beam_width})",
             f"area (beam {config.beam_width})"], rows)],
            notes=[f"{fit.steps} steps on {config.train_size} point sets"])

    def figures(self, run_dir: Path, config: PointerHullConfig) -> list[Figure]:
        path = run_dir / "pointer_hull.json"
        if not path.exists():
            return []
        panels = [PointerPanel(**p) for p in json.loads(path.read_text())["panels"]]
        plot_pointer_steps(panels, run_dir / "figures" / "pointer_hull.png")
        return [Figure("figures/pointer_hull.png",
                       "Convex hull by pointing: at each decoding step the points are sized and coloured by the "
                       "pointer distribution (the additive-attention weights); red ring: the greedy pick, grey: the "
                       "hull so far, green: the true hull; the title gives the weight of the pick or of 'stop'.")]
