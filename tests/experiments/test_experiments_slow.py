"""Full runs against their targets, and every quick run end to end against its quick targets (``pytest -m slow``).

The quick runs' time (under a minute each on a 2-core CPU) is measured and printed by
``qkv tour --quick``; machines are too noisy for a test to assert a wall-clock time.
"""

from __future__ import annotations

import pytest

from qkv.experiments.registry import all_experiments
from qkv.experiments.runner import run_experiment

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("experiment", all_experiments(), ids=lambda e: e.name)
def test_quick_run_completes(experiment, tmp_path):
    summary = run_experiment(experiment.name, quick=True, out=tmp_path, progress=False, log=lambda m: None)
    assert summary["status"] in ("ok", "skipped")
    if summary["status"] == "ok":
        assert summary["metrics"], "a quick run must measure its headline metrics"
        for target in summary["targets"]:  # a quick run shows the mechanism working, not merely running
            if target["checked"]:
                assert target["met"] is True, target


@pytest.mark.parametrize("name", ["seq2seq-attention", "scaled-dot"])
def test_full_run_meets_its_targets(name, tmp_path):
    summary = run_experiment(name, out=tmp_path, progress=False, log=lambda m: None)
    assert summary["status"] == "ok"
    for target in summary["targets"]:
        assert target["met"] is True, target
