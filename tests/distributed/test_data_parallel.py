"""Data-parallel training (qkv.train.loop with torch.distributed): 2 gloo processes match one process.

Same global batch and seed: the final parameters, the evaluation history and the logged training
losses agree to float tolerance, only rank 0 writes the checkpoint and the metrics, and a run
interrupted after its step-3 checkpoint resumes on the same 2 processes to the same parameters
(tests/distributed/dp_workers.py).
"""

from __future__ import annotations

import dp_workers
import pytest

from qkv.train.loop import TrainConfig, Trainer, distributed_world


@pytest.mark.slow  # ~18 s of CPU on 2 processes
def test_two_processes_match_one(spawn, tmp_path):
    spawn(dp_workers.train_and_compare, 2, str(tmp_path))
    shared = tmp_path / "shared"
    assert (shared / "ddp.jsonl").exists() and (shared / "ddp.safetensors").exists()
    # rank 1 wrote none of its own files: the single-process runs it made wrote only to its own folder
    assert sorted(p.name for p in (tmp_path / "rank1").iterdir()) == []


def test_distributed_world_without_a_group():
    assert distributed_world() == (0, 1)


def test_distributed_true_needs_a_group():
    model, data, loss_fn, _ = dp_workers.problem()
    with pytest.raises(ValueError, match="distributed=True"):
        Trainer(model, data, loss_fn, config=TrainConfig(), seed=0, distributed=True)
