"""Heatmaps with tokens on the axes, and learning curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from qkv.viz.curves import plot_learning_curves
from qkv.viz.heatmap import HeatmapPanel, plot_attention, save_attention_panels


def test_tokens_label_both_axes():
    fig, ax = plt.subplots()
    w = torch.softmax(torch.randn(3, 4), -1)
    plot_attention(ax, w, ["a", "$x", " ", "<eos>"], ["1", "2", "3"], title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", r"\$x", "␣", "<eos>"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "2", "3"]
    np.testing.assert_allclose(ax.images[0].get_array(), w.numpy(), rtol=1e-6)
    plt.close(fig)


def test_shape_mismatch_names_both_sides():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*2 target tokens and 4 source"):
        plot_attention(ax, np.zeros((3, 4)), list("abcd"), ["x", "y"])
    with pytest.raises(ValueError, match="2-D"):
        plot_attention(ax, np.zeros(3), list("abc"), ["x"])
    plt.close(fig)


def test_panels_and_curves_are_written(tmp_path):
    panels = [HeatmapPanel(f"v{i}", np.eye(3), list("abc"), list("xyz")) for i in range(4)]
    for suffix in ("png", "svg"):
        path = save_attention_panels(panels, tmp_path / f"p.{suffix}", ncols=3, suptitle="demo")
        assert path.stat().st_size > 1000
    records = [{"variant": v, "split": "train", "step": s, "loss": 1.0 / s} for v in "ab" for s in (1, 2, 3)]
    records += [{"variant": "a", "split": "eval", "step": 3, "acc": 0.5, "loss": 0.2}]
    path = plot_learning_curves(records, tmp_path / "c.png")
    assert plt.imread(path).std() > 0.01
    with pytest.raises(ValueError, match="empty"):
        save_attention_panels([], tmp_path / "none.png")


def test_panels_as_a_layer_by_head_grid_label_each_row(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    saved = []
    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (saved.append(fig), original(fig, *a, **k))[1])
    rows = [[np.eye(3) * (h + 1) / 3 for h in range(3)] for _ in range(2)]  # 2 layers x 3 heads
    panels = [HeatmapPanel(f"head {h + 1}", w, list("abc"), list("xyz")) for row in rows for h, w in enumerate(row)]
    save_attention_panels(panels, tmp_path / "grid.png", ncols=3, row_labels=["layer 1", "layer 2"], vmax=None)
    axes = saved[0].axes[:6]
    assert [ax.get_ylabel() for ax in axes] == ["layer 1", "", "", "layer 2", "", ""]
    assert axes[0].images[0].get_clim()[1] == pytest.approx(1 / 3)  # vmax=None: each panel auto-scales
    with pytest.raises(ValueError, match="row_labels"):
        save_attention_panels(panels, tmp_path / "bad.png", ncols=3, row_labels=["layer 1"])
