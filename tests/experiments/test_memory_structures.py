"""``memory-structures``: registered, the models and measures, a tiny end-to-end run (the quick run and its targets:
``tests/experiments/test_experiments_slow.py``)."""

from __future__ import annotations

import pytest
import torch

from qkv.experiments import all_experiments
from qkv.experiments.memory_structures import (
    MODELS,
    MemoryStructuresConfig,
    answer_8_4,
    build,
    logits,
    measure,
)
from qkv.experiments.runner import run_experiment
from qkv.tasks.transduction import make_transduction


def test_registered_and_config_checked():
    assert "memory-structures" in {e.name for e in all_experiments()}
    with pytest.raises(ValueError, match="models"):
        MemoryStructuresConfig(models=("deque",))
    with pytest.raises(ValueError, match="test_max_length"):
        MemoryStructuresConfig(max_length=10, test_max_length=10)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_maps_inputs_to_logits(name):
    config = MemoryStructuresConfig(vocab_size=4, max_length=2, test_max_length=3, controller_dim=8, memory_dim=4,
                                    lstm_hidden_dim=8, ntm_slots=8, ntm_width=4)
    torch.manual_seed(0)
    model = build(name, config)
    x = torch.zeros(2, 5, 5)
    out = model(x)
    y = out if name == "lstm" else out.output  # the memories return an output object, the LSTM its logits
    assert y.shape == (2, 5, 4)
    torch.testing.assert_close(logits(model, x), y)


def test_measure_counts_exact_matches_and_symbols():
    data = make_transduction("copy", 6, min_length=1, max_length=4, vocab_size=3,
                             generator=torch.Generator().manual_seed(0))

    class Oracle(torch.nn.Module):  # emits the targets, except one wrong symbol in sequence 0
        def forward(self, x):
            t = data.targets.clamp(min=0).clone()
            first = int(torch.nonzero(data.scored[0])[0, 0])
            t[0, first] = (t[0, first] + 1) % 3
            return torch.nn.functional.one_hot(t, 3).float()

    r = measure(Oracle(), data, max_length=4)
    n0 = int(data.lengths[0])
    assert r["seq_acc"] == pytest.approx(5 / 6)
    assert r["sym_acc"] == pytest.approx(1 - 1 / int(data.lengths.sum()))
    assert r["by_length"][n0] < 1 and r["long_seq_acc"] != r["long_seq_acc"]  # no long sequences: NaN


def test_answer_cites_the_numbers():
    results = {"reverse": {"stack": {"long_seq_acc": 0.97, "seq_acc": 1.0}, "lstm": {"long_seq_acc": 0.01,
                                                                                      "seq_acc": 0.8}}}
    text = " ".join(answer_8_4(results, MemoryStructuresConfig()))
    assert "stack 0.970" in text and "lstm 0.010" in text and "not run" in text


def test_tiny_run_end_to_end(tmp_path):
    summary = run_experiment("memory-structures", overrides=[
        "tasks=reverse", "models=stack,lstm", "max_length=2", "test_max_length=4", "train_sequences=40",
        "test_sequences=20", "train.max_steps=3", "train.eval_every=3", "train.batch_size=8", "controller_dim=8",
        "memory_dim=4", "lstm_hidden_dim=8", "ntm_slots=9"], out=tmp_path, progress=False, log=lambda m: None)
    assert summary["status"] == "ok" and "reverse/stack/long_seq_acc" in summary["metrics"]
    figures = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert {"memory_structures_length.png", "memory_structures_reverse_stack.png"} <= figures
    assert any("Exercise 8-4" in note for note in summary["notes"])
    assert summary["tables"][0]["rows"][0][:2] == ["reverse", "stack"]



@pytest.mark.parametrize("training", [True, False])
def test_the_trace_example_keeps_the_models_mode(training):
    from qkv.experiments.memory_structures import _trace_example  # the figure's helper: it must not flip the mode

    data = make_transduction("reverse", 2, min_length=2, max_length=2, vocab_size=3,
                             generator=torch.Generator().manual_seed(0))
    config = MemoryStructuresConfig(vocab_size=3, max_length=2, test_max_length=3, controller_dim=4, memory_dim=3)
    model = build("stack", config).train(training)
    ex = _trace_example(model, data, 0)
    assert model.training is training and len(ex["push"]) == 5
