"""The generation benchmark against transformers (benchmarks/hf_generate.py): options and a tiny run."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "hf_generate.py"


@pytest.fixture(scope="module")
def bench():
    return type("Bench", (), runpy.run_path(str(SCRIPT), run_name="qkv_hf_generate_bench"))


def test_options_are_validated(bench):
    args = bench.parse_args([])
    assert (args.dim, args.layers, args.heads, args.vocab, args.new_tokens) == (768, 12, 12, 50257, 256)
    for bad in (["--dim", "0"], ["--heads", "5"], ["--new-tokens", "x"]):
        with pytest.raises(SystemExit) as e:
            bench.parse_args(bad)
        assert e.value.code == 2, bad


@pytest.mark.slow
def test_tiny_run_generates_the_same_tokens(bench):
    pytest.importorskip("transformers")
    args = bench.parse_args(["--quick"])
    args.new_tokens, args.repeat = 6, 1
    lines = []
    result = bench.run(args, log=lines.append)
    assert result["same_tokens"]
    assert result["ratio"] > 0 and set(result["tokens_per_s"]) == {"qkv", "transformers"}
    assert any("qkv / transformers" in line for line in lines)
