"""The ``text-attention`` experiment with tiny configs: end to end, determinism, resume, the IMDB path."""

from __future__ import annotations

import json

import pytest

from qkv.experiments import all_experiments
from qkv.experiments.runner import run_experiment

TINY = ["data.train_docs=40", "data.valid_docs=10", "data.test_docs=12", "data.max_sentences=3", "data.max_words=5",
        "model.embed_dim=8", "model.hidden_dim=4", "train.max_steps=3", "train.batch_size=8",
        "train.eval_every=3", "train.checkpoint_every=3", "shown=1"]


def _run(tmp_path, overrides, **kw):
    return run_experiment("text-attention", overrides=overrides, out=tmp_path, progress=False, log=lambda m: None,
                          **kw)


def test_registered():
    assert "text-attention" in {e.name for e in all_experiments()}


def test_tiny_run_end_to_end_is_deterministic_and_resumes(tmp_path):
    over = [*TINY, "variants=additive,structured,han"]
    a = _run(tmp_path / "a", over)
    assert a["status"] == "ok"
    m = a["metrics"]
    # each variant's data and initialisation come from (seed, variant): a run of one variant repeats it exactly
    b = _run(tmp_path / "b", [*TINY, "variants=structured"])["metrics"]
    assert b == {k: v for k, v in m.items() if k.startswith("structured/") or k == "chance_precision"}
    for v in ("additive", "structured", "han"):
        assert 0 <= m[f"{v}/acc"] <= 1 and 0 <= m[f"{v}/precision"] <= 1
    assert 0 <= m["han/sentence_precision"] <= 1 and 0 < m["chance_precision"] < 1
    again = _run(tmp_path / "a", over, resume=True)
    assert again["metrics"] == m
    html = (tmp_path / "a" / "figures" / "text_attention.html").read_text()
    assert html.count("<span class=\"w\"") > 10 and "rgba(" in html and "<u>" in html
    assert (tmp_path / "a" / "figures" / "text_attention.png").exists()
    blocks = json.loads((tmp_path / "a" / "text_attention.json").read_text())["blocks"]
    assert [len(w) for w in blocks[0]["weights"]] == [len(s) for s in blocks[0]["sentences"]]


def test_checkpoints_are_chosen_on_validation_documents_never_on_test(tmp_path, monkeypatch):
    import qkv.experiments.text_attention as ta

    seen = []
    original = ta._measure

    def recording(model, docs, variant):
        seen.append(len(docs))
        return original(model, docs, variant)

    monkeypatch.setattr(ta, "_measure", recording)
    summary = _run(tmp_path, [*TINY, "variants=additive", "train.eval_every=1"])
    assert summary["status"] == "ok"
    assert seen[:-1] and set(seen[:-1]) == {10}  # every evaluation during training: the 10 validation documents
    assert seen[-1] == 12  # the reported measurement: the 12 test documents


def test_planted_validation_documents_leave_train_and_test_unchanged():
    from qkv.experiments.text_attention import TextDataConfig, _planted

    a_train, a_valid, a_test = _planted(TextDataConfig(train_docs=30, valid_docs=5, test_docs=7), seed=1)
    b_train, b_valid, b_test = _planted(TextDataConfig(train_docs=30, valid_docs=9, test_docs=7), seed=1)
    assert (a_train.tokens == b_train.tokens).all() and (a_test.tokens == b_test.tokens).all()
    assert (len(a_valid), len(b_valid)) == (5, 9)
    with pytest.raises(ValueError, match=r"data\.valid_docs"):
        TextDataConfig(valid_docs=1)


@pytest.mark.slow  # ~8 s: every other variant, and the topic corpus
def test_tiny_run_other_variants_and_topics(tmp_path):
    s = _run(tmp_path, [*TINY, "variants=mean,scaled-dot,multidim", "data.kind=topic"])
    assert s["status"] == "ok" and "mean/precision" not in s["metrics"] and "multidim/precision" in s["metrics"]


def test_imdb_path_on_a_tiny_aclimdb_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for split in ("train", "test"):
        for sub, text in (("pos", "Great film. Loved it!"), ("neg", "Bad film.<br />Hated it.")):
            d = tmp_path / "data" / "aclImdb" / split / sub
            d.mkdir(parents=True)
            for i in range(3):
                (d / f"{i}_1.txt").write_text(text)
    s = _run(tmp_path / "run", [*TINY, "variants=han"], data_dir=str(tmp_path / "data"))
    assert s["status"] == "ok" and set(s["metrics"]) == {"han/acc"}


def test_bad_variant_is_named():
    with pytest.raises(ValueError, match="variants"):
        _run(None, ["variants=max-pool"])
