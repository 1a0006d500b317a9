"""The benchmark harness in ``benchmarks/`` (outside the package): options, planning, a smoke run."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "harness.py"


@pytest.fixture(scope="module")
def bench():
    return type("Harness", (), runpy.run_path(str(HARNESS), run_name="qkv_bench_harness"))


def test_options_are_parsed_and_validated(bench):
    args = bench.parse_args(["--sizes", "64, 128", "--backends", "naive,flex", "--scores", "window"])
    assert args.sizes == [64, 128] and args.backends == ["naive", "flex"] and args.scores == ["window"]
    for bad in (["--sizes", "abc"], ["--sizes", "-5"], ["--sizes", "0"], ["--sizes", ""], ["--backends", "foo"],
                ["--heads", "0"], ["--mem-cap-gib", "nan"], ["--device", "tpu"]):
        with pytest.raises(SystemExit) as e:
            bench.parse_args(bad)
        assert e.value.code == 2, bad


def test_naive_memory_estimate(bench):
    assert bench._naive_bytes("additive", 1024, 8, 64, "fwdbwd") > 20 * 2**30 / 4  # several GiB at L = 1024


@pytest.mark.slow
def test_bench_smoke_run_and_table(bench):
    lines = []
    results, info = bench.run(
        sizes=[64], scores=["window", "additive"], backends=["naive", "sdpa", "tiled", "auto"], repeat=1,
        heads=2, dim=8, modes=("fwd",), matmul_n=128, log=lines.append,
    )
    by = {(r.case.score, r.case.backend): r for r in results}
    assert by[("window", "naive")].status == "ok" and by[("window", "naive")].fwd_s > 0
    assert by[("additive", "sdpa")].status == "skipped"
    assert by[("window", "auto")].chosen == "sdpa"  # reused: no extra process
    assert info["matmul_gflops"] > 0
    text = bench.table(results, {**info, "load_after": (0.0, 0.0, 0.0)})
    assert "| window | 64 | auto → sdpa |" in text
    assert "n/a (SDPA: dot-product scores only)" in text


@pytest.mark.slow
def test_bench_skips_what_cannot_fit_without_running_it(bench):
    results, _ = bench.run(
        sizes=[4096], scores=["additive"], backends=["naive"], repeat=1, heads=8, dim=64, mem_cap_gib=1.0,
        matmul_n=64, log=lambda s: None,
    )
    (r,) = results
    assert r.status == "skipped" and "does not fit" in r.note
