"""The harness's timing and peak-memory mechanism per device (issue 16 §1): ``measure`` in ``benchmarks/harness.py``.

On a CPU: wall-clock time and the growth of the process's peak RSS, without touching CUDA. On
CUDA: timings bracketed by ``torch.cuda.synchronize`` (an asynchronous kernel's time is counted)
and the CUDA caching allocator's peak above what was allocated before. The CUDA tests run where
a GPU is present and skip elsewhere.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "harness.py"


@pytest.fixture(scope="module")
def bench():
    return type("Harness", (), runpy.run_path(str(HARNESS), run_name="qkv_bench_harness"))


def test_measure_checks_its_arguments(bench):
    with pytest.raises(ValueError, match=r"device.*'tpu'"):
        bench.measure(lambda: None, device="tpu")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=rf"repeat.*{bad!r}"):
            bench.measure(lambda: None, repeat=bad)


def test_measure_on_cpu_times_every_repeat_and_keeps_the_minimum(bench):
    calls = []

    def fn():
        calls.append(time.perf_counter())
        time.sleep(0.02 if len(calls) == 1 else 0.005)

    seconds, peak = bench.measure(fn, device="cpu", repeat=3)
    assert len(calls) == 3
    assert 0.004 < seconds < 0.02  # the minimum: a repeat, not the slow first call
    assert peak >= 0


@pytest.mark.slow  # a fresh process importing torch: seconds on a loaded machine
def test_measure_on_cpu_reports_peak_rss_growth_in_a_fresh_process():
    """A 1 GiB tensor written inside the call shows in the CPU path's peak (a fresh process: RSS peaks
    are per process). The baseline is the process's peak RSS so far, which can exceed the current RSS
    by the import's transients or reclaimed library pages (~130 MiB seen on a loaded machine), so the
    bound is loose. On a CPU-only torch, any CUDA call would raise: the path uses none."""
    code = (
        "import json, runpy, torch\n"
        f"h = runpy.run_path({str(HARNESS)!r}, run_name='h')\n"
        "s, peak = h['measure'](lambda: torch.ones(256 * 2**20), device='cpu', repeat=1)\n"
        "print(json.dumps([s, peak]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seconds, peak = json.loads(out.stdout.strip().splitlines()[-1])
    assert seconds > 0
    assert 512 * 2**20 < peak < 2048 * 2**20, peak


def test_dtype_and_device_options(bench):
    args = bench.parse_args(["--device", "cuda", "--dtype", "bfloat16"])
    assert args.device == "cuda" and args.dtype == "bfloat16" and args.mem_cap_gib is None
    assert bench.parse_args([]).dtype == "float32"
    for bad in (["--dtype", "int8"], ["--dtype", "half"], ["--device", "gpu"]):
        with pytest.raises(SystemExit) as e:
            bench.parse_args(bad)
        assert e.value.code == 2, bad
    assert bench._default_mem_cap_gib("cpu") == 8.0


def test_problem_takes_the_dtype(bench):
    q, k, v, kw = bench._problem("additive", 16, 2, 8, dtype="bfloat16")
    assert q.dtype == k.dtype == v.dtype == torch.bfloat16 and q.requires_grad
    assert all(p.dtype == torch.bfloat16 for p in kw["score"].parameters())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where no GPU is present")
def test_cuda_bench_without_a_gpu_measures_nothing_and_exits_0(bench, capsys):
    assert bench.bench_command(bench.parse_args(["--device", "cuda", "--sizes", "64"])) == 0
    assert "no CUDA GPU is available here; nothing measured" in capsys.readouterr().out


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_measure_on_cuda_synchronises_and_reads_the_allocator(bench):
    device = "cuda"
    held = torch.empty(128 * 2**20, dtype=torch.uint8, device=device)  # allocated before: not counted
    cycles = 200_000_000  # ~0.1 s of a spinning kernel on current GPUs; returns to Python at once

    def fn():
        torch.cuda._sleep(cycles)
        return torch.empty(64 * 2**20, dtype=torch.uint8, device=device)

    t0 = time.perf_counter()
    torch.cuda._sleep(cycles)
    launch = time.perf_counter() - t0
    torch.cuda.synchronize()
    seconds, peak = bench.measure(fn, device=device, repeat=2)
    assert seconds > 10 * launch and seconds > 0.01  # the kernel's time, not its launch
    assert 64 * 2**20 <= peak < 128 * 2**20  # the allocator's peak above the baseline
    del held


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_child_case_runs_in_half_precision(bench):
    case = bench.Case("additive", 256, "tiled", H=2, D=16, repeat=1, device="cuda", dtype="float16")
    res = bench._run_child(case, timeout=600)
    assert res.status == "ok", res.note
    assert res.fwd_s > 0 and res.fb_s > 0 and res.fwd_peak > 0 and res.fb_peak > 0
