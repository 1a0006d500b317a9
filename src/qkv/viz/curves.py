"""Learning curves from ``metrics.jsonl`` records: training loss and evaluation metrics per variant."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from qkv.viz.mpl import pyplot

__all__ = ["plot_learning_curves"]


def plot_learning_curves(records: list[dict[str, Any]], path: str | Path, *, max_eval_panels: int = 3) -> Path:
    """Plot training loss (left) and up to ``max_eval_panels`` evaluation metrics against step.

    Args:
        records: ``metrics.jsonl`` records (``variant``, ``split``, ``step`` and metric values).
        path: output image (PNG or SVG).
    """
    plt = pyplot()
    train: dict[str, list[tuple[int, float]]] = defaultdict(list)
    evals: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        variant, step = str(r.get("variant", "main")), int(r.get("step", 0))
        if r.get("split") == "train" and isinstance(r.get("loss"), int | float):
            train[variant].append((step, float(r["loss"])))
        elif r.get("split") == "eval":
            for key, value in r.items():
                if key not in ("variant", "split", "step") and isinstance(value, int | float):
                    evals[key][variant].append((step, float(value)))
    keys = sorted(evals, key=lambda k: (k == "loss", k))[:max_eval_panels]
    fig, axes = plt.subplots(1, 1 + len(keys), figsize=(4.6 * (1 + len(keys)), 3.4), squeeze=False)
    ax = axes[0, 0]
    for variant, points in sorted(train.items()):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, label=variant, lw=1.2)
    ax.set_title("training loss")
    ax.set_xlabel("step")
    if train and min(v for pts in train.values() for _, v in pts) > 0:
        ax.set_yscale("log")
    if len(train) > 1 or keys:
        ax.legend(fontsize=7)
    for ax, key in zip(axes[0, 1:], keys, strict=True):
        for variant, points in sorted(evals[key].items()):
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", ms=3, label=variant, lw=1.2)
        ax.set_title(f"eval: {key}")
        ax.set_xlabel("step")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
