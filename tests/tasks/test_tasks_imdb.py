"""``qkv.tasks.imdb``: the download checks the pinned SHA-256 before extracting; the loader reads the layout."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from qkv.tasks import imdb


def _archive() -> bytes:
    """A two-review ``aclImdb`` tarball in the official layout."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in (("aclImdb/train/pos/0_9.txt", b"A fine film.<br />Loved it."),
                           ("aclImdb/train/neg/1_2.txt", b"Dull. Too long.")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    return buf.getvalue()


def test_sha256_is_pinned_to_the_official_archive():
    assert imdb.SHA256 is not None and len(imdb.SHA256) == 64 and int(imdb.SHA256, 16) >= 0


def test_download_refuses_a_mismatch_and_extracts_a_match(tmp_path, serve_bytes):
    payload = _archive()
    seen = serve_bytes(payload)
    with pytest.raises(ValueError, match="SHA-256"):
        imdb.download(tmp_path / "a")  # the pinned digest is the real archive's, not this stand-in's
    assert not (tmp_path / "a" / "aclImdb").exists()
    root = imdb.download(tmp_path / "b", sha256=hashlib.sha256(payload).hexdigest())
    assert seen == [imdb.URL, imdb.URL]
    texts, labels = imdb.load_imdb(root, "train")
    assert sorted(labels) == [0, 1] and any("Loved it" in t for t in texts)


def test_an_archive_found_in_data_dir_is_checked_before_extraction(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("QKV_DATA_DIR", raising=False)
    (tmp_path / "d").mkdir()
    payload = _archive()
    (tmp_path / "d" / "aclImdb_v1.tar.gz").write_bytes(payload)
    with pytest.raises(ValueError, match="SHA-256"):  # not the official archive
        imdb.find_imdb_dir(tmp_path / "d")
    assert not (tmp_path / "cache" / "qkv" / "imdb" / "aclImdb").exists()
    monkeypatch.setattr(imdb, "SHA256", hashlib.sha256(payload).hexdigest())
    root = imdb.find_imdb_dir(tmp_path / "d")
    assert root == tmp_path / "cache" / "qkv" / "imdb" / "aclImdb" and imdb.load_imdb(root, "train")[1] == [0, 1]
