"""Attention heatmaps with the actual tokens on both axes.

Rows are target (query) positions, columns source (key) positions, as in Bahdanau et al.
(2015, fig. 3): cell ``(t, s)`` is the weight :math:`\\alpha_{ts}` the decoder put on source
token ``s`` while emitting target token ``t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qkv.viz.mpl import pyplot

__all__ = ["HeatmapPanel", "plot_attention", "save_attention_panels"]


def _label(token: str) -> str:
    # "$" would switch matplotlib to mathtext; a space would vanish on the axis.
    return token.replace("$", r"\$").replace(" ", "␣") if token else "∅"


@dataclass
class HeatmapPanel:
    """One heatmap: ``weights`` ``(T, S)`` with ``target`` (T tokens) and ``source`` (S tokens)."""

    title: str
    weights: Any
    source: Sequence[str]
    target: Sequence[str]


def plot_attention(ax: Any, weights: Any, source: Sequence[str], target: Sequence[str], *, title: str = "",
                   vmax: float | None = 1.0) -> Any:
    """Draw one attention matrix on ``ax``; returns the image artist.

    Args:
        ax: a matplotlib Axes.
        weights: array-like ``(T, S)``: row t is the distribution over the S source tokens.
        source: S source tokens (x axis, top).
        target: T target tokens (y axis).
        title: panel title.
        vmax: colour scale maximum (1.0 makes panels comparable; None auto-scales).

    Raises:
        ValueError: ``weights`` is not 2-D or its shape disagrees with the token counts.
    """
    w = np.asarray(getattr(weights, "detach", lambda: weights)(), dtype=float)
    if w.ndim != 2:
        raise ValueError(f"plot_attention: weights must be 2-D (T, S), got shape {w.shape}")
    if w.shape != (len(target), len(source)):
        raise ValueError(
            f"plot_attention: weights have shape {w.shape} but there are {len(target)} target tokens "
            f"and {len(source)} source tokens (expected ({len(target)}, {len(source)}))"
        )
    im = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(source)))
    ax.set_xticklabels([_label(t) for t in source], rotation=90, fontsize=8)
    ax.set_yticks(range(len(target)))
    ax.set_yticklabels([_label(t) for t in target], fontsize=8)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    if title:
        ax.set_title(title, fontsize=10, fontweight="bold", y=-0.06, va="top")
    return im


def save_attention_panels(panels: Sequence[HeatmapPanel], path: str | Path, *, ncols: int = 3,
                          suptitle: str = "", row_labels: Sequence[str] | None = None,
                          vmax: float | None = 1.0) -> Path:
    """Save several heatmaps side by side (one panel per variant or head) to ``path`` (PNG or SVG).

    Panels fill ``ncols`` columns row by row. For a layer-by-head grid pass the ``N x H`` panels layer by
    layer with ``ncols=H`` and ``row_labels`` (``N`` labels such as "encoder layer 1", written left of each
    row). ``vmax`` is the shared colour-scale maximum (None: each panel auto-scales).

    Raises:
        ValueError: ``panels`` is empty, or ``row_labels`` does not give one label per row of panels.
    """
    if not panels:
        raise ValueError("save_attention_panels: panels is empty")
    plt = pyplot()
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"save_attention_panels: row_labels must give one label per row ({nrows} rows of "
                         f"{ncols} panels), got {len(row_labels)}")
    width = max(3.2, 0.28 * max(len(p.source) for p in panels) + 1.2)
    height = max(2.6, 0.28 * max(len(p.target) for p in panels) + 1.4)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                             layout="constrained")
    im = None
    for k, (ax, panel) in enumerate(zip(axes.flat, panels, strict=False)):
        im = plot_attention(ax, panel.weights, panel.source, panel.target, title=panel.title, vmax=vmax)
        if row_labels is not None:
            ax.set_ylabel(row_labels[k // ncols] if k % ncols == 0 else "", fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="attention weight")
    if suptitle:
        fig.suptitle(suptitle)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
