"""``sentence-pairs``: registered, tiny runs deterministic for a seed and resumable, figures, SICK via --data-dir."""

from __future__ import annotations

import pytest

from qkv.experiments import all_experiments
from qkv.experiments.config import ConfigError
from qkv.experiments.runner import run_experiment

TINY = ["variants=abcnn3,mpcnn-attention", "data.train_pairs=40", "data.test_pairs=20", "train.max_steps=3",
        "train.eval_every=3", "train.checkpoint_every=3", "train.batch_size=8", "model.embed_dim=6",
        "model.hidden_dim=6", "model.holistic_filters=2", "model.per_dim_filters=1", "shown_pairs=2"]
QUIET = {"progress": False, "log": lambda m: None}


def test_registered():
    assert "sentence-pairs" in {e.name for e in all_experiments()}


def test_tiny_run_resumes_to_the_same_numbers(tmp_path):
    overrides = [*TINY, "variants=abcnn3"]
    first = run_experiment("sentence-pairs", overrides=overrides, out=tmp_path / "a", **QUIET)
    assert first["status"] == "ok"
    m = first["metrics"]
    assert {"acc_abcnn3", "align_abcnn3_input", "align_abcnn3_conv", "chance_align", "embedding_align"} <= set(m)
    assert 0 < m["chance_align"] < 0.2
    assert list((tmp_path / "a" / "figures").glob("sentence_pairs_attention.png"))
    resumed = run_experiment("sentence-pairs", overrides=overrides, out=tmp_path / "a", resume=True, **QUIET)
    assert resumed["metrics"] == m


@pytest.mark.slow
def test_tiny_run_is_deterministic_for_a_seed(tmp_path):
    a = run_experiment("sentence-pairs", overrides=TINY, out=tmp_path / "a", **QUIET)
    b = run_experiment("sentence-pairs", overrides=TINY, out=tmp_path / "b", **QUIET)
    c = run_experiment("sentence-pairs", overrides=TINY, out=tmp_path / "c", seed=1, **QUIET)
    assert {"acc_mpcnn_attention", "align_mpcnn_attention_input"} <= set(a["metrics"])
    assert a["metrics"] == b["metrics"] and c["metrics"] != a["metrics"]


def test_sick_through_data_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = ["pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tSemEval_set"]
    rows += [f"{i}\ta man plays\t{b}\t{label}\t3.0\t{split}" for i, (b, label, split) in enumerate([
        ("a man plays", "ENTAILMENT", "TRAIN"), ("nobody plays", "CONTRADICTION", "TRAIN"),
        ("a dog runs", "NEUTRAL", "TRAIN"), ("a man plays", "ENTAILMENT", "TEST"), ("a cat runs", "NEUTRAL", "TEST")])]
    (data / "SICK.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    s = run_experiment("sentence-pairs", overrides=[*TINY, "data.dataset=sick", "variants=bcnn"],
                       data_dir=str(data), out=tmp_path / "run", **QUIET)
    assert s["status"] == "ok" and "acc_bcnn" in s["metrics"] and "chance_align" not in s["metrics"]
    with pytest.raises(ConfigError, match="does not exist"):
        run_experiment("sentence-pairs", overrides=TINY, data_dir=str(tmp_path / "none"), out=tmp_path / "x", **QUIET)
