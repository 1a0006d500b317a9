"""The IMDB movie-review sentiment dataset (Maas et al. 2011) in its ``aclImdb`` layout, split into sentences.

Shapes: ``B`` reviews, ``N`` sentences (padded), ``T`` words per sentence (padded); id 0 is padding.

Layout: ``aclImdb/{train,test}/{pos,neg}/*.txt`` (one review per file, ``<br />`` line breaks); label 1
for ``pos``, 0 for ``neg``. The archive is :data:`URL`; it is looked for in ``--data-dir`` (the
``aclImdb`` folder itself or a folder holding it or the archive), then ``$QKV_DATA_DIR``, then the
cache ``$XDG_CACHE_HOME/qkv/imdb``. :func:`download` fetches it (network access needed).

For the hierarchical attention network (Yang et al. 2016 §3.1) a review is a list of sentences:
:func:`split_sentences` breaks on ``.``, ``!`` and ``?`` (and ``<br />``), :func:`encode_documents`
pads to ``(B, N, T)`` with at most ``max_sentences`` x ``max_words``.
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

import torch
from torch import Tensor

from qkv.tasks import data_files
from qkv.tasks.vocab import Vocab, word_tokenize
from qkv.train.io import atomic_write_bytes

__all__ = ["SHA256", "URL", "cache_dir", "download", "encode_documents", "find_imdb_dir", "load_imdb",
           "split_sentences"]

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
#: SHA-256 of ``aclImdb_v1.tar.gz`` (84,125,825 bytes), as TensorFlow Datasets records it for ``imdb_reviews``
#: (its ``url_checksums``); this machine has no network to recompute it. :func:`download` refuses a mismatch.
SHA256: str | None = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/qkv/imdb`` (default ``~/.cache/qkv/imdb``)."""
    return data_files.cache_dir("imdb")


def _is_layout(path: Path) -> bool:
    return (path / "train" / "pos").is_dir() and (path / "train" / "neg").is_dir()


def find_imdb_dir(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The ``aclImdb`` folder in ``data_dir``, ``$QKV_DATA_DIR`` or the cache (extracting an archive found there).

    Raises:
        FileNotFoundError: ``data_dir`` was given but does not exist.
        ValueError: an archive found there is not the official one (its SHA-256 differs from :data:`SHA256`).
    """
    places = [*data_files.search_roots(data_dir), cache_dir()]
    for place in places:
        for candidate in (place, place / "aclImdb"):
            if _is_layout(candidate):
                return candidate
        archive = place / "aclImdb_v1.tar.gz"
        if archive.is_file():
            data_files.check_sha256(archive.read_bytes(), SHA256, what=str(archive))
            with tarfile.open(archive) as tar:
                tar.extractall(cache_dir(), filter="data")
            if _is_layout(cache_dir() / "aclImdb"):
                return cache_dir() / "aclImdb"
    return None


def load_imdb(directory: str | os.PathLike[str], split: str = "train", *,
              limit: int | None = None) -> tuple[list[str], list[int]]:
    """Reviews and labels of ``split`` (``"train"``/``"test"``), sorted by file name, negatives first.

    Args:
        directory: the ``aclImdb`` folder.
        split: ``"train"`` or ``"test"``.
        limit: at most this many reviews of each class (the first by file name).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(directory) / split
    if not (root / "pos").is_dir() or not (root / "neg").is_dir():
        raise FileNotFoundError(f"directory {directory}: no {split}/pos and {split}/neg folders (aclImdb layout)")
    texts, labels = [], []
    for label, sub in ((0, "neg"), (1, "pos")):
        files = sorted((root / sub).glob("*.txt"))[:limit]
        for f in files:
            texts.append(f.read_text(encoding="utf-8", errors="replace"))
            labels.append(label)
    return texts, labels


def split_sentences(text: str) -> list[list[str]]:
    """A review as sentences of lower-cased word tokens (breaks after ``.``/``!``/``?`` and at ``<br />``)."""
    out = []
    for chunk in _SENTENCE_END.split(_BREAK.sub("\n", text)):
        words = word_tokenize(chunk)
        if words:
            out.append(words)
    return out


def encode_documents(docs: list[list[list[str]]], vocab: Vocab, *, max_sentences: int, max_words: int) -> Tensor:
    """``(B, N, T)`` word ids of sentence-split documents, truncated to ``max_sentences`` x ``max_words``."""
    N = max(1, min(max_sentences, max((len(d) for d in docs), default=1)))
    T = max(1, min(max_words, max((len(s) for d in docs for s in d), default=1)))
    tokens = torch.zeros(len(docs), N, T, dtype=torch.long)  # (B, N, T)
    for b, doc in enumerate(docs):
        for s, words in enumerate(doc[:N]):
            ids = [vocab.stoi.get(w, vocab.unk) for w in words[:T]]
            tokens[b, s, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return tokens


def download(dest_dir: str | os.PathLike[str] | None = None, *, sha256: str | None = SHA256) -> Path:
    """Fetch :data:`URL` into ``dest_dir`` (default the cache), check its SHA-256 when known, extract it."""
    dest = Path(dest_dir) if dest_dir is not None else cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "aclImdb_v1.tar.gz"
    if not archive.exists():
        atomic_write_bytes(archive, data_files.fetch(URL, sha256=sha256, timeout=600.0))
    else:
        data_files.check_sha256(archive.read_bytes(), sha256, what=str(archive))
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / "aclImdb"
