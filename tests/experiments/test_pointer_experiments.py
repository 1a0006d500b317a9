"""The pointer-network experiments: registered, tiny end-to-end runs (fast), quick runs meeting their targets (slow)."""

from __future__ import annotations

import pytest
import torch

from qkv.experiments import all_experiments
from qkv.experiments.pointer_hull import hull_batches
from qkv.experiments.runner import run_experiment
from qkv.tasks.hull import hull_sequence

NAMES = ("pointer-sort", "pointer-hull", "pointer-tsp")

TINY = {  # --set syntax: tuples are comma-separated
    "pointer-sort": ["ns=4", "train_size=64", "test_size=16", "hidden_dim=8", "train.max_steps=3",
                     "train.eval_every=3", "train.batch_size=16"],
    "pointer-hull": ["min_n=4", "max_n=6", "test_ns=5,7", "train_size=64", "test_size=16", "hidden_dim=8",
                     "train.max_steps=3", "train.eval_every=3", "train.batch_size=16"],
    "pointer-tsp": ["ns=5", "train_size=64", "test_size=16", "hidden_dim=8", "train.max_steps=3",
                    "train.eval_every=3", "train.batch_size=16"],
}


def test_registered():
    assert set(NAMES) <= {e.name for e in all_experiments()}


def test_hull_batches_mix_sizes_with_padding_and_stop():
    d = hull_batches(40, 4, 7, generator=torch.Generator().manual_seed(0))
    assert d["inputs"].shape == (40, 7, 2) and set(d["lengths"].tolist()) <= {4, 5, 6, 7}
    for i in range(40):
        n = int(d["lengths"][i])
        assert torch.all(d["points"][i, n:] == 0)
        hull = hull_sequence(d["points"][i, :n].double().numpy())
        t = d["targets"][i].tolist()
        assert t[: len(hull) + 1] == [k + 1 for k in hull] + [0] and all(k == -1 for k in t[len(hull) + 1 :])


@pytest.mark.parametrize("name", [
    "pointer-hull",  # the runner, variable-length training, beam search, figures and report (a few seconds)
    pytest.param("pointer-sort", marks=pytest.mark.slow),
    pytest.param("pointer-tsp", marks=pytest.mark.slow),
])
def test_tiny_run_end_to_end(name, tmp_path):
    summary = run_experiment(name, overrides=TINY[name], out=tmp_path, progress=False, log=lambda m: None)
    assert summary["status"] == "ok" and summary["metrics"]
    assert list((tmp_path / "figures").glob("pointer_*.png"))
