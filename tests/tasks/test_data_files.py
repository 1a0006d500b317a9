"""Where loaders look for data, and the checked download they share."""

from __future__ import annotations

import hashlib

import pytest

from qkv.tasks import data_files


def test_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data_files.cache_dir("babi") == tmp_path / "qkv" / "babi"


def test_search_roots_order_subdirs_and_errors(tmp_path, monkeypatch):
    given, env = tmp_path / "given", tmp_path / "env"
    given.mkdir()
    env.mkdir()
    monkeypatch.setenv("QKV_DATA_DIR", str(env))
    assert data_files.search_roots(given, subdirs=("squad",)) == [given, given / "squad", env, env / "squad"]
    assert data_files.search_roots(None) == [env]
    monkeypatch.delenv("QKV_DATA_DIR")
    assert data_files.search_roots(None) == []
    (given / "x.txt").write_text("a file")
    assert data_files.search_roots(given / "x.txt") == []  # a file is the loader's to take, not a root
    with pytest.raises(FileNotFoundError, match=r"data_dir.*missing"):
        data_files.search_roots(tmp_path / "missing")


def test_fetch_checks_the_digest(tmp_path):
    payload = b"qa1 single supporting fact"
    source = tmp_path / "file.bin"
    source.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    url = source.as_uri()
    assert data_files.fetch(url, sha256=digest) == payload
    assert data_files.fetch(url, sha256=digest.upper()) == payload
    assert data_files.fetch(url, sha256=None) == payload  # digest unknown: taken as is
    with pytest.raises(ValueError, match=r"SHA-256 is .* expected 00"):
        data_files.fetch(url, sha256="00" * 32)
