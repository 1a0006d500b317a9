"""Full runs against their targets, and the quick runs' time budget (``pytest -m slow``)."""

from __future__ import annotations

import time

import pytest

from qkv.experiments.registry import all_experiments
from qkv.experiments.runner import run_experiment

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("experiment", all_experiments(), ids=lambda e: e.name)
def test_quick_run_finishes_within_a_minute(experiment, tmp_path):
    t0 = time.perf_counter()
    summary = run_experiment(experiment.name, quick=True, out=tmp_path, progress=False, log=lambda m: None)
    assert summary["status"] in ("ok", "skipped")
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("name", ["seq2seq-attention", "scaled-dot"])
def test_full_run_meets_its_targets(name, tmp_path):
    summary = run_experiment(name, out=tmp_path, progress=False, log=lambda m: None)
    assert summary["status"] == "ok"
    for target in summary["targets"]:
        assert target["met"] is True, target
