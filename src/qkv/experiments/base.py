"""What an experiment is: a frozen Config + build + train + evaluate + figures, and a declared target.

An experiment subclasses :class:`Experiment`, sets ``name``, ``description``, ``targets`` and
``Config``, and is registered with :func:`qkv.experiments.register`. The runner
(:mod:`qkv.experiments.runner`) calls :meth:`Experiment.run` (build, train with
:meth:`RunContext.fit`, evaluate) and then :meth:`Experiment.figures`, which must draw
only from files ``run`` saved in the run directory so that ``qkv report`` can redraw them.

Adding an experiment is adding a module ``qkv/experiments/<name>.py`` (plus its model and task);
the registry imports it::

    @dataclass(frozen=True)
    class MyConfig:
        model: MyModelConfig = field(default_factory=MyModelConfig)
        train: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=2000, monitor="acc",
                                                                       monitor_mode="max"))

    @register
    class MyExperiment(Experiment):
        name = "my-experiment"
        description = "one line for `qkv list`"
        Config = MyConfig
        targets = (Target("acc", ">=", 0.95, "held-out accuracy"),)
        quick_overrides = {"train.max_steps": 100}          # the quick run: the defaults, except these
        quick_targets = (Target("acc", ">=", 0.8, "held-out accuracy after the quick run"),)

        def run(self, config, ctx):
            for variant in ("a", "b"):
                ctx.seed_variant(variant)                   # each variant's init from (seed, variant)
                model = build(config, variant)
                ctx.fit(variant, model, data, loss_fn, train=config.train, evaluate=lambda m: {"acc": ...})
            ctx.save_json("attention.json", what_the_figures_need)   # atomic, redrawn by `qkv report`
            return ExperimentResult(metrics={"acc": ...}, tables=[Table(...)], notes=[...])

        def figures(self, run_dir, config):
            return attention_figures(run_dir, "caption {n}")   # or any PNG drawn from saved files

The runner adds the learning curves; :mod:`qkv.experiments.seq2seq_common` holds the seq2seq
batching, decoding and attention-heatmap helpers, :mod:`qkv.viz` the plotting.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from torch import nn

from qkv.experiments.config import apply_values
from qkv.train.io import save_json
from qkv.train.loop import BatchSource, EvalFn, FitResult, LossFn, TrainConfig, fit, is_main_process
from qkv.train.metrics_log import MetricsLog
from qkv.train.seeding import seed_everything

__all__ = ["DataUnavailable", "Experiment", "ExperimentResult", "Figure", "RunContext", "Table", "Target"]


class DataUnavailable(RuntimeError):
    """The experiment's dataset is not on this machine; the message says how to supply it."""


@dataclass(frozen=True)
class Target:
    """A declared goal: ``metrics[metric] op value`` (``op`` is ``">="`` or ``"<="``).

    An experiment declares ``targets`` for the full run and ``quick_targets`` for ``--quick``.
    """

    metric: str
    op: Literal[">=", "<="]
    value: float
    description: str = ""

    def check(self, metrics: dict[str, Any]) -> bool | None:
        """True/False if ``metric`` was measured, None if it was not."""
        got = metrics.get(self.metric)
        if not isinstance(got, int | float):
            return None
        return got >= self.value if self.op == ">=" else got <= self.value


@dataclass
class Table:
    """A small table for the report (e.g. one row per variant)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Figure:
    """An image in the run directory (``path`` relative to it) with its caption."""

    path: str
    caption: str


@dataclass
class ExperimentResult:
    """What :meth:`Experiment.run` returns; ``metrics`` are the headline numbers compared with targets."""

    metrics: dict[str, float]
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "main"


@dataclass
class RunContext:
    """Everything an experiment's ``run`` needs from the runner."""

    run_dir: Path
    seed: int
    quick: bool
    resume: bool
    progress: bool
    config_hash: str
    metrics: MetricsLog
    log: Callable[[str], None] = print
    device: str = "cpu"
    offline: bool = False

    def variant_seed(self, variant: str) -> int:
        """A seed for one variant derived from the run's seed and the variant's name.

        Each variant seeds its own model initialisation with it, so a resumed run that skips
        finished variants initialises the remaining ones exactly as an uninterrupted run.
        """
        digest = hashlib.sha256(f"{self.seed}/{variant}".encode()).digest()
        return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF

    def seed_variant(self, variant: str) -> int:
        """Seed every global RNG with :meth:`variant_seed` (call it before building the variant's model)."""
        seed = self.variant_seed(variant)
        seed_everything(seed)
        return seed

    def save_json(self, name: str, data: Any) -> Path:
        """Write ``data`` as JSON to the run directory's file ``name``, atomically; returns its path.

        Under data-parallel training only rank 0 writes (the other ranks hold the same data).
        """
        path = self.path(name)
        if is_main_process():
            save_json(path, data)
        return path

    def checkpoint_path(self, variant: str) -> Path:
        return self.run_dir / "checkpoints" / f"{_slug(variant)}.safetensors"

    def path(self, name: str) -> Path:
        """A file in the run directory (parents created)."""
        p = self.run_dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def fit(
        self,
        variant: str,
        model: nn.Module,
        data: BatchSource,
        loss_fn: LossFn,
        *,
        train: TrainConfig,
        evaluate: EvalFn | None = None,
    ) -> FitResult:
        """:func:`qkv.train.fit` with this run's checkpoint file, metrics log, resume flag, seed and device."""
        return fit(
            model, data, loss_fn, config=train, seed=self.variant_seed(variant), evaluate=evaluate,
            checkpoint=self.checkpoint_path(variant), metrics=self.metrics, variant=variant,
            config_hash=self.config_hash, resume=self.resume, progress=self.progress, desc=variant,
            device=self.device,
        )


class Experiment(ABC):
    """Base class of runnable experiments.

    Class attributes:
        name: the command-line name (``qkv run NAME``).
        description: one line for ``qkv list``.
        Config: the frozen dataclass type of its configuration.
        targets: what the full run must reach (shown against the measured numbers in the report).
        quick_overrides: the quick run's settings as dotted overrides of the default config
            (``{"train.max_steps": 600}``); a quick run takes about a minute on a 2-core CPU.
        quick_targets: what the quick run must reach (checked in a quick run, shown next to
            ``targets``).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type]
    targets: ClassVar[tuple[Target, ...]] = ()
    quick_overrides: ClassVar[dict[str, Any]] = {}
    quick_targets: ClassVar[tuple[Target, ...]] = ()

    def default_config(self) -> Any:
        """The full run's configuration."""
        return self.Config()

    def quick_config(self) -> Any:
        """The default configuration with :attr:`quick_overrides` applied (``--quick``)."""
        return apply_values(self.default_config(), self.quick_overrides)

    def check(self, config: Any, *, offline: bool = False) -> None:
        """Validate what ``config`` names outside itself (files, directories) before the run writes anything.

        Raises:
            qkv.experiments.ConfigError: a usage error the user must fix (e.g. a ``--data-dir``
                that does not exist); the CLI exits with 2.
        """
        return None

    @abstractmethod
    def run(self, config: Any, ctx: RunContext) -> ExperimentResult:
        """Build, train (through ``ctx.fit``) and evaluate; save what ``figures`` needs under ``ctx.run_dir``.

        Raises:
            DataUnavailable: when a dataset is missing (the tour reports it and goes on).
        """

    def figures(self, run_dir: Path, config: Any) -> list[Figure]:
        """Draw the experiment's figures from data saved by ``run``; return them with captions."""
        return []
