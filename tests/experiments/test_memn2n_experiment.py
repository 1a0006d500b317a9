"""``memn2n-babi``: registered, the paper's schedule and linear start, tiny end-to-end runs, the quick run (slow)."""

from __future__ import annotations

import json

import pytest
import torch

from qkv.experiments import all_experiments
from qkv.experiments.config import ConfigError
from qkv.experiments.memn2n_babi import (
    LinearStartModel,
    MemN2NBabi,
    MemN2NBabiConfig,
    PaperTrainConfig,
    PaperTrainer,
)
from qkv.experiments.runner import build_config, run_experiment
from qkv.memory.memn2n import MemN2N
from qkv.train.loop import TensorBatches, TrainConfig

TINY = ["tasks=1", "data=generated", "generated_train_stories=12", "generated_test_stories=4", "train.epochs=2",
        "train.ls_max_epochs=1", "model.embed_dim=8"]


def test_registered():
    assert "memn2n-babi" in {e.name for e in all_experiments()}


def _trainer(losses, *, linear_start=True, epochs=3, ls_max_epochs=3, ls_patience=1):
    torch.manual_seed(0)
    model = LinearStartModel(MemN2N(5, embed_dim=2, hops=1, memory_size=2), linear_start=linear_start)
    data = TensorBatches(x=torch.zeros(4))
    seq = iter(losses)
    paper = PaperTrainConfig(lr=0.01, ls_lr=0.005, lr_after_ls=0.02, decay_every=2, ls_max_epochs=ls_max_epochs,
                             ls_patience=ls_patience, linear_start=linear_start)
    tc = TrainConfig(max_steps=100, batch_size=4, eval_every=1, keep_best=False, warmup_steps=0)
    trainer = PaperTrainer(model, data, lambda m, b: torch.zeros(()), config=tc, seed=0, progress=False,
                           evaluate=lambda m: {"loss": next(seq)}, paper=paper, epochs=epochs, decay_every=2)
    return trainer, model


def test_linear_start_ends_when_the_validation_loss_stops_falling_then_the_paper_schedule_runs():
    trainer, model = _trainer([3.0, 2.0, 2.5, 9, 9, 9, 9, 9])
    lrs = []
    for epoch in range(1, 7):
        lrs.append(trainer.lr())
        trainer.state.step = epoch  # one step per epoch here
        trainer.evaluate()
        if epoch < 3:
            assert bool(model.linear)
    assert not bool(model.linear) and int(model.start) == 3  # epoch 3's loss rose: softmax reinserted
    assert lrs == [0.005, 0.005, 0.005, 0.02, 0.02, 0.01]  # LS rate, then lr_after_ls halved every 2 epochs
    assert trainer.state.stopped  # 3 epochs after LS


def _epochs_in_linear_start(losses, **options):
    """Feed the validation losses one epoch at a time; the number of epochs LS lasted."""
    trainer, model = _trainer(losses, **options)
    for epoch in range(1, len(losses) + 1):
        trainer.state.step = epoch  # one step per epoch here
        trainer.evaluate()
        if not bool(model.linear):
            assert int(model.start) == epoch
            return epoch
    return None


def test_linear_start_patience_ignores_a_noisy_epoch():
    # the real bAbI task 6 with patience 1: LS ended at epoch 5 on one noisy epoch, and the run stayed at chance
    noisy = [1.03, 0.75, 0.72, 0.71, 0.76, 0.70, 0.69, 0.72, 0.73, 0.74, 0.75, 0.76, 0.77, 0.78]
    assert _epochs_in_linear_start(noisy, ls_max_epochs=20, ls_patience=1) == 5
    # patience 3: epoch 5's rise is forgiven (epoch 6 is a new low); LS ends after 3 epochs without one (8, 9, 10)
    assert _epochs_in_linear_start(noisy, ls_max_epochs=20, ls_patience=3) == 10
    assert _epochs_in_linear_start(noisy, ls_max_epochs=7, ls_patience=3) == 7  # ls_max_epochs still caps it
    assert _epochs_in_linear_start([5.0, 4.0, 3.0, 2.0, 1.0], ls_max_epochs=9, ls_patience=9) is None
    assert PaperTrainConfig().ls_patience > 1
    with pytest.raises(ValueError, match="ls_patience"):
        PaperTrainConfig(ls_patience=0)


def test_linear_start_lasts_at_most_ls_max_epochs_and_can_be_off():
    trainer, model = _trainer([5.0, 4.0, 3.0, 2.0])
    for epoch in range(1, 4):
        trainer.state.step = epoch
        trainer.evaluate()
    assert not bool(model.linear) and int(model.start) == 3
    trainer, model = _trainer([1.0], linear_start=False)
    assert not bool(model.linear) and trainer.lr() == 0.01


def test_config_checks():
    with pytest.raises(ValueError, match="tasks"):
        MemN2NBabiConfig(tasks=(0,))
    with pytest.raises(ConfigError, match="generated"):
        MemN2NBabi().check(build_config(MemN2NBabi(), quick=False, overrides=["data=generated", "tasks=3"]))
    with pytest.raises(ConfigError, match="data-dir"):
        MemN2NBabi().check(build_config(MemN2NBabi(), quick=False, overrides=["data_dir=/nowhere/at/all"]))


def test_tiny_run_end_to_end(tmp_path):
    summary = run_experiment("memn2n-babi", overrides=TINY, out=tmp_path, progress=False, log=lambda m: None)
    assert summary["status"] == "ok"
    m = summary["metrics"]
    assert 0 <= m["gen_error_qa1"] <= 1 and 0 <= m["gen_support_qa1"] <= 1 and "mean_error" not in m
    assert m["gen_subset_mean_error"] == m["gen_error_qa1"]
    assert (tmp_path / "figures" / "memn2n_attention.png").exists()
    items = json.loads((tmp_path / "memn2n_attention.json").read_text())["items"]
    assert items and len(items[0]["weights"]) == 3 and len(items[0]["weights"][0]) == len(items[0]["sentences"])
    rows = summary["tables"][0]["rows"]
    assert rows[0][0].startswith("qa1") and summary["tables"][0]["columns"][5] == "test error"


@pytest.mark.slow  # ~10 s
def test_tiny_joint_run_with_restarts_and_resume(tmp_path):
    overrides = [*TINY, "tasks=1,6", "mode=joint", "train.joint_epochs=1", "train.restarts=2"]
    summary = run_experiment("memn2n-babi", overrides=overrides, out=tmp_path, progress=False, log=lambda m: None)
    assert summary["status"] == "ok"
    assert {"gen_joint_error_qa1", "gen_joint_error_qa6"} <= set(summary["metrics"])
    assert "*" in summary["tables"][0]["rows"][0][8]  # the restart kept (lowest training error)
    again = run_experiment("memn2n-babi", overrides=overrides, out=tmp_path, resume=True, progress=False,
                           log=lambda m: None)
    for key in ("gen_joint_error_qa1", "gen_joint_error_qa6"):
        assert again["metrics"][key] == summary["metrics"][key]
