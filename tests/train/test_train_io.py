"""Atomic writes: content, no leftovers, and file modes that follow the umask (issue 8, defect 7)."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from qkv.train.checkpoint import save_checkpoint
from qkv.train.io import atomic_write_bytes, atomic_write_text, save_json


@pytest.fixture
def umask():
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_bytes(tmp_path / "sub" / "b.bin", b"y")
    save_json(tmp_path / "c.json", {"k": 1})
    save_checkpoint(tmp_path / "d.safetensors", {"w": torch.ones(1)}, {"step": 0})
    for name in ("a.txt", "sub/b.bin", "c.json", "d.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_save_json_round_trip_and_replace(tmp_path):
    path = tmp_path / "s.json"
    save_json(path, {"b": [1, 2], "a": "é"})
    save_json(path, {"b": [3], "a": None})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": None, "b": [3]}
    assert path.read_text().endswith("\n")
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
