"""The ``complexity`` experiment (exercises 8-3 and 8-1): formulas against counted FLOPs, path lengths, LSTM counts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qkv.experiments import all_experiments
from qkv.experiments.complexity import (
    LAYERS,
    SelfAttention,
    autograd_depth,
    build,
    count_flops,
    crossover,
    crossover_outside,
    formula_flops,
    lstm_parameter_count,
    path_length,
    positive_conv,
)
from qkv.experiments.runner import run_experiment


def test_registered():
    assert "complexity" in {e.name for e in all_experiments()}


@pytest.mark.parametrize("layer", LAYERS)
def test_formulas_equal_the_flops_counted_on_the_modules(layer):
    d, k = 16, 3
    torch.manual_seed(0)
    module = build(layer, d, k, 2)
    for n in (5, 24):
        assert count_flops(module, torch.randn(1, n, d)) == formula_flops(layer, n, d, k)
    # forward + backward is about 3x forward for products (two gradient products per forward product)
    total = count_flops(module, torch.randn(1, 24, d, requires_grad=True), backward=True)
    assert 2.9 <= total / formula_flops(layer, 24, d, k) <= 3.0


def test_crossover_of_attention_and_recurrence_is_n_equals_d():
    d, k = 32, 3
    ns = [8, 16, 32, 64, 128]
    ratio = [formula_flops("attention_core", n, d, k) / formula_flops("rnn", n, d, k) for n in ns]
    assert crossover(ns, ratio) == d
    assert crossover([10, 20], [0.5, 2.0]) == pytest.approx(math.sqrt(200))  # log-log interpolation
    assert crossover([10, 20], [0.1, 0.5]) is None
    assert crossover_outside([0.1, 0.5]) == "above the measured range"
    # attention already costs more at the smallest length: the crossover is not measured, whatever ns[0] is
    assert crossover([64, 128], [2.0, 4.0]) is None
    assert crossover_outside([2.0, 4.0]) == "below the measured range"
    assert crossover([32, 64], [1.0, 2.0]) == 32.0  # an exact hit at the smallest length is measured
    from qkv.experiments.complexity import Complexity

    unmeasured = {"crossover_over_d": float("nan")}  # what a run reports when crossover() is None
    assert [t.check(unmeasured) for t in Complexity.targets if t.metric == "crossover_over_d"] == [False, False]


def test_lstm_parameter_formula_is_exact():
    """Exercise 8-1 against torch, including stacked, bidirectional and projected LSTMs; the book's one-bias form."""
    for n_in, m, layers, bi, proj, bias in [(3, 5, 1, False, 0, True), (7, 4, 3, True, 0, True),
                                            (8, 6, 2, False, 3, True), (5, 9, 2, True, 4, False)]:
        torch_count = sum(p.numel() for p in nn.LSTM(n_in, m, num_layers=layers, bidirectional=bi, proj_size=proj,
                                                     bias=bias).parameters())
        assert lstm_parameter_count(n_in, m, num_layers=layers, bidirectional=bi, proj_size=proj,
                                    bias=bias) == torch_count
    assert lstm_parameter_count(10, 20, bias_vectors=1) == (20 + 10 + 1) * 20 * 4  # the book: (m + n + 1) m 4


def test_path_lengths_and_sequential_depth_measured_on_the_modules():
    d, k = 2, 3
    for n in (5, 10):
        assert path_length(lambda _l: SelfAttention(d, 1), n, d, max_layers=3) == 1
        assert path_length(lambda _l: positive_conv(d, k, 1), n, d, max_layers=n) == math.ceil((n - 1) / (k - 1))
        assert path_length(lambda l: positive_conv(d, k, k**l), n, d, max_layers=10) == math.ceil(math.log(n, k))
    rnn = nn.RNN(d, d, batch_first=True)
    depths = [autograd_depth(rnn(torch.randn(1, n, d, requires_grad=True))[0][:, -1], only="TanhBackward0")
              for n in (3, 7)]
    assert depths == [3, 7]


def test_tiny_run_end_to_end(tmp_path):
    summary = run_experiment("complexity", overrides=["lengths=8,16,32", "width=16", "repeats=1", "path_lengths=4,8",
],
                             out=tmp_path, progress=False, log=lambda m: None)
    assert summary["status"] == "ok"
    m = summary["metrics"]
    assert m["flops_max_rel_error"] == 0 and m["crossover_over_d"] == 1.0
    assert m["path_length_mismatches"] == 0 and m["sequential_mismatches"] == 0 and m["lstm_params_max_abs_error"] == 0
    assert (tmp_path / "figures" / "complexity.png").exists()

