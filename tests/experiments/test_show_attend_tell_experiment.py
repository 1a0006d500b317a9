"""The show-attend-tell experiment: alignment and chance by hand, a tiny run's determinism and resume."""

from __future__ import annotations

import json

import pytest
import torch

from qkv.experiments import all_experiments
from qkv.experiments.runner import run_experiment
from qkv.experiments.show_attend_tell import alignment, gradient_variance, majority_token_accuracy
from qkv.models.show_attend_tell import ShowAttendTell
from qkv.tasks.digit_captions import DigitCaptions

TINY = ["data.train_canvases=48", "data.valid_canvases=8", "data.test_canvases=8", "data.canvas=24", "data.grid=2",
        "data.max_digits=3", "model.channels=4,4", "model.annotation_dim=8", "model.embed_dim=8",
        "model.hidden_dim=8", "model.attention_dim=4", "train.max_steps=2", "train.eval_every=2",
        "train.batch_size=16", "train_hard.max_steps=2", "train_hard.eval_every=2", "train_hard.batch_size=16",
        "variance_samples=2", "variance_batch=4", "baseline_warmup=2", "shown=2"]


def test_registered():
    assert "show-attend-tell" in {e.name for e in all_experiments()}


def _one_canvas() -> DigitCaptions:
    # two digits: boxes at rows 0-8 / cols 0-8 and rows 0-8 / cols 12-20 of a 24x24 canvas
    return DigitCaptions(images=torch.zeros(1, 1, 24, 24), tokens=torch.tensor([[1, 7, 9, 2]]),
                         lengths=torch.tensor([4]), digits=torch.tensor([[3, 5]]),
                         boxes=torch.tensor([[[0, 0, 8, 8], [0, 12, 8, 20]]]), counts=torch.tensor([2]))


def test_alignment_counts_words_whose_top_cell_touches_their_digit():
    cells = ShowAttendTell(14, image_size=24, channels=(2, 2), annotation_dim=4).cell_boxes()  # 6x6 blocks of 4 px
    data = _one_canvas()
    weights = torch.zeros(1, 3, 36)
    weights[0, 0, 1] = 1.0  # block (0, 1): pixels 0-4 x 4-8, on digit 1
    weights[0, 1, 2] = 1.0  # block (0, 2): pixels 0-4 x 8-12, between the digits: a miss
    got = alignment(weights, torch.tensor([[7, 9, 2]]), data, cells)
    assert got["alignment"] == 0.5 and got["aligned_words"] == 2
    assert got["alignment_chance"] == pytest.approx(4 / 36)  # each box touches 2 x 2 of the 36 blocks
    stopped = alignment(weights, torch.tensor([[7, 2, 0]]), data, cells)  # the caption ended after one word
    assert stopped["aligned_words"] == 1 and stopped["alignment"] == 1.0


def test_majority_token_accuracy_by_hand():
    tokens = torch.tensor([[1, 4, 5, 2, 0], [1, 4, 6, 7, 2], [1, 8, 5, 2, 0]])
    # position 1: "4" twice; 2: "5" twice; 3: eos twice; 4: eos once -> 7 of 10 real tokens
    assert majority_token_accuracy(tokens) == pytest.approx(7 / 10)


def test_the_baseline_reduces_the_measured_gradient_variance():
    torch.manual_seed(0)
    model = ShowAttendTell(14, image_size=16, attention="hard", channels=(4, 4), annotation_dim=8, embed_dim=8,
                           hidden_dim=8, attention_dim=4)
    g = torch.Generator().manual_seed(0)
    batch = {"images": torch.rand(6, 1, 16, 16, generator=g), "tokens": torch.randint(4, 14, (6, 5), generator=g)}
    got = gradient_variance(model, batch, baseline=-10.5, samples=6, seed=0)  # rewards: log p(y) ~ 4 log(1/14)
    assert got["without"] > 2 * got["with"] > 0 and got["ratio"] == got["without"] / got["with"]


def test_tiny_soft_run_end_to_end(tmp_path):  # the runner, training, metrics, figures (the hard path: below)
    summary = run_experiment("show-attend-tell", overrides=[*TINY, "variants=soft"], out=tmp_path, progress=False,
                             log=lambda m: None)
    assert summary["status"] == "ok"
    m = summary["metrics"]
    assert {"soft_exact", "soft_token_acc", "soft_alignment"} <= set(m) and "hard_exact" not in m
    assert 0 <= m["soft_alignment_chance"] <= 1
    assert (tmp_path / "figures" / "show_attend_tell_soft.png").exists()
    saved = json.loads((tmp_path / "show_attend_tell.json").read_text())
    assert len(saved["variants"]["soft"]) == 2


@pytest.mark.slow  # three tiny runs of both variants: ~15 s on a quiet machine
def test_tiny_run_is_deterministic_and_resumes(tmp_path):
    first = run_experiment("show-attend-tell", overrides=TINY, out=tmp_path / "a", progress=False, log=lambda m: None)
    assert first["status"] == "ok"
    m = first["metrics"]
    for key in ("soft_exact", "soft_alignment", "hard_exact", "hard_alignment", "variance_ratio_init",
                "variance_ratio_scratch", "variance_ratio_trained"):
        assert key in m
    assert m["variance_with_init"] > 0
    assert sorted(p.name for p in (tmp_path / "a" / "figures").glob("show_attend_tell_*.png")) == [
        "show_attend_tell_hard.png", "show_attend_tell_soft.png"]
    second = run_experiment("show-attend-tell", overrides=TINY, out=tmp_path / "b", progress=False, log=lambda m: None)
    assert second["metrics"] == m
    again = run_experiment("show-attend-tell", overrides=TINY, out=tmp_path / "a", resume=True, progress=False,
                           log=lambda m: None)
    assert again["metrics"] == m


def test_hard_init_is_checked_against_the_variants():
    from qkv.experiments.show_attend_tell import ShowAttendTellConfig

    with pytest.raises(ValueError, match="hard_init must be one of"):
        ShowAttendTellConfig(hard_init="warm")
    with pytest.raises(ValueError, match="hard_init='soft' needs the soft variant trained first"):
        ShowAttendTellConfig(variants=("hard",))
    with pytest.raises(ValueError, match="hard_init='soft'"):
        ShowAttendTellConfig(variants=("hard", "soft"))
    assert ShowAttendTellConfig(variants=("hard",), hard_init="scratch").variants == ("hard",)


@pytest.mark.parametrize("hard_init", ["soft", pytest.param("scratch", marks=pytest.mark.slow)])
def test_hard_starts_from_the_trained_soft_model_or_from_scratch(tmp_path, monkeypatch, hard_init):
    import qkv.experiments.show_attend_tell as sat

    built = {}
    original = sat._build
    seen = {}

    def recording_build(config, variant):
        model = original(config, variant)
        if variant == "hard":  # the weights as built, before the warm start
            seen["hard_built"] = {k: v.clone() for k, v in model.state_dict().items()}
        built.setdefault(variant, model)  # the first one built (the report builds another for its grid)
        return model

    monkeypatch.setattr(sat, "_build", recording_build)
    # hard trains at a negligible rate, so its trained parameters are its initial ones
    summary = run_experiment("show-attend-tell", overrides=[*TINY, f"hard_init={hard_init}", "train_hard.lr=1e-12"],
                             out=tmp_path, progress=False, log=lambda m: None)
    assert summary["status"] == "ok"
    soft, hard = built["soft"].state_dict(), built["hard"].state_dict()
    params = [name for name, _ in built["soft"].named_parameters()]
    same_as_soft = all(torch.allclose(soft[k], hard[k], atol=1e-8) for k in params)
    assert same_as_soft == (hard_init == "soft")
    if hard_init == "scratch":
        assert all(torch.allclose(seen["hard_built"][k], hard[k], atol=1e-8) for k in params)
    m = summary["metrics"]  # from scratch, the start of hard training is the fresh model
    assert (m["variance_ratio_scratch"] == m["variance_ratio_init"]) == (hard_init == "scratch")
    # the warm start's own score (hard read of the soft weights) is what the untrained-at-1e-12 hard model scores
    if hard_init == "soft":
        assert (m["hard_exact_start"], m["hard_alignment_start"]) == (m["hard_exact"], m["hard_alignment"])
    else:
        assert "hard_exact_start" not in m


def test_hard_start_is_measured_on_the_soft_weights_before_any_hard_step(tmp_path, monkeypatch):
    import qkv.experiments.show_attend_tell as sat

    built, calls = {}, []
    original_build, original_metrics = sat._build, sat.caption_metrics

    def recording_build(config, variant):
        model = original_build(config, variant)
        built.setdefault(variant, model)
        return model

    def recording_metrics(captioner, data, **kw):
        out = original_metrics(captioner, data, **kw)
        calls.append((captioner is built.get("hard"), {k: v.clone() for k, v in captioner.state_dict().items()},
                      out[0]["exact"]))
        return out

    monkeypatch.setattr(sat, "_build", recording_build)
    monkeypatch.setattr(sat, "caption_metrics", recording_metrics)
    summary = run_experiment("show-attend-tell", overrides=[*TINY, "train_hard.lr=0.05"], out=tmp_path,
                             progress=False, log=lambda m: None)
    soft = built["soft"].state_dict()
    hard_calls = [(w, exact) for is_hard, w, exact in calls if is_hard]
    first_weights, first_exact = hard_calls[0]
    assert all(torch.equal(first_weights[k], soft[k]) for k in soft)  # before any hard step
    assert summary["metrics"]["hard_exact_start"] == first_exact
    last_weights = hard_calls[-1][0]
    assert not all(torch.equal(last_weights[k], soft[k]) for k in soft)  # hard training did move the weights
