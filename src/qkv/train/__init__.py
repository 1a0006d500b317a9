"""Training machinery shared by every experiment: loop, checkpoints, seeding, metrics log."""

from __future__ import annotations

from qkv.train.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta, save_checkpoint
from qkv.train.loop import BatchSource, FitResult, TensorBatches, TrainConfig, fit, lr_at
from qkv.train.metrics_log import MetricsLog
from qkv.train.seeding import capture_rng_state, restore_rng_state, seed_everything

__all__ = [
    "BatchSource",
    "CheckpointError",
    "FitResult",
    "MetricsLog",
    "TensorBatches",
    "TrainConfig",
    "capture_rng_state",
    "fit",
    "load_checkpoint",
    "lr_at",
    "read_checkpoint_meta",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
]
