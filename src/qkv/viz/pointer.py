"""The pointer distribution drawn on the input points, one panel per decoding step.

Shape legend: ``N`` points, ``T`` decoding steps.

Vinyals et al. (2015) read a pointer network's output as a distribution over its inputs; this figure puts
that distribution back where the inputs live. In panel ``t`` every point is drawn with an area and colour
proportional to the weight the decoder gave it at step ``t``, the path chosen so far is drawn in grey, and
the point chosen at step ``t`` is ringed in red. A step that pointed to "stop" (the hull's end token) says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qkv.viz.mpl import pyplot

__all__ = ["PointerPanel", "plot_pointer_steps"]


@dataclass
class PointerPanel:
    """One decoded example: ``points (N, 2)``, ``weights (T, N)`` over the points at each step, ``chosen`` (T
    point indices, ``-1`` = "stop"), ``stop`` (T) the weight on "stop" (or ``None``), a ``title`` and whether the
    path closes into a cycle (hull, tour) when it is complete."""

    points: Sequence[Sequence[float]]
    weights: Sequence[Sequence[float]]
    chosen: Sequence[int]
    title: str = ""
    stop: Sequence[float] | None = None
    closed: bool = True
    truth: Sequence[int] | None = None


def plot_pointer_steps(panels: Sequence[PointerPanel], path: Path, *, max_steps: int = 12) -> Path:
    """Draw each example as one row of panels (one per decoding step, at most ``max_steps``) into ``path``."""
    plt = pyplot()
    steps = min(max_steps, max(len(p.chosen) for p in panels))
    fig, axes = plt.subplots(len(panels), steps, figsize=(1.9 * steps, 2.0 * len(panels)), squeeze=False)
    for row, panel in enumerate(panels):
        pts = np.asarray(panel.points, dtype=float)
        w = np.asarray(panel.weights, dtype=float)
        lo, hi = pts.min(0), pts.max(0)
        pad = 0.08 * np.maximum(hi - lo, 1e-6)
        for t in range(steps):
            ax = axes[row][t]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
            if t >= len(panel.chosen):
                ax.axis("off")
                continue
            if panel.truth is not None and t == 0:
                tr = pts[list(panel.truth) + ([panel.truth[0]] if panel.closed else [])]
                ax.plot(tr[:, 0], tr[:, 1], color="tab:green", lw=2.5, alpha=0.35, zorder=0)
            path_so_far = [c for c in panel.chosen[: t + 1] if c >= 0]
            if path_so_far:
                seq = pts[path_so_far]
                ax.plot(seq[:, 0], seq[:, 1], color="0.45", lw=1, zorder=1)
            ax.scatter(pts[:, 0], pts[:, 1], s=8, color="0.75", zorder=2)
            ax.scatter(pts[:, 0], pts[:, 1], s=10 + 220 * w[t], c=w[t], cmap="viridis", vmin=0, vmax=1, zorder=3)
            pick = panel.chosen[t]
            if pick >= 0:
                ax.scatter([pts[pick, 0]], [pts[pick, 1]], s=170, facecolors="none", edgecolors="red", lw=1.2,
                           zorder=4)
                label = f"t={t + 1}: {pick}  p={w[t, pick]:.2f}"
                if panel.closed and t == len(panel.chosen) - 1 and len(path_so_far) > 2:  # a complete tour closes
                    ends = pts[[path_so_far[-1], path_so_far[0]]]
                    ax.plot(ends[:, 0], ends[:, 1], color="0.45", lw=1, ls="--", zorder=1)
            else:
                done = [c for c in panel.chosen[:t] if c >= 0]
                if panel.closed and len(done) > 2:
                    ends = pts[[done[-1], done[0]]]
                    ax.plot(ends[:, 0], ends[:, 1], color="0.45", lw=1, ls="--", zorder=1)
                stop = panel.stop[t] if panel.stop is not None else float("nan")
                label = f"t={t + 1}: stop  p={stop:.2f}"
            ax.set_title(label, fontsize=7)
        if panel.title:
            axes[row][0].set_ylabel(panel.title, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
