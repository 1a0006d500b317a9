"""The ``qkv`` command line: help, listing, errors and exit codes, run/report/tour, SIGKILL + --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from qkv.cli import main
from qkv.train.checkpoint import read_checkpoint_meta

TINY = ["variants=global/dot", "train_size=200", "valid_size=20", "test_size=30", "model.hidden=16",
        "model.embed_dim=8", "train.max_steps=20", "train.eval_every=10", "train.checkpoint_every=10",
        "train.batch_size=16"]


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _sets(items):
    return [x for item in items for x in ("--set", item)]


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["tour", "--help"], ["list", "--help"],
                                  ["report", "--help"], ["bench", "--help"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage: qkv" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    for argv in ([], ["frobnicate"], ["run"], ["run", "scaled-dot", "--seed", "x"],
                 ["run", "scaled-dot", "--threads", "0"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    capsys.readouterr()
    assert main(["run", "seq2seq-atention"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'seq2seq-atention'" in err and "seq2seq-attention" in err and "scaled-dot" in err
    assert main(["run", "scaled-dot", "--set", "num_querys=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'num_querys'" in err and "num_queries (int)" in err
    assert main(["run", "scaled-dot", "--set", "num_queries=many"]) == 2
    assert "expected an int" in capsys.readouterr().err
    assert main(["run", "seq2seq-attention", "--set", "model.position=diagonal"]) == 2
    assert "'global', 'local-m', 'local-p'" in capsys.readouterr().err


def test_list_and_print_config(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("seq2seq-attention", "translation-fra-eng", "scaled-dot"):
        assert name in out
    assert main(["list", "-v"]) == 0
    assert "target: min_exact_match_global >= 0.99" in capsys.readouterr().out
    assert main(["run", "seq2seq-attention", "--quick", "--print-config", "--set", "train.lr=0.01"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["train"]["lr"] == 0.01 and cfg["train"]["max_steps"] == 200


def test_run_report_and_runtime_errors(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "seq2seq-attention", "--quick", "--out", str(out), "--no-progress", *_sets(TINY)]) == 0
    printed = capsys.readouterr().out
    assert "exact_match/global/dot" in printed and f"report: {(out / 'index.html').resolve()}" in printed
    # an existing run is not overwritten silently
    assert main(["run", "seq2seq-attention", "--quick", "--out", str(out), "--no-progress", *_sets(TINY)]) == 1
    assert "--resume" in capsys.readouterr().err
    # report re-renders figures and the page from saved files
    (out / "index.html").unlink()
    (out / "figures" / "attention_0.png").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "index.html").is_file() and (out / "figures" / "attention_0.png").is_file()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    # a corrupted checkpoint on --resume: a clear one-line error, exit 1, no traceback
    ck = out / "checkpoints" / "global_dot.safetensors"
    ck.write_bytes(ck.read_bytes()[:100])
    assert main(["run", "seq2seq-attention", "--quick", "--out", str(out), "--resume", "--no-progress",
                 *_sets(TINY)]) == 1
    err = capsys.readouterr().err
    assert "qkv: error: checkpoint" in err and "truncated" in err and "Traceback" not in err


def test_tour_writes_one_report(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["tour", "--quick", "--out", str(tmp_path / "tour"), "--only", "scaled-dot", "--only",
                 "translation-fra-eng", "--data-dir", str(empty), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "1 ok, 1 skipped, 0 failed" in out and "--data-dir PATH" in out
    assert "report: " in out and (tmp_path / "tour" / "index.html").is_file()


def _qkv(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "qkv.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_sigkill_then_resume_reaches_the_same_final_metrics(tmp_path):
    """Kill a real `qkv run` with SIGKILL mid-training, resume it, compare with an uninterrupted run."""
    sets = _sets(["variants=global/dot,global/general", "train_size=300", "valid_size=20", "test_size=40",
                  "model.hidden=16", "model.embed_dim=8", "train.max_steps=120", "train.eval_every=40",
                  "train.checkpoint_every=10", "train.batch_size=16", "train.log_every=5"])
    common = ["run", "seq2seq-attention", "--quick", "--no-progress", "--seed", "7", *sets]

    ref = _qkv(*common, "--out", str(tmp_path / "ref"))
    killed_dir = tmp_path / "killed"
    victim = _qkv(*common, "--out", str(killed_dir))
    target = killed_dir / "checkpoints" / "global_general.safetensors"  # the second variant, mid-training
    deadline = time.monotonic() + 240
    while not target.exists():
        assert victim.poll() is None, f"run ended before the kill: {victim.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    meta = read_checkpoint_meta(target)
    assert not meta["finished"] and meta["step"] < 120, "the kill must land mid-run"
    assert not (killed_dir / "summary.json").exists()

    resumed = _qkv(*common, "--out", str(killed_dir), "--resume")
    _, r_err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, r_err[-3000:]
    _, f_err = ref.communicate(timeout=300)
    assert ref.returncode == 0, f_err[-3000:]

    a = json.loads((tmp_path / "ref" / "summary.json").read_text())
    b = json.loads((killed_dir / "summary.json").read_text())
    assert a["metrics"] == b["metrics"]
    assert a["tables"] == b["tables"]
    assert (tmp_path / "ref" / "metrics.jsonl").read_text() == (killed_dir / "metrics.jsonl").read_text()
