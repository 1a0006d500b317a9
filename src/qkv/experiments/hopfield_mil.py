"""``hopfield-mil``: a Hopfield pooling layer inside a trained model — multiple-instance learning on digit bags.

Task (:mod:`qkv.tasks.digit_bags`): bags of 5-12 of scikit-learn's 8x8 digits; a bag is positive when it
holds a 9 (Ilse et al. 2018's MIL-MNIST setting, Ramsauer et al. 2020 §4). Train and test bags are drawn
from disjoint images. Model (:class:`qkv.models.hopfield_mil.HopfieldMIL`): an instance MLP, a
:class:`qkv.memory.HopfieldPooling` whose learned state pattern retrieves from the bag (one modern
Hopfield update, learned :math:`\\beta`), and a linear read-out; only bag labels are seen.

Measured on held-out bags: accuracy, and where the pooling looks — the fraction of positive bags whose
most-attended instance is a 9 (nothing in training says which instance is the 9). The figure shows test
bags with the pooling weight over their instances.

Shape legend: ``B`` bags, ``S`` instances per bag (padded to ``max_size``), ``F = 64`` pixels, ``H`` heads
of the pooling; the pooling weights are ``(B, H, 1, S)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from qkv.experiments.base import Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.registry import register
from qkv.experiments.seq2seq_common import model_device
from qkv.models.hopfield_mil import HopfieldMIL
from qkv.tasks.digit_bags import DigitBags, make_bags
from qkv.tasks.digits import load_digits
from qkv.train.loop import TensorBatches, TrainConfig
from qkv.viz.mpl import pyplot

__all__ = ["HopfieldMil", "HopfieldMilConfig", "MilDataConfig", "MilModelConfig"]


@dataclass(frozen=True)
class MilDataConfig:
    """Bags: ``train_bags``/``test_bags`` of ``min_size``..``max_size`` digits; positive = holds ``target``."""

    train_bags: int = 6000
    test_bags: int = 1000
    target: int = 9
    min_size: int = 5
    max_size: int = 12
    test_fraction: float = 0.3  # of the images, held out for the test bags

    def __post_init__(self) -> None:
        if self.train_bags < 2 or self.test_bags < 2:
            raise ValueError(f"data.train_bags and data.test_bags must be >= 2, got {self.train_bags}, "
                             f"{self.test_bags}")
        if not 0 <= self.target <= 9:
            raise ValueError(f"data.target must be a digit 0-9, got {self.target}")
        if not 1 <= self.min_size <= self.max_size:
            raise ValueError(f"need 1 <= data.min_size <= data.max_size, got {self.min_size}, {self.max_size}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"data.test_fraction must be in (0, 1), got {self.test_fraction}")


@dataclass(frozen=True)
class MilModelConfig:
    """The classifier: embedding width, pooling heads, initial beta of the pooling."""

    embed_dim: int = 64
    num_heads: int = 1
    beta: float = 1.0


@dataclass(frozen=True)
class HopfieldMilConfig:
    data: MilDataConfig = field(default_factory=MilDataConfig)
    model: MilModelConfig = field(default_factory=MilModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=3000, batch_size=32, lr=3e-3, warmup_steps=50, eval_every=250, checkpoint_every=250,
        monitor="acc", monitor_mode="max"))


def _bags(config: MilDataConfig, seed: int) -> tuple[DigitBags, DigitBags]:
    digits = load_digits()
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(digits.labels), generator=gen)
    n_test = round(config.test_fraction * len(perm))
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    kw = {"target": config.target, "min_size": config.min_size, "max_size": config.max_size, "generator": gen}
    train = make_bags(digits.images[train_idx], digits.labels[train_idx], count=config.train_bags, **kw)
    test = make_bags(digits.images[test_idx], digits.labels[test_idx], count=config.test_bags, **kw)
    return train, test


def _loss(model: HopfieldMIL, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits, _ = model(batch["instances"], batch["keep"])
    return F.binary_cross_entropy_with_logits(logits, batch["labels"])


def _measure(model: HopfieldMIL, bags: DigitBags, target: int) -> dict[str, float]:
    """Held-out metrics; the bags (built on the CPU) go to the model's device, the results come back."""
    device = model_device(model)
    model.eval()
    with torch.no_grad():
        logits, pooled = model(bags.instances.to(device), bags.keep.to(device), return_weights=True)
    model.train()
    logits, weights = logits.cpu(), pooled.weights.cpu()
    acc = float(((logits > 0).float() == bags.labels).float().mean())
    w = weights.mean(1)[:, 0]  # (B, S): weights averaged over heads
    pos = bags.labels == 1
    top = w.argmax(-1)  # (B,)
    hit = bags.instance_labels[torch.arange(len(top)), top] == target
    mass = (w * (bags.instance_labels == target)).sum(-1)  # weight on the target instances
    return {"acc": acc, "attends_target": float(hit[pos].float().mean()), "target_mass": float(mass[pos].mean())}


@register
class HopfieldMil(Experiment):
    name = "hopfield-mil"
    description = "HopfieldPooling in a trained model: multiple-instance learning on bags of digits (is there a 9?)"
    Config = HopfieldMilConfig
    targets = (
        Target("acc", ">=", 0.95, "held-out bag accuracy"),
        Target("attends_target", ">=", 0.9, "positive test bags whose most-attended instance is a 9"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {"train.max_steps": 500, "data.train_bags": 1500,
                                                  "data.test_bags": 500, "train.eval_every": 250}
    quick_targets = (
        Target("acc", ">=", 0.85, "held-out bag accuracy after the quick run"),
        Target("attends_target", ">=", 0.75, "positive test bags whose most-attended instance is a 9"),
    )

    def run(self, config: HopfieldMilConfig, ctx: RunContext) -> ExperimentResult:
        train, test = _bags(config.data, ctx.seed)
        data = TensorBatches(instances=train.instances, keep=train.keep, labels=train.labels)
        ctx.seed_variant("hopfield-pooling")
        model = HopfieldMIL(train.instances.shape[-1], embed_dim=config.model.embed_dim,
                            num_heads=config.model.num_heads, beta=config.model.beta)
        fit = ctx.fit("hopfield-pooling", model, data, _loss, train=config.train,
                      evaluate=lambda m: _measure(m, test, config.data.target))
        metrics = _measure(model.cpu(), test, config.data.target)
        metrics["beta_learned"] = float(model.pool.hopfield.beta.detach())
        model.eval()
        shown = torch.cat([torch.nonzero(test.labels == 1).squeeze(1)[:4],
                           torch.nonzero(test.labels == 0).squeeze(1)[:2]])  # 4 positive and 2 negative bags
        with torch.no_grad():
            logits, pooled = model(test.instances[shown], test.keep[shown], return_weights=True)
        ctx.save_json("mil.json", {"bags": [{
            "images": test.instances[b, : test.lengths[b]].tolist(),
            "digits": test.instance_labels[b, : test.lengths[b]].tolist(),
            "weights": pooled.weights.mean(1)[i, 0, : test.lengths[b]].tolist(),
            "label": int(test.labels[b]), "prob": float(torch.sigmoid(logits[i])),
        } for i, b in enumerate(shown.tolist())], "target": config.data.target})
        return ExperimentResult(metrics=metrics, tables=[Table(
            "held-out bags", ["bags", "accuracy", "top instance is the target (positive bags)",
                              "weight on target instances", "learned beta", "steps"],
            [[config.data.test_bags, metrics["acc"], metrics["attends_target"], metrics["target_mass"],
              metrics["beta_learned"], fit.steps]])])

    def figures(self, run_dir: Path, config: HopfieldMilConfig) -> list[Figure]:
        path = run_dir / "mil.json"
        if not path.exists():
            return []
        data = json.loads(path.read_text())
        plt = pyplot()
        bags = data["bags"]
        width = max(len(b["images"]) for b in bags)
        fig, axes = plt.subplots(len(bags), width, figsize=(1.1 * width, 1.45 * len(bags)), squeeze=False)
        for i, bag in enumerate(bags):
            top = max(range(len(bag["weights"])), key=lambda j: bag["weights"][j])
            for j in range(width):
                ax = axes[i][j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j >= len(bag["images"]):
                    ax.axis("off")
                    continue
                ax.imshow(torch.tensor(bag["images"][j]).reshape(8, 8).numpy(), cmap="gray_r", vmin=0, vmax=1)
                ax.set_title(f"{bag['weights'][j]:.2f}", fontsize=8, color="red" if j == top else "black")
                if bag["digits"][j] == data["target"]:
                    for side in ax.spines.values():
                        side.set_edgecolor("red")
                        side.set_linewidth(2)
            axes[i][0].set_ylabel(f"label {bag['label']}\np = {bag['prob']:.2f}", rotation=0, ha="right",
                                  va="center", fontsize=8)
        out = run_dir / "figures" / "hopfield_mil.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return [Figure("figures/hopfield_mil.png",
                       f"Held-out bags with the HopfieldPooling weight over each instance (red frame: a "
                       f"{data['target']}, red weight: the most attended); p = predicted probability of a "
                       "positive bag. Only bag labels were used in training.")]
