"""Pictures and the report: attention heatmaps with tokens, learning curves, the HTML report."""

from __future__ import annotations

from qkv.viz.curves import plot_learning_curves
from qkv.viz.heatmap import HeatmapPanel, plot_attention, save_attention_panels
from qkv.viz.report import find_runs, render_report, write_report

__all__ = [
    "HeatmapPanel",
    "find_runs",
    "plot_attention",
    "plot_learning_curves",
    "render_report",
    "save_attention_panels",
    "write_report",
]
