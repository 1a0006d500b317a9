"""``qanet``: registered, tiny runs deterministic and resumable, the figure, bAbI and SQuAD through --data-dir."""

from __future__ import annotations

import json

import pytest

from qkv.experiments import all_experiments
from qkv.experiments.config import ConfigError
from qkv.experiments.runner import run_experiment

TINY = ["data.train_examples=40", "data.val_examples=8", "data.test_examples=12", "data.objects=2,3",
        "data.people=1,2", "model.dim=8", "model.num_heads=2", "model.model_blocks=1", "model.embed_convs=1",
        "train.max_steps=3", "train.eval_every=3", "train.checkpoint_every=3", "train.batch_size=8",
        "train.warmup_steps=0", "figure_questions=1"]
QUIET = {"progress": False, "log": lambda m: None}


def test_registered():
    assert "qanet" in {e.name for e in all_experiments()}


def test_tiny_run_resumes_to_the_same_numbers_and_draws_the_attention(tmp_path):
    first = run_experiment("qanet", overrides=TINY, out=tmp_path / "a", **QUIET)
    assert first["status"] == "ok"
    m = first["metrics"]
    assert {"exact_match", "f1", "baseline_exact_match", "baseline_f1", "em_over_baseline"} <= set(m)
    assert 0 <= m["exact_match"] <= m["f1"] <= 100
    assert (tmp_path / "a" / "figures" / "qanet_attention.png").exists()
    items = json.loads((tmp_path / "a" / "qanet_attention.json").read_text())["items"]
    assert len(items) == 1
    for it in items:  # S̄ (B, n, m) rows over the question words sum to 1
        assert len(it["c2q"]) == len(it["context"]) and len(it["c2q"][0]) == len(it["question"])
        assert all(abs(sum(row) - 1) < 1e-5 for row in it["c2q"])
    rows = first["tables"][0]["rows"]
    assert rows[-2][0] == "all" and rows[-1][0].startswith("baseline")
    resumed = run_experiment("qanet", overrides=TINY, out=tmp_path / "a", resume=True, **QUIET)
    assert resumed["metrics"] == m


@pytest.mark.slow  # ~8 s
def test_tiny_run_is_deterministic_for_a_seed(tmp_path):
    over = [*TINY, "train.max_steps=6", "data.train_examples=60"]
    a = run_experiment("qanet", overrides=over, out=tmp_path / "a", **QUIET)
    b = run_experiment("qanet", overrides=over, out=tmp_path / "b", **QUIET)
    c = run_experiment("qanet", overrides=over, out=tmp_path / "c", seed=1, **QUIET)
    assert a["metrics"] == b["metrics"]
    assert c["metrics"] != a["metrics"]


STORY = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the kitchen.
5 Mary travelled to the office.
6 Where is Daniel? \tkitchen\t4
"""


def test_babi_and_squad_through_data_dir(tmp_path):
    babi = tmp_path / "babi"
    babi.mkdir()
    (babi / "qa1_single-supporting-fact_train.txt").write_text(STORY * 10)
    s = run_experiment("qanet", overrides=[*TINY, "data.source=babi"], data_dir=str(babi), out=tmp_path / "b",
                       **QUIET)
    assert s["status"] == "ok" and "babi_exact_match" in s["metrics"] and "exact_match" not in s["metrics"]
    sq = tmp_path / "squad"
    sq.mkdir()
    ctx = "The Denver Broncos beat the Carolina Panthers in Santa Clara."
    doc = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": ctx, "qas": [
        {"id": str(i), "question": q, "answers": [{"answer_start": ctx.index(a), "text": a}]}
        for i, (q, a) in enumerate([("Who won?", "Denver Broncos"), ("Where?", "Santa Clara"),
                                    ("Who lost?", "Carolina Panthers")] * 4)]}]}]}
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (sq / name).write_text(json.dumps(doc))
    s = run_experiment("qanet", overrides=[*TINY, "data.source=squad"], data_dir=str(sq), out=tmp_path / "s", **QUIET)
    assert s["status"] == "ok" and "squad_f1" in s["metrics"]
    with pytest.raises(ConfigError, match="needs --data-dir"):
        run_experiment("qanet", overrides=[*TINY, "data.source=squad"], out=tmp_path / "x", **QUIET)
    with pytest.raises(ConfigError, match="does not exist"):
        run_experiment("qanet", overrides=TINY, data_dir=str(tmp_path / "none"), out=tmp_path / "y", **QUIET)
