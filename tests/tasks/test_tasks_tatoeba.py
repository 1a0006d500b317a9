"""The Tatoeba fra.txt loader: format checks, search order, zip extraction, download verification."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest

from qkv.tasks import tatoeba

LINES = [
    "Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #1158250 (Wittydev)",
    "Hi.\tSalut !\tCC-BY 2.0 (France) Attribution: tatoeba.org #538123 (CM) & #509819 (Aiji)",
    "Run!\tCours !",
    "Run!\tCourez !",
]


def _fra(tmp_path, lines=LINES, name="fra.txt"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_pairs_two_and_three_columns_and_truncated_tail(tmp_path):
    path = _fra(tmp_path, [*LINES, "They did it again."])  # truncated last line, no tab
    assert tatoeba.load_pairs(path, min_valid_fraction=0.5) == [
        ("Go.", "Va !"), ("Hi.", "Salut !"), ("Run!", "Cours !"), ("Run!", "Courez !")]


def test_wrong_format_is_named(tmp_path):
    path = _fra(tmp_path, ["just some text", "without any tabs", "at all"], name="notes.txt")
    with pytest.raises(tatoeba.TatoebaFormatError, match="does not look like Tatoeba"):
        tatoeba.load_pairs(path)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(tatoeba.TatoebaFormatError, match="not UTF-8"):
        tatoeba.load_pairs(binary)


def test_search_order_data_dir_env_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("QKV_DATA_DIR", raising=False)
    assert tatoeba.find_fra_txt(None) is None
    (tmp_path / "d").mkdir()
    assert tatoeba.find_fra_txt(tmp_path / "d") is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tatoeba.find_fra_txt(tmp_path / "missing")
    in_dir = _fra(tmp_path / "d")
    assert tatoeba.find_fra_txt(tmp_path / "d") == in_dir
    (tmp_path / "e").mkdir()
    monkeypatch.setenv("QKV_DATA_DIR", str(tmp_path / "e"))
    env_file = _fra(tmp_path / "e")
    assert tatoeba.find_fra_txt(None) == env_file
    assert "--data-dir PATH" in tatoeba.missing_data_message(None)
    assert "download=true" in tatoeba.missing_data_message(None)


def _zip_bytes(lines=LINES) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fra.txt", "\n".join(lines) + "\n")
        zf.writestr("_about.txt", "about")
    return buf.getvalue()


def test_zip_in_data_dir_is_extracted_to_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "fra-eng.zip").write_bytes(_zip_bytes())
    path = tatoeba.find_fra_txt(tmp_path / "d")
    assert path == tmp_path / "cache" / "qkv" / "tatoeba-fra-eng" / "fra.txt"
    assert len(tatoeba.load_pairs(path)) == 4


def test_download_verifies_checksum_and_extracts(tmp_path, serve_bytes):
    data = _zip_bytes()
    seen = serve_bytes(data)
    with pytest.raises(ValueError, match="SHA-256"):
        tatoeba.download(tmp_path / "c1", sha256="0" * 64)
    assert not (tmp_path / "c1" / "fra.txt").exists()
    path = tatoeba.download(tmp_path / "c2", sha256=hashlib.sha256(data).hexdigest())
    assert seen[-1] == tatoeba.URL
    assert tatoeba.load_pairs(path)[0] == ("Go.", "Va !")
    assert hashlib.sha256(data).hexdigest() in (tmp_path / "c2" / "fra-eng.zip.sha256").read_text()
