"""``gat-cora``: registered, the paper's early-stopping rule, a tiny deterministic and resumable run with figures.

(The quick setting itself runs in tests/experiments/test_experiments_slow.py.)"""

from __future__ import annotations

import json

import pytest

from qkv.experiments import all_experiments, gat_cora
from qkv.experiments.gat_cora import GatCoraConfig, _selected, _Stopping
from qkv.experiments.runner import run_experiment

TINY = ["dataset=karate", "seeds=1", "train.max_steps=4", "train.checkpoint_every=2"]


def test_registered_with_the_papers_settings():
    (exp,) = [e for e in all_experiments() if e.name == "gat-cora"]
    c = exp.default_config()
    assert (c.dataset, c.seeds, c.l2, c.model.heads, c.model.hidden, c.model.out_heads) == ("cora", 10, 5e-4, 8, 8, 1)
    assert (c.model.dropout, c.train.lr, c.train.patience, c.train.max_steps) == (0.6, 5e-3, 100, 1000)
    assert exp.quick_config().dataset == "karate"  # the quick run needs no download
    with pytest.raises(ValueError, match="dataset"):
        GatCoraConfig(dataset="reddit")


def test_stopping_rule_is_the_papers():
    stop = _Stopping()
    seq = [(0.5, 1.0), (0.6, 0.9), (0.6, 0.95), (0.55, 0.8), (0.5, 0.85), (0.7, 0.7)]
    out = [stop({"val_acc": a, "val_loss": lo}) for a, lo in seq]
    # restart when acc >= best or loss <= best; kept when both
    assert [o["progress"] for o in out] == [1, 2, 3, 4, 4, 5]
    assert [o["selected"] for o in out] == [1, 1, 0, 0, 0, 1]
    history = [{"split": "eval", "step": i + 1, **o} for i, o in enumerate(out)]
    assert _selected(history)["step"] == 6
    assert _selected(history[:5])["step"] == 2


def test_tiny_run_resumes_and_draws(tmp_path):
    a = run_experiment("gat-cora", overrides=TINY, out=tmp_path / "a", progress=False, log=lambda m: None)
    assert a["status"] == "ok" and a["metrics"]["paths_max_diff"] < 1e-5
    again = run_experiment("gat-cora", overrides=TINY, out=tmp_path / "a", resume=True, progress=False,
                           log=lambda m: None)
    assert again["metrics"]["test_acc"] == a["metrics"]["test_acc"]
    figures = sorted(p.name for p in (tmp_path / "a" / "figures").glob("gat_*.png"))
    assert figures == ["gat_entropy.png", "gat_neighbourhood.png"]
    saved = json.loads((tmp_path / "a" / "attention.json").read_text())
    assert len(saved["entropy"]) == 8 and len(saved["entropy"][0]) == 34
    assert all(e <= u + 1e-6 for e, u in zip(saved["entropy"][0], saved["uniform"], strict=True))  # max entropy


@pytest.mark.slow
def test_killed_then_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    """The early-stopping state is rebuilt from the checkpoint, so a resumed run picks the same epoch."""
    tiny = ["dataset=karate", "seeds=1", "train.max_steps=12", "train.checkpoint_every=4", "train.patience=3"]
    ref = run_experiment("gat-cora", overrides=tiny, out=tmp_path / "ref", progress=False, log=lambda m: None)
    measure, calls = gat_cora._measure, {"n": 0}

    def dying_measure(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # after the checkpoint of step 4, before the one of step 8
            raise KeyboardInterrupt
        return measure(*args, **kwargs)

    monkeypatch.setattr(gat_cora, "_measure", dying_measure)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("gat-cora", overrides=tiny, out=tmp_path / "run", progress=False, log=lambda m: None)
    monkeypatch.setattr(gat_cora, "_measure", measure)
    res = run_experiment("gat-cora", overrides=tiny, out=tmp_path / "run", resume=True, progress=False,
                         log=lambda m: None)
    timeless = lambda m: {k: v for k, v in m.items() if k != "cpu_s_per_run"}  # noqa: E731
    assert timeless(res["metrics"]) == timeless(ref["metrics"])
    evals = lambda d: [r for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())  # noqa: E731
                       if r.get("split") == "eval"]
    assert [(r["step"], r["progress"], r["selected"]) for r in evals(tmp_path / "run")] == \
        [(r["step"], r["progress"], r["selected"]) for r in evals(tmp_path / "ref")]


@pytest.mark.slow
def test_tiny_run_is_deterministic(tmp_path):
    tiny = [*TINY, "seeds=2"]
    a, b = (run_experiment("gat-cora", overrides=tiny, out=tmp_path / n, progress=False, log=lambda m: None)
            for n in "ab")
    for key in ("test_acc", "test_acc_std", "paths_max_diff"):
        assert a["metrics"][key] == b["metrics"][key]
