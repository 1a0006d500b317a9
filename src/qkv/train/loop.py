"""The training loop every qkv experiment shares.

AdamW (Loshchilov & Hutter, 2019) with global-norm gradient clipping, a warm-up + cosine /
linear / constant learning-rate schedule, periodic evaluation, early stopping on a monitored
metric (restoring the best weights), ``metrics.jsonl`` logging, progress output (a bar on a
terminal, a few lines in a log: :mod:`qkv.train.progress`), and atomic, resumable safetensors
checkpoints.

The loop is a :class:`Trainer` made of small parts, each a place to extend:

* :class:`TrainState` — everything besides the model and the optimizer that a checkpoint holds;
* :class:`ShardedSampler` — the data order, seeded, with ``rank``/``world_size`` sharding;
* :meth:`Trainer.step` — one optimizer step on ``device``, under :func:`torch.autocast` when
  ``train.amp`` asks for mixed precision;
* :meth:`Trainer.evaluate` — evaluation, early stopping and best-weight bookkeeping;
* :meth:`Trainer.save` / :meth:`Trainer.restore` — checkpoints; only the main process
  (rank 0, :func:`is_main_process`) writes files, logs metrics or shows progress.

Data parallelism (:func:`distributed_world`): when ``torch.distributed`` is initialised with
more than one process (``qkv run NAME --nproc N``, or ``torchrun ... -m qkv run NAME``), the loss
runs inside a :class:`~torch.nn.parallel.DistributedDataParallel` (which averages the gradients
across ranks), each rank draws ``batch_size / N`` examples of the same global batch
(:class:`ShardedSampler`), and the logged training loss, the extra statistics and the evaluation
metrics are averaged across ranks; every rank reads the checkpoint on resume, rank 0 writes it.
With the same global batch and seed the run matches a single-process one to float tolerance.

Exact resumption: a checkpoint captures the model, the optimizer moments, every global RNG
(:mod:`qkv.train.seeding`), the data-order generator and the current epoch's permutation,
the early-stopping state and the partial training-loss average. Resuming from it replays the
remaining steps bit-for-bit on the same machine, so a run killed with SIGKILL and resumed
finishes with the same metrics as an uninterrupted one (tested in ``tests/test_cli.py``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

from qkv.train.checkpoint import (
    CheckpointError,
    check_permutation,
    flatten_optimizer_state,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
    unflatten_optimizer_state,
)
from qkv.train.metrics_log import MetricsLog
from qkv.train.progress import make_progress
from qkv.train.seeding import capture_rng_state, restore_rng_state

__all__ = [
    "BatchSource",
    "FitResult",
    "ShardedSampler",
    "TensorBatches",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "distributed_world",
    "fit",
    "is_main_process",
    "lr_at",
    "resolve_device",
    "to_device",
]


@dataclass(frozen=True)
class TrainConfig:
    """Options of :func:`fit` (an experiment nests one as its ``train`` field: ``--set train.lr=1e-3``).

    Attributes:
        max_steps: optimizer steps to run (fewer if early stopping triggers).
        batch_size: examples per step (the global batch: data-parallel ranks take ``batch_size / N`` each).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW's decoupled weight decay.
        beta1, beta2: AdamW's moment coefficients.
        grad_clip: maximum global L2 norm of the gradient; 0 disables clipping.
        schedule: ``"cosine"`` or ``"linear"`` decay to ``min_lr_ratio * lr`` after warm-up, or ``"constant"``.
        warmup_steps: linear warm-up from 0 to ``lr``.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        log_every: steps between training-loss records in ``metrics.jsonl``.
        eval_every: steps between evaluations (the last step is always evaluated).
        checkpoint_every: steps between checkpoints (the end of training always writes one).
        patience: evaluations without improvement of ``monitor`` before stopping; 0 never stops early.
        monitor: evaluation metric for early stopping and best-weight selection.
        monitor_mode: ``"max"`` if larger ``monitor`` is better, else ``"min"``.
        keep_best: at the end, restore the weights with the best ``monitor`` value.
        amp: mixed precision for the forward pass and the loss: ``"off"`` (default), ``"bf16"`` or
            ``"fp16"`` (:func:`torch.autocast`; fp16 adds a gradient scaler on CUDA).
    """

    max_steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    log_every: int = 10
    eval_every: int = 200
    checkpoint_every: int = 100
    patience: int = 0
    monitor: str = "loss"
    monitor_mode: Literal["max", "min"] = "min"
    keep_best: bool = True
    amp: Literal["off", "bf16", "fp16"] = "off"

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "log_every", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"train.lr must be a positive finite float, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(
                f"train.weight_decay and train.grad_clip must be >= 0, got {self.weight_decay}, {self.grad_clip}"
            )
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"train.beta1/beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"train.schedule must be 'cosine', 'linear' or 'constant', got {self.schedule!r}")
        if self.monitor_mode not in ("max", "min"):
            raise ValueError(f"train.monitor_mode must be 'max' or 'min', got {self.monitor_mode!r}")
        if self.amp not in ("off", "bf16", "fp16"):
            raise ValueError(f"train.amp must be 'off', 'bf16' or 'fp16', got {self.amp!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then the chosen decay."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    factor = 0.5 * (1.0 + math.cos(math.pi * progress)) if config.schedule == "cosine" else 1.0 - progress
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * factor)


class BatchSource(Protocol):
    """What :func:`fit` trains on: ``len`` examples, and a batch for a tensor of indices.

    A source may also set ``ordered = True``: its examples are then taken in index order (``0, 1, 2, ...``)
    instead of a seeded permutation, for sources whose index is a position in a schedule (a curriculum,
    :class:`qkv.tasks.algorithmic_memory.AlgorithmicStream`).
    """

    def __len__(self) -> int: ...

    def batch(self, indices: torch.Tensor) -> Any: ...


class TensorBatches:
    """A :class:`BatchSource` over equally long tensors: ``batch(idx)`` returns ``{name: tensor[idx]}``."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        if not tensors:
            raise ValueError("TensorBatches needs at least one tensor")
        sizes = {name: t.shape[0] for name, t in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"TensorBatches tensors must share their first dimension, got {sizes}")
        self.tensors = tensors

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: t[indices] for name, t in self.tensors.items()}


LossFn = Callable[[nn.Module, Any], "torch.Tensor | tuple[torch.Tensor, dict[str, float]]"]
EvalFn = Callable[[nn.Module], dict[str, float]]


# -- places: device, rank, data order ------------------------------------------------------------


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"cpu"``, ``"cuda"`` (``"cuda:N"``) or ``"auto"`` (CUDA when available, else CPU) as a device.

    Raises:
        ValueError: an unknown name, or CUDA asked for on a machine without it.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA GPU is available here (use 'cpu' or 'auto')")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    return dev


def is_main_process() -> bool:
    """True unless ``torch.distributed`` is initialised and this process is not rank 0.

    The loop writes checkpoints and metrics and shows progress only where this holds.
    """
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def distributed_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default ``torch.distributed`` group; ``(0, 1)`` when not initialised."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _LossModule(nn.Module):
    """``loss_fn(model, batch)`` as a module's forward, so that DistributedDataParallel sees every loss."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any):
        return self.loss_fn(self.model, batch)


def _mean_across_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average a dict of floats over the ranks (every rank must pass the same keys)."""
    if not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    t /= torch.distributed.get_world_size()
    return dict(zip(keys, t.tolist(), strict=True))


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor (in dicts, lists, tuples) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class ShardedSampler:
    """The data order: a fresh seeded permutation of ``range(n)`` each epoch (``range(n)`` itself when
    ``ordered``), cut into batches.

    With ``world_size > 1`` every rank draws the same permutation (same seed) and takes its
    shard ``perm[rank::world_size]``, as :class:`torch.utils.data.DistributedSampler` does; with
    one process it is the whole permutation.

    Args:
        n: number of examples.
        batch_size: examples per step per rank (capped at the shard's size).
        seed: seeds the data-order generator.
        rank, world_size: this process's shard.
        ordered: take the examples in index order (a curriculum's source), not permuted.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1,
                 ordered: bool = False) -> None:
        if n < 1:
            raise ValueError("fit: the training set is empty")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.n, self.rank, self.world_size = n, rank, world_size
        shard = len(range(rank, n, world_size))
        if shard < 1:
            raise ValueError(f"the training set ({n} examples) has no example for rank {rank} of {world_size}")
        self.batch_size = min(batch_size, shard)
        self.steps_per_epoch = math.ceil(shard / self.batch_size)
        self.generator = torch.Generator().manual_seed(seed)
        self.ordered = ordered
        self.perm: torch.Tensor | None = None

    def indices(self, step: int) -> torch.Tensor:
        """The example indices of optimizer step ``step`` (0-based)."""
        pos = step % self.steps_per_epoch
        if pos == 0 or self.perm is None:
            self.perm = torch.arange(self.n) if self.ordered else torch.randperm(self.n, generator=self.generator)
        shard = self.perm[self.rank :: self.world_size]
        return shard[pos * self.batch_size : (pos + 1) * self.batch_size]

    def state(self) -> dict[str, torch.Tensor]:
        out = {"data.generator": self.generator.get_state()}
        if self.perm is not None:
            out["data.perm"] = self.perm
        return out

    def load_state(self, tensors: dict[str, torch.Tensor], path: str) -> None:
        """Restore from checkpoint tensors; a damaged order is a :class:`CheckpointError`."""
        try:
            self.generator.set_state(tensors["data.generator"])
        except (KeyError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"checkpoint {path!r}: unusable data-order generator state ({e})") from None
        perm = tensors.get("data.perm")
        if self.ordered:  # index order whatever was saved
            perm = None
        self.perm = None if perm is None else check_permutation(perm, self.n, path=path)


# -- state and result --------------------------------------------------------------------------


@dataclass
class TrainState:
    """Everything about a run in progress that is neither the model nor the optimizer."""

    step: int = 0
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped: bool = False
    acc_loss: float = 0.0
    acc_n: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_weights: dict[str, torch.Tensor] | None = None
    resumed_from: int | None = None
    last_eval: dict[str, float] = field(default_factory=dict)


@dataclass
class FitResult:
    """What :func:`fit` did."""

    steps: int
    best_metric: float | None
    best_step: int | None
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None
    seconds: float = 0.0


def _better(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value > best if mode == "max" else value < best


class Trainer:
    """The parts of :func:`fit` (see its arguments); ``run()`` trains and returns a :class:`FitResult`."""

    def __init__(
        self,
        model: nn.Module,
        data: BatchSource,
        loss_fn: LossFn,
        *,
        config: TrainConfig,
        seed: int,
        evaluate: EvalFn | None = None,
        checkpoint: str | Path | None = None,
        metrics: MetricsLog | None = None,
        variant: str = "main",
        config_hash: str = "",
        progress: bool = True,
        desc: str | None = None,
        device: str | torch.device | None = "cpu",
        main_process: bool | None = None,
        rank: int = 0,
        world_size: int = 1,
        distributed: bool | None = None,
    ) -> None:
        self.t0 = time.perf_counter()
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("fit: the model has no trainable parameters")
        self.data, self.loss_fn, self.config, self.evaluate_fn = data, loss_fn, config, evaluate
        d_rank, d_world = distributed_world()
        self.distributed = d_world > 1 if distributed is None else bool(distributed)
        if self.distributed and d_world == 1:
            raise ValueError("distributed=True needs an initialised torch.distributed group of more than one process")
        batch_size = config.batch_size
        if self.distributed:  # data parallel: each rank takes batch_size / N of the same global batch
            rank, world_size = d_rank, d_world
            if batch_size % world_size:
                raise ValueError(f"train.batch_size ({batch_size}) must be divisible by the number of processes "
                                 f"({world_size}) for data-parallel training")
            batch_size //= world_size
            ids = None
            if self.device.type == "cuda":  # this rank's GPU (the CLI pins LOCAL_RANK's with set_device)
                ids = [torch.cuda.current_device() if self.device.index is None else self.device.index]
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                _LossModule(self.model, loss_fn), device_ids=ids, find_unused_parameters=True,
            )  # broadcasts rank 0's parameters; averages gradients in backward
        self.sampler = ShardedSampler(len(data), batch_size, seed=seed, rank=rank, world_size=world_size,
                                      ordered=bool(getattr(data, "ordered", False)))
        self.opt = torch.optim.AdamW(
            self.params, lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay
        )
        self.main = is_main_process() if main_process is None else main_process
        self.ckpt_path = Path(checkpoint) if checkpoint is not None and self.main else None
        self.resume_path = Path(checkpoint) if checkpoint is not None else None  # every rank reads it
        self.metrics = metrics if self.main else None
        self.variant, self.config_hash = variant, config_hash
        self.progress, self.desc = progress and self.main, desc or variant
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
        self.autocast = (
            (lambda: torch.autocast(self.device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
        )
        self.scaler = torch.amp.GradScaler("cuda") if config.amp == "fp16" and self.device.type == "cuda" else None
        self.state = TrainState()

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    # -- checkpoint --------------------------------------------------------------------------
    def save(self, finished: bool) -> None:
        """Write the checkpoint (main process only; a no-op without a checkpoint path)."""
        if self.ckpt_path is None:
            return
        s = self.state
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        optim_tensors, optim_meta = flatten_optimizer_state(self.opt)
        tensors.update(optim_tensors)
        rng_tensors, rng_meta = capture_rng_state()
        tensors.update(rng_tensors)
        tensors.update(self.sampler.state())
        if s.best_weights is not None:
            tensors.update({f"best.{k}": v for k, v in s.best_weights.items()})
        meta = {
            "variant": self.variant, "step": s.step, "epoch": s.step / self.steps_per_epoch,
            "max_steps": self.config.max_steps, "config_hash": self.config_hash, "finished": finished,
            "best_metric": s.best, "best_step": s.best_step, "bad_evals": s.bad_evals, "stopped_early": s.stopped,
            "acc_loss": s.acc_loss, "acc_n": s.acc_n, "history": s.history, "monitor": self.config.monitor,
            "optim": optim_meta, "rng": rng_meta, "seconds": time.perf_counter() - self.t0,
        }
        if self.scaler is not None:
            meta["grad_scaler"] = {k: v for k, v in self.scaler.state_dict().items() if isinstance(v, int | float)}
        save_checkpoint(self.ckpt_path, tensors, meta)

    def restore(self, path: Path) -> bool:
        """Continue from the checkpoint ``path``; True if it is of a finished run (weights restored only).

        Raises:
            CheckpointError: unreadable, damaged, another variant's or another config's.
        """
        tensors, meta = load_checkpoint(path, config_hash=self.config_hash)
        where = str(path)
        if meta.get("variant") != self.variant:
            raise CheckpointError(
                f"checkpoint {where!r} belongs to variant {meta.get('variant')!r}, not {self.variant!r}"
            )
        load_model_weights(self.model, tensors, "model.", where)
        s = self.state
        try:
            s.step = int(meta["step"])
            if not 0 <= s.step <= self.config.max_steps:
                raise ValueError(f"step {s.step} outside [0, {self.config.max_steps}]")
            s.resumed_from = s.step
            s.history = list(meta["history"])
            s.best, s.best_step = meta["best_metric"], meta["best_step"]
            s.stopped = bool(meta["stopped_early"])
            if meta["finished"]:
                return True
            self.opt.load_state_dict(unflatten_optimizer_state(tensors, meta["optim"]))
            restore_rng_state(tensors, meta["rng"])
            s.bad_evals = int(meta["bad_evals"])
            s.acc_loss, s.acc_n = float(meta["acc_loss"]), int(meta["acc_n"])
            if self.scaler is not None and "grad_scaler" in meta:
                self.scaler.load_state_dict(meta["grad_scaler"])
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
            raise CheckpointError(
                f"checkpoint {where!r} has unusable training state: {type(e).__name__}: {e}"
            ) from None
        self.sampler.load_state(tensors, where)
        best = {k[len("best.") :]: v for k, v in tensors.items() if k.startswith("best.")}
        if best:
            expected = self.model.state_dict()
            if set(best) != set(expected) or any(best[k].shape != expected[k].shape for k in best):
                raise CheckpointError(f"checkpoint {where!r}: its best.* weights do not match the model")
        s.best_weights = best or None
        return False

    # -- step --------------------------------------------------------------------------------
    def step(self) -> tuple[float, dict[str, float], float, float]:
        """One optimizer step; returns ``(loss, extra stats, gradient norm, learning rate)``.

        Raises:
            FloatingPointError: the loss is NaN or infinite.
        """
        s, config = self.state, self.config
        batch = to_device(self.data.batch(self.sampler.indices(s.step)), self.device)
        lr = lr_at(s.step, config)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.model.train()
        with self.autocast():
            out = self.ddp(batch) if self.distributed else self.loss_fn(self.model, batch)
        loss, extra = (out if isinstance(out, tuple) else (out, {}))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {s.step} (variant {self.variant!r}); "
                f"try a smaller train.lr (now {config.lr}) or train.grad_clip"
            )
        self.opt.zero_grad(set_to_none=True)
        clip = config.grad_clip if config.grad_clip > 0 else float("inf")
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
            self.opt.step()
        s.step += 1
        if self.distributed:  # the global batch's loss and statistics: the mean over the ranks' equal shares
            stats = _mean_across_ranks({"loss": float(loss.detach()), **extra}, self.device)
            loss_value = stats.pop("loss")
            return loss_value, stats, grad_norm, lr
        return float(loss.detach()), extra, grad_norm, lr

    # -- evaluate ----------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Evaluate, record, and update early stopping and the best weights.

        Raises:
            ValueError: ``config.monitor`` is missing from the metrics when early stopping or
                ``keep_best`` need it.
        """
        s, config = self.state, self.config
        assert self.evaluate_fn is not None
        self.model.eval()
        with torch.no_grad():
            s.last_eval = {k: float(v) for k, v in self.evaluate_fn(self.model).items()}
        if self.distributed:  # every rank takes the same early-stopping decisions
            s.last_eval = _mean_across_ranks(s.last_eval, self.device)
        record = {"variant": self.variant, "split": "eval", "step": s.step, **s.last_eval}
        s.history.append(record)
        if self.metrics is not None:
            self.metrics.append(record)
        if config.monitor in s.last_eval:
            value = s.last_eval[config.monitor]
            if _better(value, s.best, config.monitor_mode):
                s.best, s.best_step, s.bad_evals = value, s.step, 0
                if config.keep_best:
                    s.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                s.bad_evals += 1
                if config.patience and s.bad_evals >= config.patience:
                    s.stopped = True
        elif config.patience > 0 or config.keep_best:
            raise ValueError(
                f"train.monitor={config.monitor!r} is not among the evaluation metrics "
                f"{sorted(s.last_eval)}; set --set train.monitor=<one of them>"
            )
        return s.last_eval

    # -- the loop ----------------------------------------------------------------------------
    def _log_train(self, loss_mean: float, lr: float, grad_norm: float, extra: dict[str, float], bar: Any) -> None:
        s = self.state
        if self.metrics is not None:
            self.metrics.append({
                "variant": self.variant, "split": "train", "step": s.step, "epoch": s.step / self.steps_per_epoch,
                "loss": loss_mean, "lr": lr, "grad_norm": grad_norm, **extra,
            })
        shown = {f"val_{k}": f"{v:.4g}" for k, v in s.last_eval.items()}
        bar.set_postfix({"loss": f"{loss_mean:.4f}", **shown})

    def run(self, *, resume: bool = False) -> FitResult:
        s, config = self.state, self.config
        if self.distributed and resume and self.resume_path is not None:
            torch.distributed.barrier()  # no rank looks for the checkpoint before every rank has started
        if resume and self.resume_path is not None and self.resume_path.exists():
            finished = self.restore(self.resume_path)
            if finished:
                if self.metrics is not None:
                    self.metrics.truncate_after(s.step, variant=self.variant)
                return FitResult(s.step, s.best, s.best_step, s.stopped, s.history, s.step, 0.0)
        if self.metrics is not None and resume:
            self.metrics.truncate_after(s.step if s.resumed_from is not None else -1, variant=self.variant)
        bar = make_progress(config.max_steps, initial=s.step, desc=self.desc, enabled=self.progress)
        try:
            while s.step < config.max_steps and not s.stopped:
                loss, extra, grad_norm, lr = self.step()
                s.acc_loss += loss
                s.acc_n += 1
                if s.step % config.log_every == 0 or s.step == config.max_steps:
                    self._log_train(s.acc_loss / s.acc_n, lr, grad_norm, extra, bar)
                    s.acc_loss, s.acc_n = 0.0, 0
                if self.evaluate_fn is not None and (s.step % config.eval_every == 0 or s.step == config.max_steps):
                    self.evaluate()
                if s.step % config.checkpoint_every == 0 and s.step < config.max_steps and not s.stopped:
                    self.save(finished=False)
                bar.update(1)
        finally:
            bar.close()
        if config.keep_best and s.best_weights is not None:
            self.model.load_state_dict(s.best_weights)
        self.save(finished=True)
        return FitResult(s.step, s.best, s.best_step, s.stopped, s.history, s.resumed_from,
                         time.perf_counter() - self.t0)


def fit(
    model: nn.Module,
    data: BatchSource,
    loss_fn: LossFn,
    *,
    config: TrainConfig,
    seed: int,
    evaluate: EvalFn | None = None,
    checkpoint: str | Path | None = None,
    metrics: MetricsLog | None = None,
    variant: str = "main",
    config_hash: str = "",
    resume: bool = False,
    progress: bool = True,
    desc: str | None = None,
    device: str | torch.device | None = "cpu",
    main_process: bool | None = None,
    rank: int = 0,
    world_size: int = 1,
    distributed: bool | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` with AdamW, evaluating, checkpointing and (optionally) resuming.

    Args:
        model: the module to train (moved to ``device``; parameters updated in place; at the end it
            holds the best weights when ``config.keep_best`` and an evaluation happened, else the
            last ones).
        data: the training set; each epoch visits it in a fresh order drawn from a generator
            seeded with ``seed`` (:class:`ShardedSampler`).
        loss_fn: ``loss_fn(model, batch)`` returning a scalar loss, or ``(loss, extra_stats)``;
            the batch's tensors are on ``device``.
        config: the :class:`TrainConfig`.
        seed: seeds the data-order generator.
        evaluate: ``evaluate(model) -> {metric: value}``, called under ``torch.no_grad()`` in
            eval mode every ``config.eval_every`` steps and at the end.
        checkpoint: path of this model's checkpoint file; ``None`` disables checkpoints.
        metrics: where to append training / evaluation records.
        variant: name recorded in every metrics record and checkpoint.
        config_hash: written into checkpoints and required to match on resume.
        resume: continue from ``checkpoint`` when it exists (a finished checkpoint just
            restores the final weights and returns).
        progress: show progress on stderr (a bar on a terminal, a few lines otherwise).
        desc: the progress label (default ``variant``).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (:func:`resolve_device`).
        main_process: whether this process writes checkpoints, metrics and progress (default:
            :func:`is_main_process`, i.e. rank 0 under ``torch.distributed``).
        rank, world_size: this process's shard of the data (:class:`ShardedSampler`).
        distributed: data-parallel training over the default ``torch.distributed`` group (``None``:
            whenever it is initialised with more than one process): DistributedDataParallel, each rank
            ``config.batch_size / N`` examples of the global batch, metrics averaged across ranks,
            rank and world size taken from the group.

    Raises:
        qkv.train.CheckpointError: the checkpoint to resume from is unreadable, damaged or for
            another config or variant.
        ValueError: ``evaluate`` does not report ``config.monitor`` when early stopping or
            ``keep_best`` need it; a bad ``device``.
        FloatingPointError: the loss became NaN or infinite.
    """
    trainer = Trainer(
        model, data, loss_fn, config=config, seed=seed, evaluate=evaluate, checkpoint=checkpoint, metrics=metrics,
        variant=variant, config_hash=config_hash, progress=progress, desc=desc, device=device,
        main_process=main_process, rank=rank, world_size=world_size, distributed=distributed,
    )
    return trainer.run(resume=resume)
