"""Training on CUDA (issue 16 §1): the Trainer moves the model, every batch and the evaluation onto the GPU,
its metrics come back as plain floats, an interrupted run resumes there exactly, and fp16 mixed precision
uses a gradient scaler. Marked ``cuda``; skipped without a GPU (where ``device="cuda"`` is refused with a
clear error: ``test_train_loop.py::test_device_and_mixed_precision_options`` and
``tests/test_cli.py::test_device_option``)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from qkv.train.loop import TensorBatches, TrainConfig, Trainer, fit
from qkv.train.metrics_log import MetricsLog

DEVICE = "cuda"
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CFG = TrainConfig(max_steps=40, batch_size=32, lr=5e-2, eval_every=10, checkpoint_every=10)


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    return TensorBatches(x=x, y=x @ torch.tensor([1.0, -2.0, 0.5, 3.0]))  # held on the CPU


def _model():
    torch.manual_seed(0)
    return nn.Linear(4, 1)


def _loss(model, batch):
    return (model(batch["x"]).squeeze(-1).float() - batch["y"]).pow(2).mean()


def _evaluate(data):
    def evaluate(model):
        assert all(p.device.type == DEVICE for p in model.parameters())
        x, y = (data.tensors[n].to(DEVICE) for n in ("x", "y"))
        return {"loss": (model(x).squeeze(-1) - y).pow(2).mean()}  # a device tensor: the Trainer makes it a float

    return evaluate


def test_model_batches_and_evaluation_live_on_the_device_and_metrics_are_floats(tmp_path):
    data, seen = _data(), []

    def loss_fn(model, batch):
        seen.append({name: t.device.type for name, t in batch.items()})
        return _loss(model, batch)

    model = _model()
    result = fit(model, data, loss_fn, config=CFG, seed=0, evaluate=_evaluate(data),
                 metrics=MetricsLog(tmp_path / "m.jsonl"), progress=False, device=DEVICE)
    assert len(seen) == 40 and all(d == {"x": DEVICE, "y": DEVICE} for d in seen)
    assert all(p.device.type == DEVICE for p in model.parameters())
    records = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    evals = [r["loss"] for r in records if r["split"] == "eval"]
    assert len(evals) == 4 and all(isinstance(x, float) for x in evals)
    assert evals[-1] < evals[0] and result.best_metric == min(evals)


def test_interrupted_gpu_run_resumes_to_the_uninterrupted_weights(tmp_path):
    data = _data()
    ref = _model()
    fit(ref, data, _loss, config=CFG, seed=1, evaluate=_evaluate(data), progress=False, device=DEVICE,
        checkpoint=tmp_path / "ref.safetensors", config_hash="h")
    count = {"n": 0}

    def dying(model, batch):
        count["n"] += 1
        if count["n"] == 27:  # after the checkpoint of step 20
            raise KeyboardInterrupt
        return _loss(model, batch)

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), data, dying, config=CFG, seed=1, evaluate=_evaluate(data), progress=False, device=DEVICE,
            checkpoint=tmp_path / "run.safetensors", config_hash="h")
    resumed = nn.Linear(4, 1)  # other initial weights: the checkpoint must overwrite them
    res = fit(resumed, data, _loss, config=CFG, seed=1, evaluate=_evaluate(data), progress=False, device=DEVICE,
              checkpoint=tmp_path / "run.safetensors", config_hash="h", resume=True)
    assert res.resumed_from == 20 and res.steps == 40
    for a, b in zip(ref.parameters(), resumed.parameters(), strict=True):
        assert b.device.type == DEVICE
        torch.testing.assert_close(a, b)


def test_fp16_mixed_precision_uses_a_gradient_scaler():
    trainer = Trainer(_model(), _data(), _loss, config=TrainConfig(max_steps=5, batch_size=32, amp="fp16"), seed=0,
                      progress=False, device=DEVICE)
    assert (trainer.scaler is not None) == (DEVICE == "cuda")
    loss, _, grad_norm, _ = trainer.step()
    assert isinstance(loss, float) and loss == loss and grad_norm == grad_norm
