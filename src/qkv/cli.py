"""The ``qkv`` command line: find, run and report experiments.

    qkv list                                   registered experiments, one line each
    qkv run NAME [--set k=v ...] [--quick] [--out DIR] [--resume] [--seed N] [--data-dir PATH]
                 [--device cpu|cuda|auto] [--offline] [--nproc N]
    torchrun --nproc-per-node N -m qkv run NAME ...   the same, launched by torchrun
    qkv tour [--quick] [--out DIR]             every experiment, one HTML report
    qkv report DIR                             re-render index.html from saved results
    qkv bench [--sizes ...] [--scores ...]     attention backends: time and peak memory (benchmarks/harness.py)
    qkv bench transformer-lm [--threads N ...] a Transformer LM: training step vs torch.nn, cached generation
                                               vs recomputation (benchmarks/transformer_lm.py)
    qkv bench triton [--quick ...]             on a CUDA GPU: the Triton kernels vs SDPA flash, FlexAttention
                                               and naive additive attention (benchmarks/triton_attention.py)

Every argument is validated before anything is written to disk. Exit codes: 0 success,
1 runtime failure, 2 usage error (bad arguments, unknown experiment, bad ``--set``, a
``--data-dir`` that is not usable), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _err(message: str) -> None:
    print(f"qkv: error: {message}", file=sys.stderr)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qkv",
        description="Attention mechanisms and external memory: run the classic experiments and look at "
        "what attention did.",
        epilog="Examples:\n  qkv list\n  qkv run seq2seq-attention --quick\n"
        "  qkv run seq2seq-attention --set train.max_steps=500 --set model.hidden=64\n"
        "  qkv tour --quick --out runs/tour\n  qkv report runs/tour",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    try:
        from importlib.metadata import version

        parser.add_argument("--version", action="version", version=f"qkv {version('qkv')}")
    except Exception:  # pragma: no cover - not installed
        pass
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list", help="list registered experiments", description="List registered experiments.")
    p.add_argument("-v", "--verbose", action="store_true", help="also show targets and settable --set keys")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--quick", action="store_true", help="the quick configuration (under a minute each on a CPU)")
        p.add_argument("--seed", type=_seed, default=0,
                       help="random seed, a non-negative integer (default 0); same seed, same metrics")
        p.add_argument("--resume", action="store_true",
                       help="continue an interrupted run in --out from its checkpoints (same options as before)")
        p.add_argument("--data-dir", metavar="PATH", default=None,
                       help="directory holding datasets (e.g. fra.txt for translation-fra-eng)")
        p.add_argument("--offline", action="store_true",
                       help="never download datasets; an experiment whose data is not here is skipped")
        p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                       help="where to train: cpu (default), cuda, or auto (cuda when available)")
        p.add_argument("--no-progress", action="store_true",
                       help="no progress output (default: a bar on a terminal, a few lines per variant in a log)")
        p.add_argument("--threads", type=int, default=1, metavar="N",
                       help="torch CPU threads (default 1: these models are small and one thread is fastest)")

    p = sub.add_parser("run", help="run one experiment", description="Run one experiment into a run directory "
                       "(config.json, metrics.jsonl, checkpoints/, figures/, summary.json, index.html).",
                       epilog="`qkv list -v` shows each experiment's targets and --set keys; "
                       "`qkv run NAME --print-config` its resolved config.")
    p.add_argument("name", help="experiment name (see `qkv list`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.max_steps=200 (repeatable)")
    p.add_argument("--out", metavar="DIR", default=None, help="run directory (default runs/NAME)")
    p.add_argument("--force", action="store_true", help="overwrite an existing run in --out")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training in N processes (torchrun's launcher; gloo on CPU, NCCL on CUDA); "
                   "train.batch_size is the global batch; resume with the same N")
    common(p)

    p = sub.add_parser("tour", help="run every experiment and write one HTML report",
                       description="Run every registered experiment and write one HTML report.")
    p.add_argument("--out", metavar="DIR", default="runs/tour", help="output directory (default runs/tour)")
    p.add_argument("--only", action="append", metavar="NAME", default=None,
                   help="run only this experiment (repeatable)")
    p.add_argument("--full", action="store_true", help="full configurations (overrides --quick)")
    common(p)

    p = sub.add_parser("report", help="re-render the HTML report from saved results",
                       description="Re-render figures and index.html from the results saved in DIR "
                       "(a run directory or a tour directory).")
    p.add_argument("dir", metavar="DIR", help="run or tour directory")

    # `qkv bench ...` is handed to benchmarks/harness.py before parsing (see main); listed here for --help
    sub.add_parser("bench", help="time and peak memory of the attention backends (qkv bench --help); "
                   "`qkv bench transformer-lm`: a Transformer LM's training and cached generation; "
                   "`qkv bench triton`: the Triton kernels on a CUDA GPU")
    return parser


def _cmd_list(args: argparse.Namespace) -> int:
    from qkv.experiments.config import config_keys
    from qkv.experiments.registry import all_experiments, broken_modules

    experiments = all_experiments()
    width = max((len(e.name) for e in experiments), default=10)
    for e in experiments:
        print(f"{e.name:<{width}}  {e.description}")
        if args.verbose:
            for t in e.targets:
                print(f"{'':<{width}}    target: {t.metric} {t.op} {t.value:g}  {t.description}")
            keys = config_keys(e.default_config())
            print(f"{'':<{width}}    --set keys: {', '.join(keys)}")
    for module, tb in broken_modules().items():
        print(f"(experiment module qkv.experiments.{module} failed to import: "
              f"{tb.strip().splitlines()[-1]})", file=sys.stderr)
    return EXIT_OK


def _print_summary(summary: dict) -> None:
    print(f"{summary['experiment']}: {summary['status']} in {summary['elapsed_s']:.1f}s"
          f" ({'quick' if summary['quick'] else 'full'} run, seed {summary['seed']})")
    for k, v in summary["metrics"].items():
        print(f"  {k:<34} {v:.4g}" if isinstance(v, float) else f"  {k:<34} {v}")
    for t in summary["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        kind = "quick-run target" if t.get("quick") else "target"
        if not t.get("checked", True):  # a full-run target shown beside a quick run's own
            kind, verdict = "full-run target", "not checked in a quick run"
        print(f"  {kind} {t['metric']} {t['op']} {t['value']:g}: {verdict}")


def _cmd_run(args: argparse.Namespace) -> int:
    import json

    from qkv.experiments.config import config_to_dict
    from qkv.experiments.registry import get
    from qkv.experiments.runner import build_config, run_experiment
    from qkv.viz.report import write_report

    if args.print_config:
        config = build_config(get(args.name), quick=args.quick, overrides=args.overrides, data_dir=args.data_dir)
        print(json.dumps(config_to_dict(config), indent=2))
        return EXIT_OK
    out = Path(args.out) if args.out else Path("runs") / args.name
    summary = run_experiment(
        args.name, overrides=args.overrides, quick=args.quick, out=out, resume=args.resume, force=args.force,
        seed=args.seed, data_dir=args.data_dir, progress=not args.no_progress, device=args.device,
        offline=args.offline, log=lambda m: print(m, file=sys.stderr),
    )
    from qkv.train.loop import is_main_process

    if not is_main_process():  # data-parallel ranks > 0: rank 0 reports
        return EXIT_OK
    _print_summary(summary)
    report = write_report(out, title=f"qkv: {args.name}")
    print(f"report: {report.resolve()}")
    return EXIT_OK


def _launch(argv: list[str], nproc: int) -> int:
    """Run ``qkv ARGV`` in ``nproc`` local processes with torchrun's launcher (``torchrun --standalone``)."""
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"qkv-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "qkv", *argv)
    except ChildFailedError as e:
        _err(f"a process of --nproc {nproc} failed: {e.get_first_failure()[1].message or 'see its output above'}")
        return EXIT_FAILURE
    return EXIT_OK


class _process_group:
    """Join the ``torch.distributed`` group torchrun describes in the environment (``WORLD_SIZE`` > 1)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.joined = False

    def __enter__(self) -> None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world < 2:
            return
        import torch
        import torch.distributed as dist

        nproc = getattr(self.args, "nproc", 1)
        if nproc > 1 and nproc != world:
            raise ValueError(f"--nproc {nproc} but the launcher started {world} processes")
        cuda = getattr(self.args, "device", "cpu") in ("cuda", "auto") and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
            self.joined = True

    def __exit__(self, *exc) -> None:
        if self.joined:
            import torch.distributed as dist

            dist.destroy_process_group()


def _cmd_tour(args: argparse.Namespace) -> int:
    import time

    from qkv.experiments.runner import run_tour
    from qkv.viz.report import write_report

    quick = args.quick and not args.full
    t0 = time.perf_counter()
    summaries = run_tour(quick=quick, out=args.out, seed=args.seed, data_dir=args.data_dir, resume=args.resume,
                         progress=not args.no_progress, only=args.only, device=args.device, offline=args.offline,
                         log=lambda m: print(m, file=sys.stderr))
    report = write_report(args.out, title="qkv tour" + (" (quick)" if quick else ""))
    failed = [s["experiment"] for s in summaries if s["status"] == "failed"]
    skipped = [s["experiment"] for s in summaries if s["status"] == "skipped"]
    print(f"{len(summaries)} experiment(s): {len(summaries) - len(failed) - len(skipped)} ok, "
          f"{len(skipped)} skipped, {len(failed)} failed in {time.perf_counter() - t0:.0f} s")
    for s in summaries:
        if s["status"] == "skipped":
            print(f"  {s['experiment']} skipped: {s['notes'][0] if s['notes'] else ''}")
    print(f"report: {report.resolve()}")
    return EXIT_FAILURE if failed else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    import json

    from qkv.experiments.config import config_from_dict
    from qkv.experiments.registry import UnknownExperiment, get
    from qkv.experiments.runner import redraw_figures
    from qkv.train.io import save_json
    from qkv.viz.report import ReportError, find_runs, read_summary, write_report

    root = Path(args.dir)
    if not root.is_dir():
        _err(f"report: {str(root)!r} is not a directory")
        return EXIT_USAGE
    runs = find_runs(root)
    if not runs:
        _err(f"report: no run found in {str(root)!r} (no summary.json in it or its subdirectories)")
        return EXIT_FAILURE
    try:
        summaries = {run_dir: read_summary(run_dir) for run_dir in runs}
    except ReportError as e:
        _err(f"report: {e}")
        return EXIT_FAILURE
    for run_dir, summary in summaries.items():  # redraw figures from the saved data where the experiment is known
        cfg_file = run_dir / "config.json"
        if summary.get("status") != "ok" or not cfg_file.exists():
            continue
        try:
            experiment = get(summary["experiment"])
            config = config_from_dict(experiment.Config, json.loads(cfg_file.read_text())["config"])
            figures = redraw_figures(experiment, run_dir, config)
        except (UnknownExperiment, FileNotFoundError, KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
            print(f"note: kept the saved figures of {run_dir} ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        summary["figures"] = [{"path": f.path, "caption": f.caption} for f in figures]
        save_json(run_dir / "summary.json", summary)
    try:
        report = write_report(root, title="qkv report")
    except ReportError as e:
        _err(f"report: {e}")
        return EXIT_FAILURE
    print(f"report: {report.resolve()}")
    return EXIT_OK


def benchmarks_dir() -> Path:
    """The repository's ``benchmarks/`` directory, next to ``src/`` in a source checkout."""
    return Path(__file__).resolve().parents[2] / "benchmarks"


def _cmd_bench(argv: list[str]) -> int:
    """Load ``benchmarks/harness.py`` from the source checkout and run it (it is not part of the package)."""
    import runpy

    harness = benchmarks_dir() / "harness.py"
    if not harness.is_file():
        _err(f"bench: the benchmark harness is not installed with the package; it lives in the source checkout "
             f"(looked for {harness}). Clone the repository and install it editable (bash scripts/setup.sh), "
             "or run `python benchmarks/attention.py` there.")
        return EXIT_FAILURE
    module = runpy.run_path(str(harness), run_name="qkv_bench_harness")
    return int(module["main"](argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qkv`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmark has its own options (benchmarks/harness.py)
        return _cmd_bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on usage errors
    from qkv.experiments.config import ConfigError
    from qkv.experiments.registry import UnknownExperiment
    from qkv.experiments.runner import RunError
    from qkv.train.checkpoint import CheckpointError

    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            parser.error(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
        if getattr(args, "device", None) == "cuda" and not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA GPU is available here (use --device cpu or auto)")
    nproc = getattr(args, "nproc", 1)
    if nproc < 1:
        parser.error(f"--nproc must be >= 1, got {nproc}")
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch(argv, nproc)
    handlers = {"list": _cmd_list, "run": _cmd_run, "tour": _cmd_tour, "report": _cmd_report}
    try:
        with _process_group(args):
            return handlers[args.command](args)
    except (UnknownExperiment, ConfigError) as e:
        _err(str(e))
        return EXIT_USAGE
    except (RunError, CheckpointError) as e:
        _err(str(e))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _err("interrupted; continue with --resume")
        return EXIT_INTERRUPTED
    except Exception as e:  # a runtime failure: one clear line (QKV_DEBUG=1 shows the traceback)
        if os.environ.get("QKV_DEBUG"):
            raise
        _err(f"{type(e).__name__}: {e} (set QKV_DEBUG=1 for the traceback)")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
