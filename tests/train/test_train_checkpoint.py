"""Checkpoint files: round trip, atomic writes, and clear errors for every kind of bad file."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from qkv.train.checkpoint import (
    CheckpointError,
    flatten_optimizer_state,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    unflatten_optimizer_state,
)
from qkv.train.io import atomic_write_text


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, {"model.w": torch.arange(6.0).reshape(2, 3), "rng.torch": torch.get_rng_state()},
                    {"step": 7, "config_hash": "abc", "history": [{"loss": 0.5}]})
    return path


def test_round_trip_tensors_and_meta(tmp_path):
    path = _write(tmp_path)
    tensors, meta = load_checkpoint(path, config_hash="abc")
    assert torch.equal(tensors["model.w"], torch.arange(6.0).reshape(2, 3))
    assert torch.equal(tensors["rng.torch"], torch.get_rng_state())
    assert meta == {"step": 7, "config_hash": "abc", "history": [{"loss": 0.5}]}
    assert read_checkpoint_meta(path)["step"] == 7


def test_atomic_write_leaves_no_temp_files_and_replaces(tmp_path):
    path = _write(tmp_path)
    save_checkpoint(path, {"model.w": torch.zeros(1)}, {"step": 8, "config_hash": "abc"})
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]
    assert read_checkpoint_meta(path)["step"] == 8


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = _write(tmp_path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("keep", [0, 5, 8, 40, -1])
def test_truncated_file(tmp_path, keep):
    path = _write(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:-3])
    with pytest.raises(CheckpointError, match=r"truncated|not a safetensors"):
        load_checkpoint(path)


def test_corrupted_header(tmp_path):
    path = _write(tmp_path)
    data = bytearray(path.read_bytes())
    data[10:20] = b"\xff" * 10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", 12) + b"not json at!" + b"\0" * 100)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.ones(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a qkv checkpoint"):
        load_checkpoint(path)


def test_other_config_hash(tmp_path):
    path = _write(tmp_path)
    with pytest.raises(CheckpointError, match="different config"):
        load_checkpoint(path, config_hash="zzz")


def test_pickle_file_is_rejected_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Evil()))
    torch_file = tmp_path / "torch.safetensors"
    torch.save({"w": torch.ones(1)}, torch_file)
    for p in (path, torch_file):
        with pytest.raises(CheckpointError):
            load_checkpoint(p)
    assert not marker.exists()


def test_header_claims_more_tensor_data_than_present(tmp_path):
    path = tmp_path / "short.safetensors"
    header = json.dumps({"__metadata__": {"format": "qkv-checkpoint", "version": "1", "meta": "{}"},
                         "w": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_optimizer_state_round_trip():
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = flatten_optimizer_state(opt)
    meta = json.loads(json.dumps(meta))  # it must survive JSON
    opt2 = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=0.5)
    opt2.load_state_dict(unflatten_optimizer_state(tensors, meta))
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"] == 0.1
    for idx in a["state"]:
        for key in a["state"][idx]:
            assert torch.equal(a["state"][idx][key], b["state"][idx][key])


# -- integrity (issue 8, defect 2) ------------------------------------------------------------


def test_flipped_tensor_byte_is_a_checkpoint_error_naming_the_file(tmp_path):
    path = _write(tmp_path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # the last tensor's data, far from the header
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"ck\.safetensors.*damaged"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="damaged"):
        read_checkpoint_meta(path)


def test_appended_junk_and_edited_metadata_are_detected(tmp_path):
    path = _write(tmp_path)
    good = path.read_bytes()
    path.write_bytes(good + b"\0junk")
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)
    path.write_bytes(good.replace(b'\\"step\\": 7', b'\\"step\\": 8'))  # same length, valid JSON
    assert path.read_bytes() != good
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_non_finite_weights_with_a_valid_digest_are_refused(tmp_path):
    path = tmp_path / "nan.safetensors"
    save_checkpoint(path, {"model.w": torch.tensor([1.0, float("nan")])}, {"step": 1})
    assert read_checkpoint_meta(path)["step"] == 1  # the file itself is intact
    with pytest.raises(CheckpointError, match=r"nan\.safetensors.*'model\.w'.*NaN or infinite"):
        load_checkpoint(path)
    save_checkpoint(path, {"model.w": torch.tensor([float("inf")], dtype=torch.bfloat16)}, {"step": 1})
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(path)


def test_older_format_version_is_refused(tmp_path):
    path = tmp_path / "old.safetensors"
    save_file({"w": torch.ones(1)}, str(path), metadata={"format": "qkv-checkpoint", "version": "1", "meta": "{}"})
    with pytest.raises(CheckpointError, match="format version '1'"):
        load_checkpoint(path)


def test_check_permutation():
    from qkv.train.checkpoint import check_permutation

    assert torch.equal(check_permutation(torch.tensor([2, 0, 1]), 3, path="p"), torch.tensor([2, 0, 1]))
    for bad in (torch.tensor([0, 1, 3]), torch.tensor([0, 0, 1]), torch.tensor([0, 1]), torch.tensor([0.0, 1, 2]),
                torch.tensor([-1, 0, 1]), "perm"):
        with pytest.raises(CheckpointError, match=r"'p'.*not a permutation of range\(3\)"):
            check_permutation(bad, 3, path="p")
