"""Run one experiment into a run directory, or all of them (the tour).

A run directory holds:

* ``config.json``  — experiment name, seed, quick flag, the full Config and its hash;
* ``metrics.jsonl`` — training and evaluation records (:class:`qkv.train.MetricsLog`);
* ``checkpoints/<variant>.safetensors`` — resumable checkpoints with JSON metadata;
* ``figures/`` — PNG/SVG pictures (learning curves, attention heatmaps, ...);
* ``summary.json`` — final metrics, targets and whether they were met, tables, notes, figures.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qkv.experiments.base import DataUnavailable, Experiment, Figure, RunContext, Target
from qkv.experiments.config import ConfigError, apply_overrides, config_hash, config_keys, config_to_dict
from qkv.experiments.registry import all_experiments, get
from qkv.train.io import save_json
from qkv.train.loop import distributed_world, is_main_process, resolve_device
from qkv.train.metrics_log import MetricsLog
from qkv.train.seeding import seed_everything

__all__ = ["RunError", "build_config", "check_run_options", "redraw_figures", "run_experiment", "run_tour",
           "target_rows"]

_RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "index.html")
_RUN_DIRS = ("checkpoints", "figures")


class RunError(RuntimeError):
    """A run cannot start (existing directory, mismatching config on resume, ...)."""


def build_config(experiment: Experiment, *, quick: bool, overrides: list[str] | tuple[str, ...] = (),
                 data_dir: str | None = None) -> Any:
    """The experiment's (quick or full) Config with ``--data-dir`` and ``--set`` overrides applied."""
    config = experiment.quick_config() if quick else experiment.default_config()
    if data_dir is not None:
        if "data_dir" not in config_keys(config):
            raise ConfigError(f"--data-dir: experiment {experiment.name!r} reads no dataset (it has no data_dir)")
        config = apply_overrides(config, [f"data_dir={data_dir}"])
    return apply_overrides(config, list(overrides))


def check_run_options(*, seed: Any, device: str) -> None:
    """Usage errors in the run options, raised before anything touches the disk.

    Raises:
        ConfigError: ``seed`` is not a non-negative int, or ``device`` is unknown or unavailable.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")
    try:
        resolve_device(device)
    except ValueError as e:
        raise ConfigError(f"--device: {e}") from None


def target_rows(experiment: Experiment, metrics: dict[str, Any], *, quick: bool) -> list[dict[str, Any]]:
    """The summary's target entries: the checked ones (quick targets in a quick run) first, then the others.

    Each entry: ``metric, op, value, description, measured, met, quick`` (a quick-run target?),
    ``checked`` (does this run's verdict count?) and ``full`` (the full-run target on the same
    metric, for a quick target, so the report can show them side by side).
    """
    def row(t: Target, *, is_quick: bool, checked: bool) -> dict[str, Any]:
        full = next((f for f in experiment.targets if f.metric == t.metric), None) if is_quick else None
        return {"metric": t.metric, "op": t.op, "value": t.value, "description": t.description,
                "measured": metrics.get(t.metric), "met": t.check(metrics), "quick": is_quick, "checked": checked,
                "full": None if full is None else {"op": full.op, "value": full.value}}

    if quick and experiment.quick_targets:
        quick_metrics = {t.metric for t in experiment.quick_targets}
        return ([row(t, is_quick=True, checked=True) for t in experiment.quick_targets]
                + [row(t, is_quick=False, checked=False) for t in experiment.targets if t.metric not in quick_metrics])
    return [row(t, is_quick=False, checked=True) for t in experiment.targets]


def _versions() -> dict[str, str]:
    import torch

    try:
        from importlib.metadata import version

        qkv_version = version("qkv")
    except Exception:
        qkv_version = "unknown"
    return {"qkv": qkv_version, "torch": torch.__version__, "python": platform.python_version()}


def _learning_curves(run_dir: Path) -> list[Figure]:
    from qkv.viz.curves import plot_learning_curves

    records = MetricsLog(run_dir / "metrics.jsonl").read()
    if not any(r.get("split") == "train" for r in records):
        return []
    path = run_dir / "figures" / "learning_curves.png"
    plot_learning_curves(records, path)
    return [Figure("figures/learning_curves.png", "Learning curves: training loss and evaluation metrics per variant.")]


def redraw_figures(experiment: Experiment, run_dir: Path, config: Any) -> list[Figure]:
    """Learning curves plus the experiment's own figures, drawn from files in ``run_dir``."""
    figures = _learning_curves(run_dir)
    figures.extend(experiment.figures(run_dir, config))
    return figures


def _clear(run_dir: Path) -> None:
    for name in _RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for name in _RUN_DIRS:
        shutil.rmtree(run_dir / name, ignore_errors=True)


def run_experiment(
    name: str,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    quick: bool = False,
    out: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    seed: int = 0,
    data_dir: str | None = None,
    progress: bool = True,
    device: str = "cpu",
    offline: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run experiment ``name`` into ``out`` (default ``runs/NAME``) and return its summary.

    Every option is validated before anything is written: a usage error leaves the disk as it was.

    Raises:
        qkv.experiments.UnknownExperiment: no such experiment.
        qkv.experiments.ConfigError: a bad ``--set``, ``seed``, ``device`` or ``--data-dir``.
        RunError: ``out`` already holds a run and neither ``resume`` nor ``force`` was given, or
            ``resume`` with a config different from the saved one.
        qkv.train.CheckpointError: a checkpoint to resume from is unreadable.
    """
    experiment = get(name)
    check_run_options(seed=seed, device=device)
    config = build_config(experiment, quick=quick, overrides=overrides, data_dir=data_dir)
    experiment.check(config, offline=offline)
    run_dir = Path(out) if out is not None else Path("runs") / name
    spec = {"experiment": name, "seed": seed, "quick": quick, "config": config_to_dict(config)}
    digest = config_hash(spec)
    saved = run_dir / "config.json"
    if saved.exists():
        if resume:
            try:
                old = json.loads(saved.read_text())
            except json.JSONDecodeError as e:
                raise RunError(f"{saved} is not valid JSON ({e}); cannot resume from it") from None
            if old.get("config_hash") != digest:
                raise RunError(
                    f"--resume: {run_dir} holds a run of {old.get('experiment')!r} with seed={old.get('seed')}, "
                    f"quick={old.get('quick')} and config hash {old.get('config_hash')}, but this command asks for "
                    f"{name!r} with seed={seed}, quick={quick}, hash {digest}; repeat the original options"
                )
        elif force:
            _barrier()  # every rank has seen the old run before rank 0 clears it
            if is_main_process():
                _clear(run_dir)
        else:
            raise RunError(
                f"{run_dir} already holds a run; pass --resume to continue it, --force to overwrite it, "
                "or --out DIR for a new one"
            )
    elif resume:
        log(f"note: --resume but {run_dir} holds no run yet; starting from scratch")
    main = is_main_process()  # under data-parallel training (`--nproc N`) only rank 0 writes the run's files
    _barrier()  # every rank has checked the run directory before rank 0 changes it
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_json(saved, {**spec, "config_hash": digest})
    _barrier()

    seed_everything(seed)
    ctx = RunContext(run_dir=run_dir, seed=seed, quick=quick, resume=resume, progress=progress,
                     config_hash=digest, metrics=MetricsLog(run_dir / "metrics.jsonl"), log=log, device=device,
                     offline=offline)
    t0 = time.perf_counter()
    status, notes, tables, metrics = "ok", [], [], {}
    try:
        result = experiment.run(config, ctx)
        metrics, tables, notes = result.metrics, result.tables, list(result.notes)
    except DataUnavailable as e:
        status, notes = "skipped", [str(e)]
        log(f"[{name}] skipped: {e}")
    elapsed = time.perf_counter() - t0
    figures: list[Figure] = []
    if status == "ok" and main:
        try:
            figures = redraw_figures(experiment, run_dir, config)
        except Exception:  # a broken plot must not lose the numbers
            notes.append("drawing the figures failed:\n" + traceback.format_exc(limit=4))
    summary = {
        "experiment": name,
        "description": experiment.description,
        "status": status,
        "quick": quick,
        "seed": seed,
        "config_hash": digest,
        "metrics": metrics,
        "targets": target_rows(experiment, metrics, quick=quick),
        "tables": [{"title": t.title, "columns": t.columns, "rows": t.rows} for t in tables],
        "figures": [{"path": f.path, "caption": f.caption} for f in figures],
        "notes": notes,
        "elapsed_s": round(elapsed, 2),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    if main:
        save_json(run_dir / "summary.json", summary)
    _barrier()  # the summary exists before any rank returns
    return summary


def _barrier() -> None:
    """Wait for every rank under data-parallel training (a no-op in one process)."""
    if distributed_world()[1] > 1:
        import torch.distributed

        torch.distributed.barrier()


def run_tour(
    *,
    quick: bool,
    out: str | Path,
    seed: int = 0,
    data_dir: str | None = None,
    resume: bool = False,
    progress: bool = True,
    only: list[str] | None = None,
    device: str = "cpu",
    offline: bool = False,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run every registered experiment (or those in ``only``) into ``out/NAME``; never stops at a failure.

    Usage errors (an unknown name, a bad seed, device or ``--data-dir``) are raised before any
    experiment runs. A failing experiment gets a summary with ``status="failed"`` and its
    error; a missing dataset gives ``status="skipped"``.

    Raises:
        qkv.experiments.UnknownExperiment, qkv.experiments.ConfigError: before anything runs.
    """
    out = Path(out)
    summaries = []
    experiments = [get(n) for n in only] if only else all_experiments()
    check_run_options(seed=seed, device=device)
    data_dirs: dict[str, str | None] = {}
    for experiment in experiments:  # every usage error before the first experiment runs
        cfg = experiment.quick_config() if quick else experiment.default_config()
        data_dirs[experiment.name] = data_dir if data_dir is not None and "data_dir" in config_keys(cfg) else None
        experiment.check(build_config(experiment, quick=quick, data_dir=data_dirs[experiment.name]), offline=offline)
    for i, experiment in enumerate(experiments, 1):
        log(f"[{i}/{len(experiments)}] {experiment.name}: {experiment.description}")
        t0 = time.perf_counter()
        try:
            summary = run_experiment(
                experiment.name, quick=quick, out=out / experiment.name, seed=seed,
                data_dir=data_dirs[experiment.name], resume=resume, force=not resume, progress=progress,
                device=device, offline=offline, log=log,
            )
        except Exception as e:
            summary = {
                "experiment": experiment.name, "description": experiment.description, "status": "failed",
                "quick": quick, "seed": seed, "metrics": {}, "targets": [], "tables": [], "figures": [],
                "notes": [f"{type(e).__name__}: {e}", traceback.format_exc(limit=6)],
                "elapsed_s": round(time.perf_counter() - t0, 2),
            }
            save_json(out / experiment.name / "summary.json", summary)
            log(f"[{experiment.name}] FAILED: {type(e).__name__}: {e}")
        summaries.append(summary)
        log(f"[{experiment.name}] {summary['status']} in {summary['elapsed_s']:.1f}s  "
            + "  ".join(f"{k}={v:.4g}" for k, v in summary["metrics"].items() if isinstance(v, int | float)))
    return summaries
