"""``memn2n-babi``: end-to-end memory networks on the bAbI tasks (Sukhbaatar et al. 2015, Table 1, 1k set).

Model (:class:`qkv.memory.MemN2N`): 3 hops, adjacent weight tying, position encoding (PE), temporal
encoding with random noise (RN) and linear start (LS): the paper's "PE LS RN" row. Every hop's read is
one call of :func:`qkv.attend`.

Training as in §4.2: SGD, learning rate 0.01 halved every 25 epochs, 100 epochs (jointly: d = 50, 60
epochs, halved every 15), batches of 32 questions, the summed cross-entropy, gradients clipped to norm 40,
N(0, 0.1) initialisation. LS: the hops start without softmax at learning rate 0.005; when the validation
loss stops falling (no new low for ``train.ls_patience`` epochs, or after ``train.ls_max_epochs``) the
softmax is reinserted and the schedule above runs, starting at ``train.lr_after_ls`` = 0.005 ("in the LS
experiments the initial learning rate is set to 0.005"; the authors' MATLAB code uses 0.005 for both
phases and always 20 LS epochs). The patience matters: the validation split holds ~100 questions per task,
and ending LS at the first epoch whose validation loss did not fall ended it after 2-5 epochs on tasks 2, 3
and 6, and task 6 (yes/no) then stayed at chance. The paper repeats every training 10 times and keeps the
run with the lowest training error (``train.restarts``).

Data (:mod:`qkv.tasks.babi`): 10% of each task's training stories are held out for validation; the test
split is evaluated when the ``*_test.txt`` files are present, otherwise the held-out validation split is the
one reported (the metrics say which). ``data=generated`` (and ``auto`` when no bAbI copy is here) uses the
built-in generator (:mod:`qkv.tasks.babi_synthetic`, tasks 1, 2 and 6); those metrics carry a ``gen_``
prefix, so they are never compared with the paper's targets. Metrics of joint training carry ``joint_``.

Shape legend: ``N`` questions, ``B`` batch, ``S`` memory slots, ``J`` words per statement, ``K`` hops.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from qkv.experiments.base import DataUnavailable, Experiment, ExperimentResult, Figure, RunContext, Table, Target
from qkv.experiments.config import ConfigError
from qkv.experiments.registry import register
from qkv.memory.memn2n import MemN2N, temporal_noise
from qkv.tasks import babi
from qkv.tasks.babi_synthetic import GENERATED_TASKS, write_task
from qkv.train.loop import TrainConfig, Trainer, to_device
from qkv.viz.mpl import pyplot

__all__ = ["BabiModelConfig", "LinearStartModel", "MemN2NBabi", "MemN2NBabiConfig", "PaperTrainConfig", "PaperTrainer"]

#: Sukhbaatar et al. 2015, Table 1 (1k training questions per task), PE LS RN: test error (%) per task.
PAPER_PE_LS_RN = {1: 0.0, 2: 11.4, 3: 21.9, 4: 13.4, 5: 14.4, 6: 2.8, 7: 18.3, 8: 9.3, 9: 1.9, 10: 6.5,
                  11: 0.3, 12: 0.1, 13: 0.2, 14: 6.9, 15: 0.0, 16: 2.7, 17: 40.4, 18: 9.4, 19: 88.0, 20: 0.0}
FAILED = 0.05  # a task "fails" when its error exceeds 5% (Weston et al. 2015)


@dataclass(frozen=True)
class BabiModelConfig:
    """The MemN2N: widths, hops, encoding, tying, memory size and RN's fraction of empty memories.

    ``position_scale`` = 2: the PE weights of the authors' MATLAB code are about twice the paper's formula
    (:mod:`qkv.memory.memn2n`). On the real bAbI task 6 (yes/no) linear start began to learn within its 20
    epochs in 1 of 5 seeds at 1 and in 3 of 3 at 2; the seeds where it did not stayed at chance (49-50%).

    ``empty_memories``: the memory's empty slots are attended as zero vectors, as in the authors' code
    (:class:`qkv.memory.MemN2N`), with as many slots as the longest story of the training split, at most
    ``memory_size`` (their ``config.sz = min(50, longest story)``, taken over the whole training file; where the
    longest story is held out, as it can be for tasks 6 and 8, ours is smaller). Adopted to match that code, not
    tuned: it took one run's validation error on tasks 6, 9 and 10 from 20 / 25 / 28 % to 7 / 11 / 15 % (2 and 3
    unchanged, 34-36 %; the mean over 20 tasks from 18.4 to 16.1 %).
    """

    embed_dim: int = 20
    joint_embed_dim: int = 50
    hops: int = 3
    encoding: Literal["position", "bow"] = "position"
    temporal: bool = True
    tying: Literal["adjacent", "layerwise"] = "adjacent"
    memory_size: int = 50
    time_noise: float = 0.1
    position_scale: float = 2.0
    empty_memories: bool = True

    def __post_init__(self) -> None:
        for name in ("embed_dim", "joint_embed_dim", "hops", "memory_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.time_noise <= 1:
            raise ValueError(f"model.time_noise must be in [0, 1], got {self.time_noise}")
        if not self.position_scale > 0:
            raise ValueError(f"model.position_scale must be > 0, got {self.position_scale}")


@dataclass(frozen=True)
class PaperTrainConfig:
    """The paper's SGD schedule (§4.2); ``joint_*`` apply when ``mode=joint``.

    ``lr`` starts the schedule without linear start; with it, LS runs at ``ls_lr`` and the softmax schedule
    starts at ``lr_after_ls`` ("in the LS experiments the initial learning rate is set to 0.005", §4.2; the
    authors' code, MemN2N-babi-matlab ``config_babi.m``, uses 0.005 for both phases). LS ends after
    ``ls_max_epochs`` epochs, or earlier when the validation loss has not reached a new low for ``ls_patience``
    epochs in a row (the authors' code always runs 20 LS epochs).
    """

    batch_size: int = 32
    lr: float = 0.01
    decay: float = 0.5
    decay_every: int = 25
    epochs: int = 100
    joint_epochs: int = 60
    joint_decay_every: int = 15
    grad_clip: float = 40.0
    linear_start: bool = True
    ls_lr: float = 0.005
    lr_after_ls: float = 0.005
    ls_max_epochs: int = 20
    ls_patience: int = 10
    restarts: int = 1
    checkpoint_every_epochs: int = 10

    def __post_init__(self) -> None:
        for name in ("batch_size", "decay_every", "epochs", "joint_epochs", "joint_decay_every", "restarts",
                     "checkpoint_every_epochs", "ls_patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.ls_max_epochs < 1 and self.linear_start:
            raise ValueError(f"train.ls_max_epochs must be >= 1 with linear start, got {self.ls_max_epochs}")
        if not (self.lr > 0 and self.ls_lr > 0 and self.lr_after_ls > 0 and 0 < self.decay <= 1
                and self.grad_clip >= 0):
            raise ValueError(f"need train.lr > 0, train.ls_lr > 0, train.lr_after_ls > 0, 0 < train.decay <= 1, "
                             f"train.grad_clip >= 0, got {self.lr}, {self.ls_lr}, {self.lr_after_ls}, {self.decay}, "
                             f"{self.grad_clip}")


@dataclass(frozen=True)
class MemN2NBabiConfig:
    """The run.

    Attributes:
        tasks: bAbI task numbers (1-20).
        data: ``"babi"`` (the real tasks; DataUnavailable if absent), ``"generated"`` (tasks 1, 2, 6 from the
            built-in generator) or ``"auto"`` (real when found here, else the generated ones).
        data_dir: where the bAbI files are (``--data-dir``); empty: ``$QKV_DATA_DIR``, then the cache.
        download: fetch the archive into the cache when it is not found (not with ``--offline``).
        mode: ``"independent"`` (a model per task) or ``"joint"`` (one model for all tasks).
        validation_fraction: of each task's training stories, held out.
        generated_train_stories, generated_test_stories: stories per generated task (5 questions each).
        figure_questions: questions drawn per task in the attention figure (of the first three tasks).
    """

    tasks: tuple[int, ...] = tuple(range(1, 21))
    data: Literal["auto", "babi", "generated"] = "auto"
    data_dir: str = ""
    download: bool = False
    mode: Literal["independent", "joint"] = "independent"
    validation_fraction: float = 0.1
    generated_train_stories: int = 200
    generated_test_stories: int = 200
    figure_questions: int = 2
    model: BabiModelConfig = field(default_factory=BabiModelConfig)
    train: PaperTrainConfig = field(default_factory=PaperTrainConfig)

    def __post_init__(self) -> None:
        bad = any(t not in babi.TASK_NAMES for t in self.tasks) or len(set(self.tasks)) != len(self.tasks)
        if not self.tasks or bad:
            raise ValueError(f"tasks must be distinct bAbI task numbers 1-20, got {self.tasks}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.generated_train_stories < 2 or self.generated_test_stories < 0:
            raise ValueError("generated_train_stories must be >= 2 and generated_test_stories >= 0, got "
                             f"{self.generated_train_stories}, {self.generated_test_stories}")


# -- training: the paper's SGD schedule and linear start on the shared Trainer ------------------------------


class LinearStartModel(nn.Module):
    """The network plus the linear-start state, kept as buffers so that checkpoints carry it.

    ``linear``: the softmax is still removed; ``best``: the lowest validation loss during LS; ``stale``: the
    epochs since it last fell; ``start``: the epoch where the softmax schedule began (-1 during LS).
    """

    def __init__(self, net: MemN2N, *, linear_start: bool) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("linear", torch.tensor(linear_start))
        # the largest finite float stands for "none yet" (checkpoints refuse infinities)
        self.register_buffer("best", torch.tensor(torch.finfo(torch.float64).max, dtype=torch.float64))
        self.register_buffer("start", torch.tensor(-1 if linear_start else 0))
        self.register_buffer("stale", torch.tensor(0))


class PaperTrainer(Trainer):
    """:class:`qkv.train.Trainer` with plain SGD, the paper's epoch schedule and linear start.

    Evaluation runs after every epoch (on the validation split); it ends LS when the validation loss has not
    reached a new low for ``ls_patience`` epochs in a row (or after ``ls_max_epochs``) and stops training
    ``epochs`` epochs after that. The patience matters: the validation split is ~100 questions per task, and
    with ``ls_patience=1`` one noisy epoch ended LS after 2-5 epochs on tasks 2, 3 and 6 of the real bAbI 1k.
    """

    def __init__(self, *args: Any, paper: PaperTrainConfig, epochs: int, decay_every: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opt = torch.optim.SGD(self.params, lr=paper.lr)
        self.paper, self.epochs, self.decay_every = paper, epochs, decay_every

    def lr(self) -> float:
        sched: LinearStartModel = self.model  # type: ignore[assignment]
        if bool(sched.linear):
            return self.paper.ls_lr
        epoch = self.state.step // self.steps_per_epoch - int(sched.start)
        base = self.paper.lr_after_ls if self.paper.linear_start else self.paper.lr
        return base * self.paper.decay ** (epoch // self.decay_every)

    def step(self) -> tuple[float, dict[str, float], float, float]:
        s = self.state
        batch = to_device(self.data.batch(self.sampler.indices(s.step)), self.device)
        lr = self.lr()
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.model.train()
        loss = self.loss_fn(self.model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss.item()} at step {s.step} (variant {self.variant!r}); "
                                     f"try a smaller train.lr (now {lr})")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.paper.grad_clip if self.paper.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
        self.opt.step()
        s.step += 1
        return float(loss.detach()) / len(batch["answer"]), {}, grad_norm, lr

    def evaluate(self) -> dict[str, float]:
        metrics = super().evaluate()
        sched: LinearStartModel = self.model  # type: ignore[assignment]
        epoch = self.state.step // self.steps_per_epoch
        if bool(sched.linear):
            if metrics["loss"] < float(sched.best):
                sched.best.fill_(metrics["loss"])
                sched.stale.fill_(0)
            else:
                sched.stale.add_(1)
            if int(sched.stale) >= self.paper.ls_patience or epoch >= self.paper.ls_max_epochs:
                sched.linear.fill_(False)  # the validation loss stopped falling: reinsert the softmax
                sched.start.fill_(epoch)
        elif epoch - int(sched.start) >= self.epochs:
            self.state.stopped = True
        return metrics


def _loss(noise: float):
    def loss(model: LinearStartModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["memory_mask"]
        t = temporal_noise(mask, fraction=noise, size=model.net.memory_size) if noise > 0 else None
        out = model.net(batch["story"], batch["query"], memory_mask=mask, time=t, linear=bool(model.linear))
        return F.cross_entropy(out.logits, batch["answer"], reduction="sum")  # summed over the batch, as §4.2
    return loss


class _Questions:
    """A :class:`~qkv.train.loop.BatchSource` over :class:`~qkv.tasks.babi.BabiTensors`."""

    def __init__(self, data: babi.BabiTensors) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        d = self.data
        return {"story": d.story[indices], "query": d.query[indices], "answer": d.answer[indices],
                "memory_mask": d.memory_mask[indices]}


@torch.no_grad()
def _predict(model: LinearStartModel, data: babi.BabiTensors, *,
             batch: int = 512) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(predicted answers (N,), hop weights (N, K, S), mean loss)`` without noise, in the model's LS state."""
    preds, weights, loss = [], [], 0.0
    was = model.training
    model.eval()
    for i in range(0, len(data), batch):
        sl = slice(i, i + batch)
        out = model.net(data.story[sl], data.query[sl], memory_mask=data.memory_mask[sl], linear=bool(model.linear))
        preds.append(out.logits.argmax(-1))
        weights.append(out.weights)
        loss += float(F.cross_entropy(out.logits, data.answer[sl], reduction="sum"))
    model.train(was)
    return torch.cat(preds), torch.cat(weights), loss / len(data)


def _support_hit(weights: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """``(N,)`` True where, at some hop, the most attended slot is a supporting fact."""
    top = weights.argmax(-1)  # (N, K)
    return support.gather(1, top).any(-1)


# -- the experiment ------------------------------------------------------------------------------------------


@dataclass
class _TaskData:
    task: int
    train: babi.BabiTensors
    val: babi.BabiTensors
    test: babi.BabiTensors | None


@register
class MemN2NBabi(Experiment):
    name = "memn2n-babi"
    description = "End-to-end memory network (PE LS RN, 3 hops) on the bAbI tasks: per-task error, failed tasks"
    Config = MemN2NBabiConfig
    targets = (
        Target("mean_error", "<=", 0.139, "Sukhbaatar et al. 2015, 1k, PE LS RN trained per task: mean error 13.9%"),
        Target("failed_tasks", "<=", 11, "... and 11 failed tasks (error > 5%)"),
        Target("joint_mean_error", "<=", 0.124, "the same trained jointly (mode=joint): mean error 12.4%"),
    )
    quick_overrides: ClassVar[dict[str, Any]] = {
        "tasks": (1,), "data": "generated", "generated_train_stories": 200, "generated_test_stories": 100,
        "train.epochs": 20, "train.decay_every": 8, "train.ls_max_epochs": 6, "train.lr_after_ls": 0.01,
    }
    quick_targets = (
        Target("gen_error_qa1", "<=", 0.05, "generated task 1 (single supporting fact): test error"),
        Target("gen_support_qa1", ">=", 0.9, "generated task 1: questions whose most attended statement (some hop) "
                                             "is the supporting fact"),
    )

    def check(self, config: MemN2NBabiConfig, *, offline: bool = False) -> None:
        if config.data_dir:
            try:
                babi.check_data_dir(config.data_dir)
            except (FileNotFoundError, babi.BabiFormatError) as e:
                raise ConfigError(f"--data-dir: {e}") from None
        if config.data == "generated" and set(config.tasks) - set(GENERATED_TASKS):
            raise ConfigError(f"data=generated has tasks {GENERATED_TASKS} only, got tasks={config.tasks}")

    def _source(self, config: MemN2NBabiConfig, ctx: RunContext) -> tuple[Path, tuple[int, ...], bool, list[str]]:
        """``(folder, tasks, generated, notes)``."""
        notes: list[str] = []
        if config.data != "generated":
            try:
                found = babi.find_babi_dir(config.data_dir or None)
            except FileNotFoundError as e:
                raise DataUnavailable(f"{e}.\n{babi.missing_data_message(config.data_dir or None)}") from None
            if found is None and config.download and not ctx.offline:
                try:
                    found = babi.download(timeout=10.0)
                except (OSError, ValueError) as e:
                    raise DataUnavailable(f"downloading {babi.URL} failed: {e}\n"
                                          f"{babi.missing_data_message(config.data_dir or None)}") from None
            if found is not None:
                missing = [t for t in config.tasks if babi.task_files(found, t)[0] is None]
                if missing:
                    raise DataUnavailable(f"{found} lacks the training files of tasks {missing}")
                return found, config.tasks, False, notes
            if config.data == "babi":
                raise DataUnavailable(babi.missing_data_message(config.data_dir or None))
            notes.append("no copy of bAbI found here (see --data-dir, --set download=true): ran the generated "
                         "tasks instead; their metrics carry the prefix gen_ and are not the paper's numbers")
        tasks = tuple(t for t in config.tasks if t in GENERATED_TASKS)
        if not tasks:
            raise DataUnavailable(f"none of tasks {config.tasks} is generated ({GENERATED_TASKS}), and no bAbI copy "
                                  f"is here.\n{babi.missing_data_message(config.data_dir or None)}")
        folder = ctx.path("data/generated")
        folder.mkdir(parents=True, exist_ok=True)
        for t in tasks:
            write_task(folder, t, train_stories=config.generated_train_stories,
                       test_stories=config.generated_test_stories, seed=ctx.seed)
        return folder, tasks, True, notes

    def run(self, config: MemN2NBabiConfig, ctx: RunContext) -> ExperimentResult:
        folder, tasks, generated, notes = self._source(config, ctx)
        stories = {}
        for t in tasks:
            train, test = babi.load_task(folder, t)
            tr, va = babi.split_stories(train, config.validation_fraction,
                                        generator=torch.Generator().manual_seed(ctx.seed * 100 + t))
            stories[t] = (tr, va, test)
        has_test = all(test is not None for _, _, test in stories.values())
        split = "test" if has_test else "validation"
        if not has_test:
            notes.append("no *_test.txt files: errors are on the 10% held-out validation stories")
        joint = config.mode == "joint"
        prefix = ("gen_" if generated else "") + ("joint_" if joint else "")
        groups = [tuple(tasks)] if joint else [(t,) for t in tasks]
        rows, metrics, shown = [], {}, []
        t0 = time.perf_counter()
        for group in groups:
            data, vocab = self._tensors(config, stories, group)
            model, restart_table, fit_s = self._train(config, ctx, group, data, vocab)
            for td in data:
                ev = td.test if has_test else td.val
                assert ev is not None
                pred, weights, _ = _predict(model, ev)
                wrong = (pred != ev.answer).float()
                err = float(wrong.mean())
                hit = float(_support_hit(weights, ev.support).float().mean())
                train_err = float((_predict(model, td.train)[0] != td.train.answer).float().mean())
                val_err = float((_predict(model, td.val)[0] != td.val.answer).float().mean())
                metrics[f"{prefix}error_qa{td.task}"] = err
                metrics[f"{prefix}support_qa{td.task}"] = hit
                paper = PAPER_PE_LS_RN[td.task] / 100
                rows.append([f"qa{td.task} {babi.TASK_NAMES[td.task]}", len(td.train), len(ev), train_err, val_err,
                             err, paper if not generated else "-", hit, restart_table, round(fit_s, 1)])
                if td.task in tasks[:3]:
                    shown.extend(self._figure_items(model, ev, vocab, td.task, config.figure_questions, pred, weights))
        errors = [metrics[f"{prefix}error_qa{t}"] for t in tasks]
        scope = "" if len(tasks) == 20 else "subset_"  # the paper's targets are means over all 20 tasks
        metrics[f"{prefix}{scope}mean_error"] = sum(errors) / len(errors)
        metrics[f"{prefix}{scope}failed_tasks"] = float(sum(e > FAILED for e in errors))
        metrics[f"{prefix}support_mean"] = sum(metrics[f"{prefix}support_qa{t}"] for t in tasks) / len(tasks)
        metrics["seconds"] = time.perf_counter() - t0
        ctx.save_json("memn2n_attention.json", {"items": shown, "split": split})
        columns = ["task", "train questions", f"{split} questions", "train error", "validation error",
                   f"{split} error", "paper (test, 1k PE LS RN)", "top attention on a supporting fact",
                   "restarts: train error each (kept *)", "train seconds"]
        if len(tasks) == 20 and not generated:
            notes.append(f"paper: mean error 13.9% with 11 failed tasks (independent), 12.4% (joint); here "
                         f"{metrics[f'{prefix}mean_error']:.1%} with {int(metrics[f'{prefix}failed_tasks'])} failed "
                         f"({split} split)")
        return ExperimentResult(metrics=metrics, notes=notes, tables=[Table(
            f"MemN2N ({config.model.hops} hops, {config.model.encoding}, LS={config.train.linear_start}, "
            f"RN={config.model.time_noise}, {config.mode}) - error on the {split} split", columns, rows)])

    def _tensors(self, config: MemN2NBabiConfig, stories: dict, group: tuple[int, ...]
                 ) -> tuple[list[_TaskData], babi.BabiVocab]:
        vocab = babi.BabiVocab.build(s for t in group for part in stories[t][:2] for s in part)
        out = []
        # the memory holds the longest training story's statements, at most model.memory_size (the authors' code:
        # config.sz = min(50, size(story, 2))); with empty_memories it is also the number of slots attended
        m = min(config.model.memory_size,
                max(q.context for t in group for _, q in babi.questions_of(stories[t][0])))
        for t in group:
            tr, va, te = stories[t]
            out.append(_TaskData(t, babi.encode(babi.questions_of(tr), vocab, memory_size=m),
                                 babi.encode(babi.questions_of(va), vocab, memory_size=m),
                                 babi.encode(babi.questions_of(te), vocab, memory_size=m) if te else None))
        return out, vocab

    def _train(self, config: MemN2NBabiConfig, ctx: RunContext, group: tuple[int, ...], data: list[_TaskData],
               vocab: babi.BabiVocab) -> tuple[LinearStartModel, str, float]:
        """Train ``train.restarts`` models on ``group``; keep the lowest training error (§4.2)."""
        joint = len(group) > 1 or config.mode == "joint"
        train = _concat([d.train for d in data])
        val = _concat([d.val for d in data])
        p = config.train
        epochs, decay_every = (p.joint_epochs, p.joint_decay_every) if joint else (p.epochs, p.decay_every)
        steps_per_epoch = math.ceil(len(train) / p.batch_size)
        max_epochs = epochs + (p.ls_max_epochs if p.linear_start else 0)
        tc = TrainConfig(max_steps=max_epochs * steps_per_epoch, batch_size=p.batch_size, lr=p.lr,
                         grad_clip=p.grad_clip, schedule="constant", warmup_steps=0, log_every=steps_per_epoch,
                         eval_every=steps_per_epoch, checkpoint_every=p.checkpoint_every_epochs * steps_per_epoch,
                         keep_best=False, monitor="loss")
        best: tuple[float, LinearStartModel] | None = None
        errs, seconds = [], 0.0
        name = "joint" if joint else f"qa{group[0]}"
        for r in range(p.restarts):
            variant = f"{name}-r{r}"
            ctx.seed_variant(variant)
            net = MemN2N(len(vocab), embed_dim=config.model.joint_embed_dim if joint else config.model.embed_dim,
                         hops=config.model.hops, memory_size=max(d.train.story.shape[1] for d in data),
                         encoding=config.model.encoding,
                         temporal=config.model.temporal, tying=config.model.tying,
                         position_scale=config.model.position_scale, empty_memories=config.model.empty_memories)
            model = LinearStartModel(net, linear_start=p.linear_start)

            def evaluate(m: nn.Module) -> dict[str, float]:
                pred, _, loss = _predict(m, val)  # type: ignore[arg-type]
                return {"loss": loss, "error": float((pred != val.answer).float().mean())}

            trainer = PaperTrainer(
                model, _Questions(train), _loss(config.model.time_noise), config=tc, seed=ctx.variant_seed(variant),
                evaluate=evaluate, checkpoint=ctx.checkpoint_path(variant), metrics=ctx.metrics, variant=variant,
                config_hash=ctx.config_hash, progress=ctx.progress, desc=variant, device="cpu",
                paper=p, epochs=epochs, decay_every=decay_every)
            fit = trainer.run(resume=ctx.resume)
            seconds += fit.seconds
            err = float((_predict(model, train)[0] != train.answer).float().mean())
            errs.append(err)
            if best is None or err < best[0]:
                best = (err, model)
        assert best is not None
        kept = errs.index(best[0])
        table = " ".join(f"{e:.3f}{'*' if i == kept else ''}" for i, e in enumerate(errs))
        return best[1], table, seconds

    def _figure_items(self, model: LinearStartModel, ev: babi.BabiTensors, vocab: babi.BabiVocab, task: int, count: int,
                      pred: torch.Tensor, weights: torch.Tensor) -> list[dict[str, Any]]:
        items = []
        for i in range(min(len(ev), max(0, count))):
            story, q = ev.items[i]
            first, n = int(ev.offset[i]), int(ev.memory_mask[i].sum())
            items.append({
                "task": task, "sentences": list(story.statements[first: first + n]), "question": q.text,
                "answer": q.answer, "predicted": vocab.itos[int(pred[i])],
                "support": [s - first for s in q.supporting if s >= first],
                "weights": weights[i, :, :n].tolist(),
            })
        return items

    def figures(self, run_dir: Path, config: MemN2NBabiConfig) -> list[Figure]:
        path = run_dir / "memn2n_attention.json"
        if not path.exists():
            return []
        data = json.loads(path.read_text())
        items = data["items"]
        if not items:
            return []
        plt = pyplot()
        ncols = min(3, len(items))
        nrows = math.ceil(len(items) / ncols)
        tallest = max(len(it["sentences"]) for it in items)
        fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 0.6 + 0.24 * tallest * nrows + 0.8 * nrows),
                                 squeeze=False)
        for ax in axes.flat[len(items):]:
            ax.axis("off")
        for ax, it in zip(axes.flat, items, strict=False):
            w = torch.tensor(it["weights"]).t().numpy()  # (S, K)
            ax.imshow(w, cmap="Blues", vmin=0, vmax=max(1e-6, float(w.max())), aspect="auto")
            ax.set_xticks(range(w.shape[1]), [f"hop {k + 1}" for k in range(w.shape[1])], fontsize=7)
            labels = [("* " if s in it["support"] else "") + text for s, text in enumerate(it["sentences"])]
            ax.set_yticks(range(len(labels)), labels, fontsize=6)
            for s in it["support"]:
                ax.get_yticklabels()[s].set_color("red")
            for s in range(w.shape[0]):
                for k in range(w.shape[1]):
                    if w[s, k] >= 0.05:
                        ax.text(k, s, f"{w[s, k]:.2f}", ha="center", va="center", fontsize=5,
                                color="white" if w[s, k] > 0.5 else "black")
            ok = "right" if it["predicted"] == it["answer"] else "wrong"
            ax.set_title(f"qa{it['task']}: {it['question']}\nanswer {it['answer']}, predicted {it['predicted']} "
                         f"({ok})", fontsize=7)
        fig.tight_layout()
        out = run_dir / "figures" / "memn2n_attention.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return [Figure("figures/memn2n_attention.png",
                       f"MemN2N attention over each story's statements (rows, oldest first) at every hop (columns), "
                       f"for {data['split']} questions; red with *: the supporting facts given by the data.")]


def _concat(parts: list[babi.BabiTensors]) -> babi.BabiTensors:
    """One :class:`~qkv.tasks.babi.BabiTensors` of several (padded to the widest memory and sentences)."""
    if len(parts) == 1:
        return parts[0]
    S = max(p.story.shape[1] for p in parts)
    J = max(p.story.shape[2] for p in parts)
    Jq = max(p.query.shape[1] for p in parts)

    def pad(x: torch.Tensor, *sizes: int) -> torch.Tensor:
        out = x.new_zeros(x.shape[0], *sizes)  # (N, *sizes), zeros = padding
        out[(slice(None), *(slice(0, n) for n in x.shape[1:]))] = x
        return out

    return replace(
        parts[0],
        story=torch.cat([pad(p.story, S, J) for p in parts]),  # (N, S, J)
        query=torch.cat([pad(p.query, Jq) for p in parts]),  # (N, Jq)
        answer=torch.cat([p.answer for p in parts]),
        memory_mask=torch.cat([pad(p.memory_mask, S) for p in parts]),  # (N, S)
        support=torch.cat([pad(p.support, S) for p in parts]),
        task=torch.cat([p.task for p in parts]),
        offset=torch.cat([p.offset for p in parts]),
        items=[it for p in parts for it in p.items],
    )
