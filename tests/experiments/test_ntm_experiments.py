"""The NTM experiments: registered, the held-out and validation sets (training distribution, separate seeds), a tiny
run end to end (figures, the exercise 8-5 page; slow). The quick runs against their quick targets are in
``test_experiments_slow.py``."""

from __future__ import annotations

import json
import math

import pytest
import torch

from qkv.experiments import all_experiments
from qkv.experiments.ntm_copy import AlgorithmicDataConfig, _training_batches, memory_compare_notes
from qkv.experiments.registry import get
from qkv.experiments.runner import redraw_figures, run_experiment

NAMES = ("ntm-copy", "ntm-repeat-copy", "ntm-associative-recall")

TINY = {
    "ntm-copy": ["data.width=3", "data.max_size=3", "data.test_sizes=1,4,6", "data.test_count=4",
                 "data.eval_count=2", "data.trace_size=3", "ntm.controller_dim=8", "ntm.memory_slots=8",
                 "ntm.memory_width=4", "lstm.hidden_dim=8", "lstm.layers=1", "train.max_steps=6",
                 "train.batch_size=4", "train.eval_every=3", "lstm_train.max_steps=3", "lstm_train.batch_size=4",
                 "lstm_train.eval_every=3"],
}
TINY["ntm-repeat-copy"] = [*TINY["ntm-copy"], "data.max_repeats=2", "data.curriculum=12"]
TINY["ntm-associative-recall"] = [*[o for o in TINY["ntm-copy"] if not o.startswith("data.test_sizes")],
                                  "data.min_size=2", "data.item_len=1", "data.test_sizes=2,4,6"]


def test_registered():
    names = {e.name for e in all_experiments()}
    assert set(NAMES) <= names


def test_validation_and_heldout_sets_follow_the_training_distribution():
    """Repeat copy: every training length, repeat counts spread over min..max (not the test count), the requested
    number of sequences, and different sequences for different seeds (validation vs held-out)."""
    d = AlgorithmicDataConfig(width=4, min_size=1, max_size=3, min_repeats=1, max_repeats=3, test_repeats=3,
                              test_sizes=(1, 4))
    batches = _training_batches("repeat_copy", d, 40, seed=101)
    assert sum(b.inputs.shape[0] for b in batches) == 3 * 40
    seen = set()
    for b in batches:
        L = int(b.mask[0].logical_not().sum()) - 1  # input steps: L vectors and the count step
        n = round(float(b.inputs[0, L, -1]) * d.repeat_scale)
        assert b.inputs.shape[1] == L + 1 + n * L + 1
        seen.add((L, n))
    assert seen == {(L, n) for L in (1, 2, 3) for n in (1, 2, 3)}
    other = _training_batches("repeat_copy", d, 40, seed=20011)
    assert not torch.equal(torch.cat([b.inputs[:, :1] for b in batches]), torch.cat([b.inputs[:, :1] for b in other]))
    copy = _training_batches("copy", d, 5, seed=101)  # one repeat count: one batch per length
    assert [b.inputs.shape for b in copy] == [(5, 2 * L + 1, 5) for L in (1, 2, 3)]


def test_a_bad_curriculum_is_refused_with_its_name():
    with pytest.raises(ValueError, match=r"data\.curriculum must .* got -1"):
        AlgorithmicDataConfig(curriculum=-1)
    with pytest.raises(ValueError, match=r"data\.curriculum must .* got 0\.5"):  # a count, not a fraction
        AlgorithmicDataConfig(curriculum=0.5)
    with pytest.raises(ValueError, match=r"data\.curriculum_on must .* got 'length'"):
        AlgorithmicDataConfig(curriculum=500, curriculum_on="length")


def _check_run(name, out, summary):
    assert summary["status"] == "ok", summary["notes"]
    m = summary["metrics"]
    data = json.loads((out / "ntm_results.json").read_text())
    hi = data["train_sizes"][1]
    width = 3  # TINY's data.width
    for v in ("ntm", "lstm"):
        assert math.isfinite(m[f"{v}_cost_bits"]) and m[f"{v}_cost_bits"] > 0
        # wrong bits per sequence cannot exceed the scored bits of the longest training sequence
        assert 0 <= m[f"{v}_bit_errors"] <= (hi * 2 + 1) * (width + 1)
        assert math.isfinite(m[f"{v}_bit_errors_long"])
    assert m["ntm_gain"] == pytest.approx(m["lstm_bit_errors"] - m["ntm_bit_errors"])
    assert m["ntm_gain_long"] == pytest.approx(m["lstm_bit_errors_long"] - m["ntm_bit_errors_long"])
    figures = {f["path"] for f in summary["figures"]}
    task = get(name).task
    for fig in (f"{task}_cost_vs_sequences.png", f"{task}_cost_vs_length.png", f"{task}_trace.png"):
        assert f"figures/{fig}" in figures and (out / "figures" / fig).stat().st_size > 0
    assert [c["sequences"] for c in data["curves"]["ntm"]] == [12, 24]  # evaluated every 3 steps of 4 sequences
    assert len(data["trace"]["write_weights"][0]) == len(data["trace"]["inputs"])  # (T, N) per head


@pytest.mark.slow
def test_tiny_copy_run_end_to_end_with_the_memory_compare_page(tmp_path):
    """The runner, figures and report end to end; the exercise 8-5 page fills in MemN2N once its run exists."""
    out = tmp_path / "tour" / "ntm-copy"
    summary = run_experiment("ntm-copy", overrides=TINY["ntm-copy"], out=out, progress=False, log=lambda m: None)
    _check_run("ntm-copy", out, summary)
    assert "figures/memory_compare.png" in {f["path"] for f in summary["figures"]}
    notes = "\n".join(summary["notes"])
    assert "def address(" in notes and "def write(" in notes  # the NTM's read and write, from the source
    assert "Exercise 8-5" in {t["title"].split(":")[0] for t in summary["tables"]}
    before = (out / "figures" / "memory_compare.png").read_bytes()
    other = tmp_path / "tour" / "memn2n-babi" / "figures"
    other.mkdir(parents=True)
    from qkv.viz.mpl import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow([[0, 1], [1, 0]])
    fig.savefig(other / "hop_attention.png")
    plt.close(fig)
    experiment = get("ntm-copy")
    redraw_figures(experiment, out, experiment.default_config())
    assert (out / "figures" / "memory_compare.png").read_bytes() != before


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ntm-repeat-copy", "ntm-associative-recall"])
def test_tiny_run_end_to_end(name, tmp_path, monkeypatch):
    from qkv.experiments import ntm_copy

    made = []  # the curriculum of each model's stream: the NTM's (repeat copy: TINY's 12), never the LSTM's

    class Recorded(ntm_copy.AlgorithmicStream):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.curriculum)

    monkeypatch.setattr(ntm_copy, "AlgorithmicStream", Recorded)
    summary = run_experiment(name, overrides=TINY[name], out=tmp_path, progress=False, log=lambda m: None)
    _check_run(name, tmp_path, summary)
    assert made == ([12, 0] if name == "ntm-repeat-copy" else [0, 0])


def test_a_curriculum_longer_than_the_training_stream_is_refused(tmp_path):
    from qkv.experiments.config import ConfigError

    with pytest.raises(ConfigError, match=r"data\.curriculum \(25 sequences\) is longer .* 6 x 4"):
        run_experiment("ntm-repeat-copy", overrides=[*TINY["ntm-repeat-copy"], "data.curriculum=25"], out=tmp_path,
                       progress=False, log=lambda m: None)


def test_memory_compare_notes_quote_both_models_read_and_write():
    notes = memory_compare_notes()
    assert any(n.startswith("MemN2N — the read") and "def forward(" in n for n in notes)
    assert any(n.startswith("MemN2N — the write") and "def memories(" in n for n in notes)
    assert any("def address(" in n for n in notes) and any("def write(" in n for n in notes)

