"""The Transformer language-model benchmark (benchmarks/transformer_lm.py): options and a tiny run."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "transformer_lm.py"


@pytest.fixture(scope="module")
def bench():
    return type("Bench", (), runpy.run_path(str(SCRIPT), run_name="qkv_transformer_lm_bench"))


def test_options_are_validated(bench):
    assert bench.parse_args([]).length == 512 and bench.parse_args([]).dim == 256
    for bad in (["--dim", "0"], ["--heads", "3"], ["--device", "tpu"], ["--repeat", "x"]):
        with pytest.raises(SystemExit) as e:
            bench.parse_args(bad)
        assert e.value.code == 2, bad


@pytest.mark.slow
def test_tiny_run_measures_both_ratios_with_equal_models(bench):
    args = bench.parse_args(["--quick", "--layers", "1", "--length", "16", "--gen-tokens", "4", "--repeat", "1"])
    args.length, args.gen_tokens = 16, 4  # --quick sets its own sizes; keep this one tiny
    lines = []
    result = bench.run(args, log=lines.append)
    assert result["train"]["max_logit_diff"] < 1e-4  # the qkv model is the torch model
    assert result["generation"]["same_tokens"]
    assert result["train"]["ratio_median"] > 0 and result["generation"]["ratio"] > 0
    assert any("qkv / torch" in line for line in lines)


def test_qkv_bench_transformer_lm_runs_this_script(capsys):
    from qkv.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "transformer-lm", "--help"])
    assert e.value.code == 0
    assert "--gen-tokens" in capsys.readouterr().out  # the script's own options, not the harness's
    with pytest.raises(SystemExit) as e:
        main(["bench", "transformer-lm", "--dim", "0"])
    assert e.value.code == 2
