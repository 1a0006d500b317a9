"""Where a real dataset's files are looked for, and how they are fetched: shared by every loader.

Each loader of a public dataset (bAbI, IMDB, Planetoid, SICK, SQuAD, Tatoeba) looks in the same
places, in the same order:

1. ``data_dir``, the ``--data-dir`` option (an error if it was given and does not exist);
2. ``$QKV_DATA_DIR``;
3. its own cache folder, ``$XDG_CACHE_HOME/qkv/<name>`` (default ``~/.cache/qkv/<name>``).

Within each of the first two places a loader may also look in a few named sub-folders
(``search_roots(data_dir, subdirs=("squad",))``). What counts as "found" (a file, a folder
layout, an archive to extract) is the loader's business. :func:`fetch` downloads a file's bytes
and checks its SHA-256 before anything is written.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = ["cache_dir", "check_sha256", "checked_data_dir", "fetch", "search_roots"]


def cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/qkv/<name>`` (default ``~/.cache/qkv/<name>``): where ``name``'s downloads go."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qkv" / name


def checked_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """``data_dir`` with ``~`` expanded, or ``None`` when not given.

    Raises:
        FileNotFoundError: ``data_dir`` was given but does not exist.
    """
    if not data_dir:
        return None
    d = Path(data_dir).expanduser()
    if not d.exists():
        raise FileNotFoundError(f"data_dir {str(d)!r} does not exist")
    return d


def search_roots(data_dir: str | os.PathLike[str] | None, *, subdirs: Sequence[str] = ()) -> list[Path]:
    """The folders to look in, in order: ``data_dir`` and ``$QKV_DATA_DIR``, each followed by its ``subdirs``.

    The cache is not included (its layout is the loader's own). A ``data_dir`` that is a file is left
    out: loaders that accept a file check :func:`checked_data_dir` themselves.

    Raises:
        FileNotFoundError: ``data_dir`` was given but does not exist.
    """
    roots = [r for r in (checked_data_dir(data_dir), os.environ.get("QKV_DATA_DIR")) if r]
    return [Path(r) / sub for r in roots if Path(r).is_dir() for sub in ("", *subdirs)]


def fetch(url: str, *, sha256: str | None, timeout: float = 60.0, user_agent: str = "qkv") -> bytes:
    """The bytes at ``url``, checked against ``sha256`` when a digest is known (lower or upper case).

    ``user_agent`` is sent as the request's ``User-Agent`` (some hosts refuse Python's default one).

    Raises:
        OSError: the download failed.
        ValueError: the SHA-256 of what arrived differs from ``sha256``; nothing is kept.
    """
    request = urllib.request.Request(url, headers={"User-Agent": user_agent})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # the loaders' fixed https URLs
        data = response.read()
    check_sha256(data, sha256, what=url)
    return data


def check_sha256(data: bytes, sha256: str | None, *, what: str) -> None:
    """Refuse ``data`` (named ``what`` in the error) unless its SHA-256 is ``sha256``; no check when it is unknown.

    Raises:
        ValueError: the digests differ.
    """
    digest = hashlib.sha256(data).hexdigest()
    if sha256 and digest != sha256.lower():
        raise ValueError(f"{what}: SHA-256 is {digest}, expected {sha256}; not using it")
