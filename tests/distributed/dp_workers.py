"""Worker processes for the data-parallel training tests (spawned; imported by name, so not a test module)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from qkv.train.loop import TensorBatches, TrainConfig, fit
from qkv.train.metrics_log import MetricsLog

CONFIG = TrainConfig(max_steps=8, batch_size=8, lr=1e-2, warmup_steps=2, log_every=2, eval_every=4,
                     checkpoint_every=3, keep_best=False)


def problem():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(-1, keepdim=True))
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1)).double()

    def loss_fn(m, batch):
        err = m(batch["x"]) - batch["y"]
        return (err**2).mean(), {"abs_err": float(err.abs().mean())}

    def evaluate(m):
        return {"loss": float(((m(x[:16]) - y[:16]) ** 2).mean())}

    return model, TensorBatches(x=x, y=y), loss_fn, evaluate


class _Stop(Exception):
    pass


def _run(folder: Path, tag: str, *, distributed: bool, resume: bool = False, stop_at: int | None = None):
    model, data, loss_fn, evaluate = problem()
    calls = {"n": 0}

    def stopping_loss(m, batch):
        calls["n"] += 1
        if stop_at is not None and calls["n"] > stop_at:
            raise _Stop
        return loss_fn(m, batch)

    main = dist.get_rank() == 0  # rank 1 writes nothing, even in its single-process reference run
    result = fit(
        model, data, stopping_loss, config=CONFIG, seed=11, evaluate=evaluate,
        checkpoint=folder / f"{tag}.safetensors", metrics=MetricsLog(folder / f"{tag}.jsonl"), variant=tag,
        resume=resume, progress=False, distributed=distributed, main_process=main,
    )
    return model, result


def train_and_compare(rank: int, world: int, port: int, folder: str) -> None:
    """Single-process and data-parallel training agree: parameters, eval history and logged train losses."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    folder = Path(folder) / f"rank{rank}"
    folder.mkdir(parents=True, exist_ok=True)
    shared = folder.parent / "shared"
    shared.mkdir(exist_ok=True)
    try:
        ref, ref_result = _run(folder, "single", distributed=False)
        ddp, ddp_result = _run(shared, "ddp", distributed=True)
        for (name, a), b in zip(ref.named_parameters(), ddp.parameters(), strict=True):
            torch.testing.assert_close(b, a, msg=lambda m, n=name: f"rank {rank} parameter {n}: {m}")
        evals = [[r["loss"] for r in res.history] for res in (ref_result, ddp_result)]
        torch.testing.assert_close(torch.tensor(evals[1]), torch.tensor(evals[0]))
        if rank == 0:
            import json

            def train_losses(path):
                rows = [json.loads(line) for line in path.read_text().splitlines()]
                return torch.tensor([[r["loss"], r["abs_err"]] for r in rows if r["split"] == "train"])

            torch.testing.assert_close(train_losses(shared / "ddp.jsonl"), train_losses(folder / "single.jsonl"))
        assert (shared / "ddp.safetensors").exists()
        # resume with the same N: stop after 5 steps (a checkpoint at step 3), resume, compare
        try:
            _run(shared, "resumed", distributed=True, stop_at=5)
            raise AssertionError("the interrupted run did not stop")
        except _Stop:
            pass
        dist.barrier()
        resumed, result = _run(shared, "resumed", distributed=True, resume=True)
        assert result.resumed_from == 3, result.resumed_from
        for (name, a), b in zip(ref.named_parameters(), resumed.parameters(), strict=True):
            torch.testing.assert_close(b, a, msg=lambda m, n=name: f"resumed, rank {rank} parameter {n}: {m}")
    finally:
        dist.destroy_process_group()
