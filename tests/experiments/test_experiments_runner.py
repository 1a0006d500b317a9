"""Running experiments into run directories; reproducibility; the tour's failure handling."""

from __future__ import annotations

import json

import pytest

from qkv.experiments import registry
from qkv.experiments.base import Experiment
from qkv.experiments.config import ConfigError
from qkv.experiments.runner import RunError, run_experiment, run_tour
from qkv.train.checkpoint import read_checkpoint_meta

TINY = ["variants=global/dot", "train_size=200", "valid_size=20", "test_size=30", "model.hidden=16",
        "model.embed_dim=8", "train.max_steps=20", "train.eval_every=10", "train.checkpoint_every=10",
        "train.batch_size=16"]
QUIET = dict(progress=False, log=lambda m: None)


def test_run_directory_layout_and_reproducibility(tmp_path):
    a = run_experiment("seq2seq-attention", overrides=TINY, quick=True, out=tmp_path / "a", seed=3, **QUIET)
    b = run_experiment("seq2seq-attention", overrides=TINY, quick=True, out=tmp_path / "b", seed=3, **QUIET)
    c = run_experiment("seq2seq-attention", overrides=TINY, quick=True, out=tmp_path / "c", seed=4, **QUIET)
    assert a["metrics"] == b["metrics"]
    assert a["metrics"] != c["metrics"]
    run = tmp_path / "a"
    for name in ("config.json", "metrics.jsonl", "summary.json", "attention.json", "checkpoints/global_dot.safetensors",
                 "figures/learning_curves.png", "figures/attention_0.png"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["config"]["train"]["max_steps"] == 20
    assert cfg["config"]["variants"] == ["global/dot"]
    meta = read_checkpoint_meta(run / "checkpoints/global_dot.safetensors", config_hash=cfg["config_hash"])
    assert meta["finished"] and meta["step"] == 20
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "eval"}
    assert (run / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()


def test_existing_directory_needs_resume_or_force(tmp_path):
    run_experiment("scaled-dot", overrides=["num_queries=50", "max_log2_dk=2"], out=tmp_path, **QUIET)
    with pytest.raises(RunError, match=r"--resume.*--force"):
        run_experiment("scaled-dot", overrides=["num_queries=50", "max_log2_dk=2"], out=tmp_path, **QUIET)
    with pytest.raises(RunError, match="repeat the original options"):
        run_experiment("scaled-dot", overrides=["num_queries=60", "max_log2_dk=2"], out=tmp_path, resume=True,
                       **QUIET)
    s = run_experiment("scaled-dot", overrides=["num_queries=60", "max_log2_dk=2"], out=tmp_path, force=True,
                       **QUIET)
    assert s["status"] == "ok"


def test_bad_overrides_and_data_dir(tmp_path):
    with pytest.raises(ConfigError, match="Valid keys"):
        run_experiment("scaled-dot", overrides=["num_query=5"], out=tmp_path, **QUIET)
    with pytest.raises(ConfigError, match="variants"):
        run_experiment("seq2seq-attention", overrides=["variants=global/foo"], out=tmp_path, **QUIET)
    with pytest.raises(ConfigError, match="reads no dataset"):
        run_experiment("scaled-dot", data_dir=str(tmp_path), out=tmp_path, **QUIET)


def test_tour_records_failures_and_goes_on(tmp_path):
    class Broken(Experiment):
        name = "zz-broken-for-test"
        description = "always fails"
        Config = type(registry.get("scaled-dot").default_config())

        def quick_config(self):
            return registry.get("scaled-dot").quick_config()

        def run(self, config, ctx):
            raise RuntimeError("boom")

    registry.register(Broken)
    try:
        summaries = run_tour(quick=True, out=tmp_path, only=["zz-broken-for-test"], **QUIET)
    finally:
        registry._REGISTRY.pop("zz-broken-for-test")
    assert summaries[0]["status"] == "failed" and "boom" in summaries[0]["notes"][0]
    assert json.loads((tmp_path / "zz-broken-for-test" / "summary.json").read_text())["status"] == "failed"


def test_scaled_dot_measurements_follow_theory(tmp_path):
    s = run_experiment("scaled-dot", overrides=["num_queries=2000", "max_log2_dk=8"], out=tmp_path, **QUIET)
    rows = s["tables"][0]["rows"]
    for d_k, var_unscaled, var_scaled, *_ in rows:
        assert var_unscaled == pytest.approx(d_k, rel=0.15)
        assert var_scaled == pytest.approx(1.0, rel=0.15)
    max_w_unscaled = [r[3] for r in rows]
    assert max_w_unscaled[-1] > max_w_unscaled[0] + 0.5  # saturation grows with d_k
    assert max(r[4] for r in rows) < 0.3  # scaled stays spread over 32 keys
    assert rows[-1][7] < rows[-1][8] / 10  # the typical unscaled gradient has collapsed (d_k = 256)


def test_translation_on_a_generated_file(tmp_path):
    words_en = ["i", "you", "we", "see", "like", "the", "cat", "dog", "house", "car"]
    words_fr = ["je", "tu", "nous", "vois", "aime", "le", "chat", "chien", "maison", "voiture"]
    import random

    rng = random.Random(0)
    lines = []
    for _ in range(600):
        idx = [rng.randrange(10) for _ in range(rng.randint(2, 4))]
        lines.append(" ".join(words_en[i] for i in idx).capitalize() + ".\t"
                     + " ".join(words_fr[i] for i in idx).capitalize() + ".\tCC-BY 2.0 (France) test")
    data = tmp_path / "data"
    data.mkdir()
    (data / "fra.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    s = run_experiment(
        "translation-fra-eng", quick=True, data_dir=str(data), out=tmp_path / "run",
        overrides=["variants=global/dot", "valid_size=20", "test_size=40", "model.hidden=32", "model.embed_dim=16",
                   "train.max_steps=150", "train.eval_every=75", "train.checkpoint_every=75", "max_pairs=0"],
        **QUIET,
    )
    assert s["status"] == "ok"
    assert s["metrics"]["bleu/global/dot"] > 20  # a word-for-word "language" is learnable in 150 steps
    assert (tmp_path / "run" / "figures" / "attention_0.png").is_file()
    skipped = run_experiment("translation-fra-eng", quick=True, data_dir=str(tmp_path / "run"),
                             out=tmp_path / "skip", offline=True, **QUIET)
    assert skipped["status"] == "skipped" and "--data-dir PATH" in skipped["notes"][0]


def test_quick_settings_are_overrides_of_the_defaults():
    from qkv.experiments.config import config_to_dict

    for experiment in registry.all_experiments():
        full, quick = config_to_dict(experiment.default_config()), config_to_dict(experiment.quick_config())

        def flat(d, prefix=""):
            return {k2: v2 for k, v in d.items()
                    for k2, v2 in (flat(v, f"{prefix}{k}.").items() if isinstance(v, dict) else [(f"{prefix}{k}", v)])}

        differ = {k for k, v in flat(quick).items() if flat(full)[k] != v}
        assert differ <= set(experiment.quick_overrides), (experiment.name, differ)


def test_quick_run_summary_checks_quick_targets(tmp_path):
    s = run_experiment("seq2seq-attention", overrides=TINY, quick=True, out=tmp_path, **QUIET)
    targets = {t["metric"]: t for t in s["targets"]}
    assert targets["min_exact_match"]["quick"] and targets["min_exact_match"]["checked"]
    assert not targets["min_exact_match_global"]["quick"] and not targets["min_exact_match_global"]["checked"]
    assert "min_exact_match" in s["metrics"]
    full = run_experiment("scaled-dot", overrides=["num_queries=50", "max_log2_dk=2"], out=tmp_path / "f", **QUIET)
    assert all(not t["quick"] and t["checked"] for t in full["targets"])


def test_data_dir_checks(tmp_path):
    from qkv.tasks import tatoeba

    with pytest.raises(ConfigError, match="does not exist"):
        run_experiment("translation-fra-eng", quick=True, data_dir=str(tmp_path / "none"), out=tmp_path / "o",
                       **QUIET)
    assert not (tmp_path / "o").exists()
    (tmp_path / "fra.txt").write_text("Go.\tVa !\n")
    assert tatoeba.check_data_dir(tmp_path) == tmp_path / "fra.txt"
    (tmp_path / "d").mkdir()
    assert tatoeba.check_data_dir(tmp_path / "d") is None
