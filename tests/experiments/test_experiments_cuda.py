"""Every experiment's quick run on CUDA (issue 16 §1: ``qkv run NAME --device cuda``), against its quick targets.

Marked ``cuda`` and ``slow``: it runs where a GPU is present with ``pytest -m "slow and cuda"`` and skips
elsewhere. The Trainer moves the model and every batch to the GPU; an experiment's own evaluation must
put its data on ``model_device(model)`` (``qkv.experiments.seq2seq_common``) — this test is what checks it.
"""

from __future__ import annotations

import pytest
import torch

from qkv.experiments.registry import all_experiments
from qkv.experiments.runner import run_experiment

pytestmark = [pytest.mark.slow, pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("experiment", all_experiments(), ids=lambda e: e.name)
def test_quick_run_on_cuda(experiment, tmp_path):
    summary = run_experiment(experiment.name, quick=True, out=tmp_path, progress=False, device="cuda",
                             log=lambda m: None)
    assert summary["status"] in ("ok", "skipped"), summary.get("notes")
    if summary["status"] == "ok":
        assert summary["metrics"]
        for target in summary["targets"]:
            if target["checked"]:
                assert target["met"] is True, target
