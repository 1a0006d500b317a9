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
    assert cfg["train"]["lr"] == 0.01 and cfg["train"]["max_steps"] == 400  # the quick settings' steps


def test_run_report_and_runtime_errors(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "seq2seq-attention", "--quick", "--out", str(out), "--no-progress", *_sets(TINY)]) == 0
    printed = capsys.readouterr().out
    assert "exact_match/global/dot" in printed and f"report: {(out / 'index.html').resolve()}" in printed
    # a quick run judges its quick targets; the full-run ones are listed as not checked, never as "NOT met"
    assert "quick-run target" in printed and "\n  target " not in printed
    assert "full-run target" in printed and "not checked in a quick run" in printed
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
                 "translation-fra-eng", "--data-dir", str(empty), "--no-progress", "--offline"])
    assert code == 0
    out = capsys.readouterr().out
    assert "1 ok, 1 skipped, 0 failed" in out and "--data-dir PATH" in out
    assert "report: " in out and (tmp_path / "tour" / "index.html").is_file()


def test_bad_seed_is_a_usage_error_that_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["run", "scaled-dot", "--quick", "--seed", "-1", "--out", str(out)])
    assert e.value.code == 2 and "--seed" in capsys.readouterr().err
    assert not out.exists()
    # the library path refuses it before touching the disk too
    from qkv.experiments.config import ConfigError
    from qkv.experiments.runner import run_experiment

    with pytest.raises(ConfigError, match="--seed"):
        run_experiment("scaled-dot", quick=True, out=out, seed=-1, progress=False, log=lambda m: None)
    assert not out.exists()
    # and the directory is still free for a good run
    assert main(["run", "scaled-dot", "--quick", "--out", str(out), "--no-progress", "--set", "num_queries=20",
                 "--set", "max_log2_dk=1"]) == 0


@pytest.mark.parametrize("kind", ["missing", "fra-is-a-dir", "empty-fra", "not-tatoeba"])
def test_unusable_explicit_data_dir_is_a_usage_error(tmp_path, capsys, kind):
    data = tmp_path / "data"
    if kind != "missing":
        data.mkdir()
    if kind == "fra-is-a-dir":
        (data / "fra.txt").mkdir()
    elif kind == "empty-fra":
        (data / "fra.txt").write_text("")
    elif kind == "not-tatoeba":
        (data / "fra.txt").write_text("just\nsome notes\nwithout tabs\n")
    out = tmp_path / "run"
    for argv in (["run", "translation-fra-eng", "--quick", "--out", str(out)],
                 ["tour", "--quick", "--out", str(out), "--only", "translation-fra-eng"]):
        assert main([*argv, "--data-dir", str(data), "--no-progress", "--offline"]) == 2
        err = capsys.readouterr().err
        assert "--data-dir" in err and str(data) in err, err
        assert {"missing": "does not exist", "fra-is-a-dir": "not a regular file", "empty-fra": "is empty",
                "not-tatoeba": "does not look like"}[kind] in err
        assert not out.exists()


def test_offline_skips_without_trying_and_download_failure_is_fast(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("QKV_DATA_DIR", raising=False)
    calls = []

    def no_network(request, timeout):
        calls.append(timeout)
        raise OSError("network unreachable")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    assert main(["run", "translation-fra-eng", "--quick", "--out", str(tmp_path / "a"), "--offline",
                 "--no-progress"]) == 0
    assert calls == [] and "--offline: not downloading" in capsys.readouterr().err
    assert main(["run", "translation-fra-eng", "--quick", "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    assert calls and calls[0] <= 10  # a short timeout
    err = capsys.readouterr().err
    assert "downloading https://" in err and "network unreachable" in err and "--data-dir PATH" in err


def test_device_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "scaled-dot", "--device", "tpu"])
    assert e.value.code == 2
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as e:
            main(["run", "scaled-dot", "--device", "cuda", "--out", str(tmp_path / "x")])
        assert e.value.code == 2 and "no CUDA" in capsys.readouterr().err
        assert not (tmp_path / "x").exists()
    assert main(["run", "seq2seq-attention", "--quick", "--device", "auto", "--out", str(tmp_path / "r"),
                 "--no-progress", *_sets(TINY)]) == 0


def test_report_on_a_corrupt_summary_names_the_file(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", "scaled-dot", "--quick", "--out", str(run), "--no-progress", "--set", "num_queries=20",
                 "--set", "max_log2_dk=1"]) == 0
    capsys.readouterr()
    (run / "summary.json").write_text('{"experiment": "scaled-dot", "metr')
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err
    assert "summary.json" in err and str(run) in err and "Traceback" not in err
    (run / "summary.json").write_text("[1, 2]")
    assert main(["report", str(tmp_path)]) == 1
    assert "does not hold a JSON object" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "named"), [(["--sizes", "abc"], "--sizes"), (["--sizes", "-5"], "--sizes"),
                                             (["--sizes", "0"], "--sizes"), (["--backends", "foo"], "--backends"),
                                             (["--scores", "nope"], "--scores"), (["--repeat", "0"], "--repeat")])
def test_bench_arguments_are_validated(args, named, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_bench_without_the_source_checkout_is_a_clear_error(monkeypatch, tmp_path, capsys):
    import qkv.cli

    monkeypatch.setattr(qkv.cli, "benchmarks_dir", lambda: tmp_path / "nowhere")
    assert main(["bench", "--quick"]) == 1
    assert "source checkout" in capsys.readouterr().err


def _qkv(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "qkv.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


@pytest.mark.slow  # subprocess-heavy: three real `qkv run` processes (~50 s on 2 cores)
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
