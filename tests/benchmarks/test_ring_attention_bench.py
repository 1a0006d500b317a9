"""The ring-attention benchmark (benchmarks/ring_attention.py): options, its formulas, and a tiny run."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ring_attention.py"


@pytest.fixture(scope="module")
def bench():
    return type("Bench", (), runpy.run_path(str(SCRIPT), run_name="qkv_ring_attention_bench"))


def test_options_are_validated(bench):
    assert bench.parse_args([]).sizes == [2048, 4096, 8192]
    for bad in (["--sizes", "0"], ["--sizes", "6", "--nprocs", "4"], ["--scores", "cosine"], ["--layouts", "x"]):
        with pytest.raises(SystemExit) as e:
            bench.parse_args(bad)
        assert e.value.code == 2, bad


@pytest.mark.parametrize("layout", ["zigzag", "contiguous"])
def test_allowed_pairs_count_the_causal_plane(bench, layout):
    L, N = 24, 3
    counts = [bench.allowed_pairs(L, N, r, layout) for r in range(N)]
    assert sum(counts) == L * (L + 1) // 2  # every allowed pair belongs to exactly one rank
    if layout == "zigzag":
        assert len(set(counts)) == 1  # balanced
    else:
        assert counts == sorted(counts) and counts[-1] > 2 * counts[0]


def test_expected_bytes_formula(bench):
    # N = 4, blocks of B·H·(L/N)·(D + Dv)·4 bytes: 3 forward + 3 backward hops of (k', v), 4 of (dk', dv)
    block = 1 * 2 * 8 * (4 + 4) * 4
    assert bench.expected_bytes(B=1, H=2, L=32, N=4, key_width=4, Dv=4) == (3 + 3 + 4) * block
    assert bench.expected_bytes(B=1, H=2, L=32, N=1, key_width=4, Dv=4) == 0


@pytest.mark.slow
def test_tiny_run_measures_the_planned_communication(bench, tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "rows.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "64", "--nprocs", "1,2", "--scores",
                           "scaled_dot,additive", "--heads", "1", "--dim", "8", "--hidden", "4", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)  # spawned workers import the script by path
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 * (1 + 2 * 2)  # per score: the baseline, and 2 ranks x 2 layouts
    for r in rows:
        width = 4 if r["score"] == "additive" else 8
        assert r["bytes_sent"] == bench.expected_bytes(B=1, H=1, L=64, N=r["N"], key_width=width, Dv=8), r
        assert r["allowed_pairs"] == bench.allowed_pairs(64, r["N"], r["rank"], r["layout"] if r["N"] > 1
                                                         else "contiguous")
    assert "formula" in done.stdout
