"""A checkpoint fuzzer (issue 8): damaged files always raise CheckpointError, never load, never leak.

Each example takes a real checkpoint of the training loop and damages it: flipped bytes at
random offsets (header length, JSON header, metadata, tensor data), truncation, appended junk,
or a mix. The contract: :func:`load_checkpoint` and :func:`read_checkpoint_meta` raise
:class:`CheckpointError` naming the file, every time.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from qkv.train.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta
from qkv.train.loop import TensorBatches, TrainConfig, fit


@functools.cache
def _reference(tmp: str) -> bytes:
    import pathlib

    g = torch.Generator().manual_seed(0)
    data = TensorBatches(x=torch.randn(64, 3, generator=g), y=torch.randn(64, 1, generator=g))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    path = pathlib.Path(tmp) / "ref.safetensors"
    fit(model, data, lambda m, b: nn.functional.mse_loss(m(b["x"]), b["y"]),
        config=TrainConfig(max_steps=6, batch_size=16, eval_every=3, checkpoint_every=3),
        seed=0, evaluate=lambda m: {"loss": 1.0}, checkpoint=path, progress=False)
    return path.read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> bytes:
    raw = _reference(str(tmp_path_factory.mktemp("ckfuzz")))
    return raw


@st.composite
def damage(draw, raw: bytes) -> bytes:
    out = bytearray(raw)
    header_end = 8 + int.from_bytes(raw[:8], "little")
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip-header", "flip-data", "flip-any", "truncate", "append"]))
        if kind == "truncate" and len(out) > 0:
            out = out[: draw(st.integers(0, len(out) - 1))]
        elif kind == "append":
            out += draw(st.binary(min_size=1, max_size=64))
        elif len(out) > 0:
            lo, hi = {"flip-header": (0, min(header_end, len(out))), "flip-data": (min(header_end, len(out) - 1),
                      len(out)), "flip-any": (0, len(out))}[kind]
            if hi > lo:
                i = draw(st.integers(lo, hi - 1))
                out[i] ^= draw(st.integers(1, 255))
    return bytes(out)


def _check(tmp_path, raw: bytes, damaged: bytes) -> None:
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(damaged)
    if damaged == raw:  # two flips of the same byte can cancel out
        load_checkpoint(path)
        return
    for reader in (load_checkpoint, read_checkpoint_meta):
        with pytest.raises(CheckpointError, match=r"fuzz\.safetensors"):
            reader(path)


def _fuzz(reference, tmp_path, data):
    _check(tmp_path, reference, data.draw(damage(reference)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_checkpoints_raise_checkpoint_error(reference, tmp_path, data):
    _fuzz(reference, tmp_path, data)


@pytest.mark.slow
@settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_checkpoints_raise_checkpoint_error_many(reference, tmp_path, data):
    _fuzz(reference, tmp_path, data)
