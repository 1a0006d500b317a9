"""Training machinery shared by every experiment: loop, checkpoints, seeding, metrics log, atomic writes."""

from __future__ import annotations

from qkv.train.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta, save_checkpoint
from qkv.train.io import atomic_write_bytes, atomic_write_text, save_json
from qkv.train.loop import (
    BatchSource,
    FitResult,
    ShardedSampler,
    TensorBatches,
    TrainConfig,
    Trainer,
    TrainState,
    fit,
    is_main_process,
    lr_at,
    resolve_device,
    to_device,
)
from qkv.train.metrics_log import MetricsLog
from qkv.train.progress import make_progress, progress_iter
from qkv.train.seeding import capture_rng_state, restore_rng_state, seed_everything

__all__ = [
    "BatchSource",
    "CheckpointError",
    "FitResult",
    "MetricsLog",
    "ShardedSampler",
    "TensorBatches",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "atomic_write_bytes",
    "atomic_write_text",
    "capture_rng_state",
    "fit",
    "is_main_process",
    "load_checkpoint",
    "lr_at",
    "make_progress",
    "progress_iter",
    "read_checkpoint_meta",
    "resolve_device",
    "restore_rng_state",
    "save_checkpoint",
    "save_json",
    "seed_everything",
    "to_device",
]
