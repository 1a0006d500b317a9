"""``qkv run NAME --nproc 2`` (torchrun's launcher, gloo) reproduces the single-process run's metrics."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SETS = ["--set", "train.max_steps=20", "--set", "train_size=2000", "--set", "test_size=100", "--set",
        "train.eval_every=10", "--set", "train.checkpoint_every=10", "--set", "train.batch_size=32"]


def _run(out, *extra):
    cmd = [sys.executable, "-m", "qkv", "run", "pointer-sort", "--quick", *SETS, "--out", str(out), "--no-progress",
           *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_nproc_two_matches_one_process(tmp_path):
    one = _run(tmp_path / "one")
    two = _run(tmp_path / "two", "--nproc", "2")
    assert [(r["split"], r["step"]) for r in two] == [(r["split"], r["step"]) for r in one]
    for a, b in zip(one, two, strict=True):
        for key in ("loss", "acc"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a, b)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["status"] == "ok" and (tmp_path / "two" / "checkpoints").is_dir()
    # resuming the finished run with the same N restores it and reports the same metrics
    _run(tmp_path / "two", "--nproc", "2", "--resume")
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["metrics"] == summary["metrics"]


def test_nproc_must_be_positive(capsys):
    from qkv.cli import main

    with pytest.raises(SystemExit) as e:
        main(["run", "pointer-sort", "--nproc", "0"])
    assert e.value.code == 2 and "--nproc must be >= 1" in capsys.readouterr().err
