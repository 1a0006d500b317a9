"""Pictures and the report: attention heatmaps with tokens, learning curves, the HTML report."""

from __future__ import annotations

from qkv.viz.curves import plot_learning_curves
from qkv.viz.heatmap import HeatmapPanel, plot_attention, save_attention_panels
from qkv.viz.mpl import pyplot
from qkv.viz.report import ReportError, find_runs, read_summary, render_report, write_report

__all__ = [
    "HeatmapPanel",
    "ReportError",
    "find_runs",
    "plot_attention",
    "plot_learning_curves",
    "pyplot",
    "read_summary",
    "render_report",
    "save_attention_panels",
    "write_report",
]
