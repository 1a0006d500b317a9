"""The shared training loop: learning, schedule, evaluation, early stopping, exact resumption."""

from __future__ import annotations

import dataclasses
import random
import re

import pytest
import torch
from torch import nn

from qkv.train.checkpoint import read_checkpoint_meta
from qkv.train.loop import TensorBatches, TrainConfig, fit, lr_at
from qkv.train.metrics_log import MetricsLog


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(200, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(200, 1, generator=g)
    return TensorBatches(x=x, y=y)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 32), nn.Dropout(0.1), nn.ReLU(), nn.Linear(32, 1))


def _loss(model, batch):
    noise = 1.0 + 1e-3 * random.random()  # exercises Python's RNG too
    return nn.functional.mse_loss(model(batch["x"]), batch["y"]) * noise


def _evaluate(data):
    @torch.no_grad()
    def evaluate(model):
        return {"loss": float(nn.functional.mse_loss(model(data.tensors["x"]), data.tensors["y"]))}

    return evaluate


CFG = TrainConfig(max_steps=60, batch_size=32, lr=1e-2, warmup_steps=5, eval_every=20, checkpoint_every=10,
                  log_every=5, monitor="loss", monitor_mode="min")


def test_training_reduces_loss():
    data = _problem()
    model = _model()
    before = _evaluate(data)(model)["loss"]
    result = fit(model, data, _loss, config=CFG, seed=0, evaluate=_evaluate(data), progress=False)
    assert result.steps == 60
    assert result.best_metric < 0.2 * before
    assert [h["step"] for h in result.history] == [20, 40, 60]


def test_schedule_warmup_and_decay():
    cfg = TrainConfig(max_steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1, schedule="cosine")
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(100, cfg) == pytest.approx(0.1)
    lin = TrainConfig(max_steps=100, lr=1.0, warmup_steps=0, min_lr_ratio=0.0, schedule="linear")
    assert lr_at(50, lin) == pytest.approx(0.5)
    const = TrainConfig(lr=0.3, warmup_steps=0, schedule="constant")
    assert lr_at(999, const) == 0.3


def test_gradient_clipping_bounds_the_update():
    data = _problem()
    big = TensorBatches(x=data.tensors["x"] * 1e3, y=data.tensors["y"] * 1e3)
    model = _model()
    w0 = [p.detach().clone() for p in model.parameters()]
    cfg = TrainConfig(max_steps=1, batch_size=32, lr=1.0, warmup_steps=0, weight_decay=0.0, grad_clip=1e-3,
                      beta1=0.0, beta2=0.0, schedule="constant")
    # AdamW normalises the step, so check the clipped gradient norm through a hook instead
    norms = []
    orig = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        params = list(params)
        total = orig(params, max_norm, *a, **k)
        norms.append(float(torch.sqrt(sum((p.grad**2).sum() for p in params))))
        return total

    torch.nn.utils.clip_grad_norm_ = spy
    try:
        fit(model, big, _loss, config=cfg, seed=0, progress=False)
    finally:
        torch.nn.utils.clip_grad_norm_ = orig
    assert norms and norms[0] <= 1e-3 * 1.0001
    assert any(not torch.equal(a, b) for a, b in zip(w0, model.parameters(), strict=True))


def test_early_stopping_restores_best_weights():
    data = _problem()
    calls = []

    def evaluate(model):
        calls.append(1)
        # improves twice, then gets worse: patience 2 stops at the 4th evaluation
        return {"score": [0.5, 0.7, 0.6, 0.4, 0.9][len(calls) - 1]}

    cfg = TrainConfig(max_steps=100, batch_size=32, eval_every=10, checkpoint_every=1000, patience=2,
                      monitor="score", monitor_mode="max", keep_best=True)
    snapshots = {}

    def loss(model, batch):
        return _loss(model, batch)

    model = _model()
    orig_eval = evaluate

    def recording_eval(m):
        out = orig_eval(m)
        snapshots[len(calls)] = {k: v.clone() for k, v in m.state_dict().items()}
        return out

    result = fit(model, data, loss, config=cfg, seed=0, evaluate=recording_eval, progress=False)
    assert result.stopped_early and result.steps == 40
    assert result.best_metric == 0.7 and result.best_step == 20
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[2][k])


def test_missing_monitor_metric_is_a_clear_error():
    data = _problem()
    cfg = TrainConfig(max_steps=10, eval_every=5, monitor="accuracy")
    with pytest.raises(ValueError, match=r"train\.monitor='accuracy'"):
        fit(_model(), data, _loss, config=cfg, seed=0, evaluate=_evaluate(data), progress=False)


def test_nan_loss_is_reported():
    data = _problem()
    with pytest.raises(FloatingPointError, match="step 0"):
        fit(_model(), data, lambda m, b: torch.tensor(float("nan"), requires_grad=True),
            config=TrainConfig(max_steps=3), seed=0, progress=False)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"train\.max_steps"):
        TrainConfig(max_steps=0)
    with pytest.raises(ValueError, match=r"train\.schedule"):
        TrainConfig(schedule="step")  # type: ignore[arg-type]


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    data = _problem()
    random.seed(123)
    ref_model = _model()
    ref_log = MetricsLog(tmp_path / "ref.jsonl")
    ref = fit(ref_model, data, _loss, config=CFG, seed=1, evaluate=_evaluate(data),
              checkpoint=tmp_path / "ref.safetensors", metrics=ref_log, config_hash="h", progress=False)

    count = {"n": 0}

    def dying_loss(model, batch):
        count["n"] += 1
        if count["n"] == 37:  # after the checkpoint of step 30, before the one of step 40
            raise KeyboardInterrupt
        return _loss(model, batch)

    ck = tmp_path / "run.safetensors"
    log = MetricsLog(tmp_path / "run.jsonl")
    random.seed(123)  # the interrupted run starts exactly like the reference
    with pytest.raises(KeyboardInterrupt):
        fit(_model(), data, dying_loss, config=CFG, seed=1, evaluate=_evaluate(data), checkpoint=ck,
            metrics=log, config_hash="h", progress=False)
    meta = read_checkpoint_meta(ck)
    assert meta["step"] == 30 and not meta["finished"]
    assert max(r["step"] for r in log.read()) == 35  # records past the checkpoint exist before resuming

    torch.manual_seed(999)
    random.seed(999)  # the resuming process's RNG history differs; the checkpoint must restore it
    resumed_model = _model(seed=5)  # different initial weights: the checkpoint must overwrite them
    res = fit(resumed_model, data, _loss, config=CFG, seed=1, evaluate=_evaluate(data), checkpoint=ck,
              metrics=log, config_hash="h", resume=True, progress=False)
    assert res.resumed_from == 30
    assert res.history == ref.history
    assert res.best_metric == ref.best_metric
    for (k, a), b in zip(ref_model.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert log.read() == ref_log.read()

    # resuming a finished run only restores the final weights
    again = _model(seed=7)
    res2 = fit(again, data, _loss, config=CFG, seed=1, evaluate=_evaluate(data), checkpoint=ck, metrics=log,
               config_hash="h", resume=True, progress=False)
    assert res2.history == ref.history
    for a, b in zip(ref_model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_resume_refuses_another_variants_checkpoint(tmp_path):
    from qkv.train.checkpoint import CheckpointError

    data = _problem()
    cfg = TrainConfig(max_steps=10, batch_size=32, eval_every=5, checkpoint_every=5)
    ck = tmp_path / "c.safetensors"
    fit(_model(), data, _loss, config=cfg, seed=0, evaluate=_evaluate(data), checkpoint=ck, variant="a",
        config_hash="h", progress=False)
    with pytest.raises(CheckpointError, match="belongs to variant 'a'"):
        fit(_model(), data, _loss, config=cfg, seed=0, evaluate=_evaluate(data), checkpoint=ck, variant="b",
            config_hash="h", resume=True, progress=False)


def test_progress_bar_shows_eta(capsys):
    data = _problem()
    fit(_model(), data, _loss, config=TrainConfig(max_steps=30, eval_every=30), seed=0, evaluate=_evaluate(data),
        progress=True, desc="demo")
    err = capsys.readouterr().err
    assert "demo" in err and re.search(r"\d\d:\d\d<\d\d:\d\d", err)  # elapsed<remaining


def _interrupted_checkpoint(tmp_path):
    """A checkpoint of step 30 of a run killed at step 37 (as in the resume test above)."""
    data = _problem()
    count = {"n": 0}

    def dying_loss(model, batch):
        count["n"] += 1
        if count["n"] == 37:
            raise KeyboardInterrupt
        return _loss(model, batch)

    ck = tmp_path / "run.safetensors"
    with pytest.raises(KeyboardInterrupt):
        fit(_model(), data, dying_loss, config=CFG, seed=1, evaluate=_evaluate(data), checkpoint=ck,
            config_hash="h", progress=False)
    return data, ck


@pytest.mark.parametrize("perm", [torch.tensor([5000] * 200), torch.arange(199), torch.arange(200).flip(0) - 1])
def test_damaged_data_order_is_a_checkpoint_error(tmp_path, perm):
    from qkv.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    data, ck = _interrupted_checkpoint(tmp_path)
    tensors, meta = load_checkpoint(ck)
    tensors["data.perm"] = perm  # rewritten with a valid digest: only the range check can catch it
    save_checkpoint(ck, tensors, meta)
    with pytest.raises(CheckpointError, match=r"run\.safetensors.*'data\.perm'.*not a permutation"):
        fit(_model(), data, _loss, config=CFG, seed=1, evaluate=_evaluate(data), checkpoint=ck, config_hash="h",
            resume=True, progress=False)


def test_flipped_byte_in_a_finished_checkpoint_fails_resume(tmp_path):
    from qkv.train.checkpoint import CheckpointError

    data = _problem()
    ck = tmp_path / "done.safetensors"
    fit(_model(), data, _loss, config=CFG, seed=1, evaluate=_evaluate(data), checkpoint=ck, config_hash="h",
        progress=False)
    raw = bytearray(ck.read_bytes())
    raw[len(raw) // 2 + 400] ^= 0x10
    ck.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"done\.safetensors.*damaged"):
        fit(_model(), data, _loss, config=CFG, seed=1, evaluate=_evaluate(data), checkpoint=ck, config_hash="h",
            resume=True, progress=False)


def test_plain_progress_lines_when_not_a_terminal(capsys):
    data = _problem()
    fit(_model(), data, _loss, config=TrainConfig(max_steps=200, eval_every=100, log_every=10), seed=0,
        evaluate=_evaluate(data), progress=True, desc="quiet")
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "\r" not in err and 3 <= len(lines) <= 6, lines
    assert lines[0].startswith("quiet: start") and lines[-1].startswith("quiet: done, step 200/200")
    assert "val_loss" in lines[-1]


def test_sharded_sampler_splits_each_epoch_between_ranks():
    from qkv.train.loop import ShardedSampler

    a = ShardedSampler(10, 3, seed=4, rank=0, world_size=2)
    b = ShardedSampler(10, 3, seed=4, rank=1, world_size=2)
    assert a.steps_per_epoch == b.steps_per_epoch == 2
    epoch_a = torch.cat([a.indices(0), a.indices(1)])
    epoch_b = torch.cat([b.indices(0), b.indices(1)])
    assert sorted(torch.cat([epoch_a, epoch_b]).tolist()) == list(range(10))
    one = ShardedSampler(10, 3, seed=4)
    assert torch.equal(torch.cat([one.indices(s) for s in range(4)]), torch.randperm(10, generator=torch.Generator()
                                                                                      .manual_seed(4)))
    with pytest.raises(ValueError, match="rank"):
        ShardedSampler(10, 3, seed=0, rank=2, world_size=2)


def test_an_ordered_source_is_taken_in_index_order_by_fit():
    from qkv.train.loop import ShardedSampler

    ordered = ShardedSampler(10, 4, seed=4, ordered=True)
    assert [ordered.indices(s).tolist() for s in range(4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [0, 1, 2, 3]]
    second = ShardedSampler(10, 2, seed=4, rank=1, world_size=2, ordered=True)  # rank 1 of 2: every other index
    assert [second.indices(s).tolist() for s in range(3)] == [[1, 3], [5, 7], [9]]
    shuffled = ShardedSampler(10, 4, seed=4)
    shuffled.indices(0)
    ordered.load_state(shuffled.state(), "ck")  # a saved permutation does not reorder an ordered source
    assert ordered.indices(1).tolist() == [4, 5, 6, 7]

    class Ordered(TensorBatches):
        ordered = True

        def __init__(self, **tensors: torch.Tensor) -> None:
            super().__init__(**tensors)
            self.seen: list[list[int]] = []

        def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
            self.seen.append(indices.tolist())
            return super().batch(indices)

    data = _problem()
    src = Ordered(**data.tensors)
    fit(_model(), src, _loss, config=dataclasses.replace(CFG, max_steps=3), seed=0, progress=False)
    n, b = len(src), CFG.batch_size
    assert src.seen == [list(range(s * b, min(n, (s + 1) * b))) for s in range(3)]


def test_only_the_main_process_writes(tmp_path):
    data = _problem()
    ck, log = tmp_path / "c.safetensors", MetricsLog(tmp_path / "m.jsonl")
    fit(_model(), data, _loss, config=CFG, seed=0, evaluate=_evaluate(data), checkpoint=ck, metrics=log,
        progress=False, main_process=False)
    assert not ck.exists() and not log.path.exists()


def test_device_and_mixed_precision_options():
    from qkv.train.loop import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match=r"train\.amp"):
        TrainConfig(amp="fp8")  # type: ignore[arg-type]
    data = _problem()
    result = fit(_model(), data, _loss, config=TrainConfig(max_steps=20, eval_every=20, amp="bf16"), seed=0,
                 evaluate=_evaluate(data), progress=False, device="auto")
    assert result.steps == 20 and result.best_metric < 20
