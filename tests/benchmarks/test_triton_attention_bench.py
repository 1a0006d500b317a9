"""``benchmarks/triton_attention.py`` (issue 16 §4): the no-GPU path, its arithmetic and tables, a CPU smoke run
under Triton's interpreter (slow), and a tiny real run where a GPU is present."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "triton_attention.py"


@pytest.fixture(scope="module")
def script():
    return type("Script", (), runpy.run_path(str(SCRIPT), run_name="qkv_triton_attention_bench"))


def _run(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_without_cuda_it_measures_nothing_writes_nothing_and_exits_0(script, tmp_path, monkeypatch, capsys):
    results = ROOT / "benchmarks" / "results"
    before = set(results.iterdir()) if results.exists() else set()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # in-process: no fresh torch import (seconds)
    assert script.main(["--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]) == 0
    assert "no CUDA device: nothing measured" in capsys.readouterr().out
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.md").exists()
    assert (set(results.iterdir()) if results.exists() else set()) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU this would run the whole benchmark")
def test_qkv_bench_triton_dispatches_to_the_script(capsys):
    from qkv.cli import main

    assert main(["bench", "triton"]) == 0
    assert "no CUDA device: nothing measured" in capsys.readouterr().out


def test_peak_table_and_flop_count(script):
    assert script.peak_tflops("NVIDIA H200") == 989
    assert script.peak_tflops("NVIDIA H100 80GB HBM3") == 989
    assert script.peak_tflops("NVIDIA H100 PCIe") == 756
    assert script.peak_tflops("NVIDIA A100-SXM4-80GB") == 312
    assert script.peak_tflops("NVIDIA L4") == 121
    assert script.peak_tflops("NVIDIA GeForce GTX 1080") is None
    H, L, S, D = 2, 3, 5, 7
    # two matmuls of (L, D) x (D, S) and (L, S) x (S, D) per head: 2 multiply-adds each
    assert script.attention_flops(H, L, S, D, backward=False) == H * (2 * L * S * D + 2 * L * S * D)
    assert script.attention_flops(H, L, S, D, backward=True) == 3.5 * script.attention_flops(H, L, S, D, backward=False)


def test_options_are_validated(script):
    args = script.parse_args(["--suites", "dot,additive", "--sizes", "1024,2048", "--dtypes", "bfloat16"])
    assert args.suites == ["dot", "additive"] and args.sizes == [1024, 2048] and args.dtypes == ["bfloat16"]
    for bad in (["--suites", "dense"], ["--sizes", "0"], ["--dtypes", "float32"], ["--heads", "x"]):
        with pytest.raises(SystemExit) as e:
            script.parse_args(bad)
        assert e.value.code == 2, bad


def test_tables_compute_ratios_within_the_run(script):
    shape = {"L": 4096, "H": 8, "D": 64, "dtype": "float16"}
    rows = [
        {"suite": "dot", "backend": "sdpa-flash", "status": "ok", "fwd_s": 0.001, "fwdbwd_s": 0.004, **shape},
        {"suite": "dot", "backend": "triton", "status": "ok", "fwd_s": 0.002, "fwdbwd_s": 0.005, **shape},
        {"suite": "window", "backend": "flex", "status": "ok", "fwd_s": 0.003, "fwdbwd_s": 0.009, **shape},
        {"suite": "window", "backend": "triton", "status": "ok", "fwd_s": 0.002, "fwdbwd_s": 0.010, **shape},
        {"suite": "additive", "backend": "naive", "status": "ok", "fwd_s": 0.4, "fwdbwd_s": 1.0,
         "fwd_peak": 2**33, "fwdbwd_peak": 2**34, **shape},
        {"suite": "additive", "backend": "triton", "status": "ok", "fwd_s": 0.1, "fwdbwd_s": 0.5,
         "fwd_peak": 2**23, "fwdbwd_peak": 2**24, **shape},
        {"suite": "additive", "backend": "naive", "status": "oom", "note": "naive OOM", **{**shape, "L": 16384}},
        {"suite": "additive", "backend": "triton", "status": "ok", "fwd_s": 1.0, "fwdbwd_s": 3.0,
         "fwd_peak": 2**25, "fwdbwd_peak": 2**26, **{**shape, "L": 16384}},
    ]
    text = script.tables(rows, "NVIDIA H200")
    flops = 4 * 8 * 4096 * 4096 * 64
    tf = flops / 0.002 / 1e12
    assert f"| 2.00×, 1.25× | {tf:.3g}, {3.5 * flops / 0.005 / 1e12:.3g} | {tf / 989:.0%}," in text
    assert "| 1.50×, 0.90× |" in text  # throughput / Flex = Flex's time / triton's
    assert "| 0.25×, 0.50× | 1024.00×, 1024.00× |" in text  # time / naive; naive's peak / triton's
    assert "| naive OOM |" in text
    for section in text.split("###")[1:]:  # every row of a table has its header's number of cells
        cells = {line.count("|") for line in section.splitlines() if line.startswith("|")}
        assert len(cells) == 1, section


@pytest.mark.slow
def test_interpret_smoke_runs_every_suite_on_the_cpu(tmp_path):
    out = _run("--interpret-smoke", "--json", str(tmp_path / "smoke.json"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert data["info"]["smoke"] is True
    assert "these times are not measurements" in out.stdout  # above the tables, never read as a GPU's
    seen = {(r["suite"], r["backend"]) for r in data["rows"]}
    assert {("dot", "sdpa-flash"), ("additive", "naive"), ("window", "flex")} <= seen
    assert {s for s, _ in seen} == {"dot", "window", "local_p", "additive"}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_tiny_gpu_run_measures_every_compared_backend(tmp_path):
    out = _run("--suites", "dot,window,additive", "--sizes", "512", "--heads", "2", "--dims", "64",
               "--dtypes", "float16", "--repeat", "1", "--json", str(tmp_path / "r.json"), timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "GPU: " in out.stdout
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    by = {(r["suite"], r["backend"]): r for r in rows}
    for key in [("dot", "sdpa-flash"), ("dot", "tiled"), ("window", "flex"), ("additive", "naive")]:
        assert by[key]["status"] == "ok" and by[key]["fwd_s"] > 0 and by[key]["fwdbwd_peak"] > 0, by[key]
