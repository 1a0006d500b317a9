"""The training loop every qkv experiment shares.

AdamW (Loshchilov & Hutter, 2019) with global-norm gradient clipping, a warm-up + cosine /
linear / constant learning-rate schedule, periodic evaluation, early stopping on a monitored
metric (restoring the best weights), ``metrics.jsonl`` logging, a tqdm progress bar with ETA,
and atomic, resumable safetensors checkpoints.

Exact resumption: a checkpoint captures the model, the optimizer moments, every global RNG
(:mod:`qkv.train.seeding`), the data-order generator and the current epoch's permutation,
the early-stopping state and the partial training-loss average. Resuming from it replays the
remaining steps bit-for-bit on the same machine, so a run killed with SIGKILL and resumed
finishes with the same metrics as an uninterrupted one (tested in ``tests/test_cli.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

from qkv.train.checkpoint import (
    CheckpointError,
    flatten_optimizer_state,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
    unflatten_optimizer_state,
)
from qkv.train.metrics_log import MetricsLog
from qkv.train.seeding import capture_rng_state, restore_rng_state

__all__ = ["BatchSource", "FitResult", "TensorBatches", "TrainConfig", "fit", "lr_at"]


@dataclass(frozen=True)
class TrainConfig:
    """Options of :func:`fit` (an experiment nests one as its ``train`` field: ``--set train.lr=1e-3``).

    Attributes:
        max_steps: optimizer steps to run (fewer if early stopping triggers).
        batch_size: examples per step.
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
    """What :func:`fit` trains on: ``len`` examples, and a batch for a tensor of indices."""

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
) -> FitResult:
    """Train ``model`` on ``data`` with AdamW, evaluating, checkpointing and (optionally) resuming.

    Args:
        model: the module to train (parameters updated in place; at the end it holds the best
            weights when ``config.keep_best`` and an evaluation happened, else the last ones).
        data: the training set; each epoch visits it in a fresh order drawn from a generator
            seeded with ``seed``.
        loss_fn: ``loss_fn(model, batch)`` returning a scalar loss, or ``(loss, extra_stats)``.
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
        progress: show a tqdm progress bar (with ETA) on stderr.
        desc: the progress bar's label (default ``variant``).

    Raises:
        qkv.train.CheckpointError: the checkpoint to resume from is unreadable or for another config.
        ValueError: ``evaluate`` does not report ``config.monitor`` when early stopping or
            ``keep_best`` need it.
        FloatingPointError: the loss became NaN or infinite.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("fit: the model has no trainable parameters")
    n = len(data)
    if n < 1:
        raise ValueError("fit: the training set is empty")
    bsz = min(config.batch_size, n)
    steps_per_epoch = math.ceil(n / bsz)
    opt = torch.optim.AdamW(
        params, lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay
    )
    gen = torch.Generator().manual_seed(seed)
    step = 0
    perm: torch.Tensor | None = None
    best: float | None = None
    best_step: int | None = None
    bad_evals = 0
    stopped = False
    acc_loss, acc_n = 0.0, 0
    history: list[dict[str, Any]] = []
    best_weights: dict[str, torch.Tensor] | None = None
    resumed_from: int | None = None
    ckpt_path = Path(checkpoint) if checkpoint is not None else None

    def save(finished: bool) -> None:
        if ckpt_path is None:
            return
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        optim_tensors, optim_meta = flatten_optimizer_state(opt)
        tensors.update(optim_tensors)
        rng_tensors, rng_meta = capture_rng_state()
        tensors.update(rng_tensors)
        tensors["data.generator"] = gen.get_state()
        if perm is not None:
            tensors["data.perm"] = perm
        if best_weights is not None:
            tensors.update({f"best.{k}": v for k, v in best_weights.items()})
        meta = {
            "variant": variant,
            "step": step,
            "epoch": step / steps_per_epoch,
            "max_steps": config.max_steps,
            "config_hash": config_hash,
            "finished": finished,
            "best_metric": best,
            "best_step": best_step,
            "bad_evals": bad_evals,
            "stopped_early": stopped,
            "acc_loss": acc_loss,
            "acc_n": acc_n,
            "history": history,
            "monitor": config.monitor,
            "optim": optim_meta,
            "rng": rng_meta,
            "seconds": time.perf_counter() - t0,
        }
        save_checkpoint(ckpt_path, tensors, meta)

    if resume and ckpt_path is not None and ckpt_path.exists():
        tensors, meta = load_checkpoint(ckpt_path, config_hash=config_hash)
        if meta.get("variant") != variant:
            raise CheckpointError(
                f"checkpoint {str(ckpt_path)!r} belongs to variant {meta.get('variant')!r}, not {variant!r}"
            )
        load_model_weights(model, tensors, "model.", str(ckpt_path))
        step = int(meta["step"])
        resumed_from = step
        history = list(meta["history"])
        best, best_step = meta["best_metric"], meta["best_step"]
        if meta["finished"]:
            if metrics is not None:
                metrics.truncate_after(step, variant=variant)
            return FitResult(step, best, best_step, bool(meta["stopped_early"]), history, step, 0.0)
        opt.load_state_dict(unflatten_optimizer_state(tensors, meta["optim"]))
        restore_rng_state(tensors, meta["rng"])
        gen.set_state(tensors["data.generator"])
        perm = tensors.get("data.perm")
        bad_evals, stopped = int(meta["bad_evals"]), bool(meta["stopped_early"])
        acc_loss, acc_n = float(meta["acc_loss"]), int(meta["acc_n"])
        best_keys = {k[len("best.") :]: v for k, v in tensors.items() if k.startswith("best.")}
        best_weights = best_keys or None
    if metrics is not None and resume:
        metrics.truncate_after(step if resumed_from is not None else -1, variant=variant)

    bar = tqdm(
        total=config.max_steps, initial=step, desc=desc or variant, disable=not progress,
        unit="step", dynamic_ncols=True, leave=False,
    )
    last_eval: dict[str, float] = {}
    try:
        while step < config.max_steps and not stopped:
            pos = step % steps_per_epoch
            if pos == 0 or perm is None:
                perm = torch.randperm(n, generator=gen)
            batch = data.batch(perm[pos * bsz : (pos + 1) * bsz])
            lr = lr_at(step, config)
            for group in opt.param_groups:
                group["lr"] = lr
            model.train()
            out = loss_fn(model, batch)
            loss, extra = (out if isinstance(out, tuple) else (out, {}))
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss is {loss.item()} at step {step} (variant {variant!r}); "
                    f"try a smaller train.lr (now {config.lr}) or train.grad_clip"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip = config.grad_clip if config.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            opt.step()
            step += 1
            acc_loss += float(loss.detach())
            acc_n += 1
            if step % config.log_every == 0 or step == config.max_steps:
                if metrics is not None:
                    metrics.append({
                        "variant": variant, "split": "train", "step": step, "epoch": step / steps_per_epoch,
                        "loss": acc_loss / acc_n, "lr": lr, "grad_norm": grad_norm, **extra,
                    })
                shown = {f"val_{k}": f"{v:.4g}" for k, v in last_eval.items()}
                bar.set_postfix({"loss": f"{acc_loss / acc_n:.4f}", **shown})
                acc_loss, acc_n = 0.0, 0
            if evaluate is not None and (step % config.eval_every == 0 or step == config.max_steps):
                model.eval()
                with torch.no_grad():
                    last_eval = {k: float(v) for k, v in evaluate(model).items()}
                record = {"variant": variant, "split": "eval", "step": step, **last_eval}
                history.append(record)
                if metrics is not None:
                    metrics.append(record)
                needs_monitor = config.patience > 0 or config.keep_best
                if config.monitor in last_eval:
                    value = last_eval[config.monitor]
                    if _better(value, best, config.monitor_mode):
                        best, best_step, bad_evals = value, step, 0
                        if config.keep_best:
                            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    else:
                        bad_evals += 1
                        if config.patience and bad_evals >= config.patience:
                            stopped = True
                elif needs_monitor:
                    raise ValueError(
                        f"train.monitor={config.monitor!r} is not among the evaluation metrics "
                        f"{sorted(last_eval)}; set --set train.monitor=<one of them>"
                    )
            if step % config.checkpoint_every == 0 and step < config.max_steps and not stopped:
                save(finished=False)
            bar.update(1)
    finally:
        bar.close()
    if config.keep_best and best_weights is not None:
        model.load_state_dict(best_weights)
    save(finished=True)
    return FitResult(step, best, best_step, stopped, history, resumed_from, time.perf_counter() - t0)
