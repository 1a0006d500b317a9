"""The Hopfield experiments: registered, theory helpers, tiny end-to-end runs (fast), quick runs (slow)."""

from __future__ import annotations

import pytest
import torch

from qkv.experiments import all_experiments
from qkv.experiments.hopfield_capacity import ags_alpha_c, ags_overlap, crossing, energy_traces
from qkv.experiments.runner import run_experiment
from qkv.tasks.corruption import corrupt, random_patterns
from qkv.tasks.digit_bags import make_bags
from qkv.tasks.digits import binarize, distinct, load_digits

NAMES = ("hopfield-capacity", "hopfield-retrieval", "hopfield-mil")


def test_registered():
    names = {e.name for e in all_experiments()}
    assert set(NAMES) <= names


def test_ags_theory_gives_the_known_critical_load():
    assert ags_alpha_c() == pytest.approx(0.138, abs=0.001)  # Amit, Gutfreund and Sompolinsky
    assert ags_overlap(0.1) == pytest.approx(0.998, abs=0.001)
    assert ags_overlap(0.137) > 0.96 and ags_overlap(0.14) == 0.0
    assert crossing([0.1, 0.2, 0.3], [1.0, 0.6, 0.2], 0.8) == pytest.approx(0.15)


def test_energy_traces_show_exercise_8_6():
    t = energy_traces(n=16, patterns=2, probes=3)
    assert t["increases"] == 0 and t["sync_cycled"]
    assert t["sync_states"][0] == t["sync_states"][2] != t["sync_states"][1]


def test_tasks_corrupt_exactly_and_bags_are_labelled():
    g = torch.Generator().manual_seed(0)
    x = random_patterns(4, 50, generator=g)
    assert torch.all((corrupt(x, 0.2, generator=g) != x).sum(-1) == 10)
    assert torch.all((corrupt(x, 0.2, kind="mask", generator=g) == 0).sum(-1) == 10)
    with pytest.raises(ValueError, match="fraction"):
        corrupt(x, 1.5)
    d = load_digits()
    p = binarize(d.images)
    idx = distinct(p, 50, min_distance=4, generator=g)
    assert len(idx) == 50 and torch.all(torch.cdist(p[idx], p[idx], p=0).fill_diagonal_(99) >= 4)
    bags = make_bags(d.images, d.labels, count=20, generator=g)
    has9 = ((bags.instance_labels == 9) & bags.keep).any(-1).float()
    assert torch.equal(has9, bags.labels) and bags.labels.sum() == 10


TINY = {  # --set syntax: tuples are comma-separated
    "hopfield-capacity": ["sizes=100", "alphas=0.05,0.3", "seeds=1", "max_probes=20"],
    "hopfield-retrieval": ["counts=2,20", "corruptions=0.1", "kinds=flip", "probes=10", "betas=0.1,1.0",
                           "sweep_count=20", "random_counts=100", "random_corruptions=0.0", "random_probes=20"],
    "hopfield-mil": ["train.max_steps=5", "data.train_bags=20", "data.test_bags=10", "train.eval_every=5"],
}


@pytest.mark.parametrize("name", [
    "hopfield-capacity",  # the runner, figures and report end to end, in the default suite (a few seconds)
    pytest.param("hopfield-retrieval", marks=pytest.mark.slow),  # ~6 s each: figures and report
    pytest.param("hopfield-mil", marks=pytest.mark.slow),
])
def test_tiny_run_end_to_end(name, tmp_path):
    summary = run_experiment(name, overrides=TINY[name], out=tmp_path, progress=False, log=lambda m: None)
    assert summary["status"] == "ok" and summary["metrics"]
    assert list((tmp_path / "figures").glob("*.png"))


@pytest.mark.slow
def test_digits_are_exactly_sklearns():
    from sklearn.datasets import load_digits as sk_load

    data, ours = sk_load(), load_digits()
    torch.testing.assert_close(ours.images, torch.as_tensor(data.data / 16.0, dtype=torch.float32))
    assert torch.equal(ours.labels, torch.as_tensor(data.target).long())
