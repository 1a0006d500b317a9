"""English-French sentence pairs from Tatoeba, as packaged by manythings.org (``fra-eng.zip``).

File format (``fra.txt``, UTF-8): one pair per line, tab-separated: English, French and (in
recent releases) an attribution column ``CC-BY 2.0 (France) Attribution: tatoeba.org #... (user)``.

Where the data comes from, in order:

1. ``data_dir`` (the ``--data-dir`` option): ``data_dir/fra.txt``, ``data_dir/fra-eng/fra.txt``
   or ``data_dir/fra-eng.zip``;
2. the environment variable ``QKV_DATA_DIR``, searched the same way;
3. the cache ``~/.cache/qkv/tatoeba-fra-eng/fra.txt`` (``$XDG_CACHE_HOME`` respected), filled
   by :func:`download` (``--set download=true``).

Checksum: manythings.org re-publishes the archive as Tatoeba grows, so there is no single
stable digest, and this project could not download it to compute one (no network access to
that site when this was written). :data:`SHA256` is therefore ``None`` — nothing was verified
against a published digest. :func:`download` verifies the archive when a digest is given
(``sha256=`` argument or ``QKV_TATOEBA_SHA256``), always records the digest it saw next to
the cache, and in every case :func:`load_pairs` validates the *format* of ``fra.txt`` (tab
separated, enough well-formed lines) before anything trains on it.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

from qkv.tasks import data_files
from qkv.train.io import atomic_write_bytes

__all__ = [
    "SHA256",
    "URL",
    "TatoebaFormatError",
    "cache_dir",
    "check_data_dir",
    "check_fra_txt",
    "download",
    "find_fra_txt",
    "load_pairs",
    "missing_data_message",
]

URL = "https://www.manythings.org/anki/fra-eng.zip"
#: Expected SHA-256 of ``fra-eng.zip``; ``None``: not pinned (see the module docstring).
SHA256: str | None = None
_FILE = "fra.txt"


class TatoebaFormatError(ValueError):
    """A file that should be ``fra.txt`` does not have its format."""


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/qkv/tatoeba-fra-eng`` (default ``~/.cache/qkv/tatoeba-fra-eng``)."""
    return data_files.cache_dir("tatoeba-fra-eng")


def _extract(zip_path: Path, dest: Path) -> Path:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = [n for n in zf.namelist() if Path(n).name == _FILE]
            if not names:
                raise TatoebaFormatError(f"{zip_path} holds no {_FILE} (it has {zf.namelist()[:5]})")
            data = zf.read(names[0])
    except zipfile.BadZipFile as e:
        raise TatoebaFormatError(f"{zip_path} is not a valid zip archive: {e}") from None
    atomic_write_bytes(dest, data)
    return dest


def _search(directory: Path) -> Path | None:
    for candidate in (directory / _FILE, directory / "fra-eng" / _FILE, directory / "tatoeba-fra-eng" / _FILE):
        if candidate.is_file():
            return candidate
    zip_path = directory / "fra-eng.zip"
    if zip_path.is_file():
        return _extract(zip_path, cache_dir() / _FILE)
    return None


def find_fra_txt(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first ``fra.txt`` found in ``data_dir``, ``$QKV_DATA_DIR`` or the cache; None if none.

    Raises:
        FileNotFoundError: ``data_dir`` was given but is not a directory or file.
    """
    given = data_files.checked_data_dir(data_dir)
    if given is not None and given.is_file():
        return given
    for root in data_files.search_roots(data_dir):
        found = _search(root)
        if found is not None:
            return found
    cached = cache_dir() / _FILE
    return cached if cached.is_file() else None


def check_fra_txt(path: str | os.PathLike[str], *, head_bytes: int = 1 << 16) -> Path:
    """``path`` if it is a non-empty regular file whose first lines have ``fra.txt``'s format.

    Only the first ``head_bytes`` are read (a quick check before a run; :func:`load_pairs`
    validates the whole file when it reads it).

    Raises:
        FileNotFoundError: no such file, or not a regular file (e.g. a directory).
        TatoebaFormatError: empty, not UTF-8, or not tab-separated pairs.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a regular file (expected Tatoeba's {_FILE})")
    with path.open("rb") as f:
        head = f.read(head_bytes)
    if not head.strip():
        raise TatoebaFormatError(f"{str(path)!r} is empty (expected Tatoeba's {_FILE}: 'English<TAB>French' lines)")
    text = head.decode("utf-8", errors="ignore")
    lines = [ln for ln in text.splitlines()[:-1 if len(head) == head_bytes else None] if ln.strip()] or [text]
    good = sum(1 for ln in lines if len(ln.split("\t")) >= 2 and all(x.strip() for x in ln.split("\t")[:2]))
    if good < 0.9 * len(lines):
        raise TatoebaFormatError(
            f"{str(path)!r} does not look like Tatoeba's {_FILE} (tab-separated 'English<TAB>French'): "
            f"{len(lines) - good} of the first {len(lines)} lines are malformed, e.g. {lines[0][:60]!r}"
        )
    return path


def check_data_dir(data_dir: str | os.PathLike[str]) -> Path | None:
    """Validate a ``--data-dir`` the user gave: it must exist, and a ``fra.txt`` in it must be usable.

    Returns:
        the ``fra.txt`` (or ``fra-eng.zip``) found, or None when the directory holds no Tatoeba data
        (not an error: the tour passes one data directory to every experiment).

    Raises:
        FileNotFoundError: ``data_dir`` does not exist, or a ``fra.txt`` in it is not a regular file.
        TatoebaFormatError: the ``fra.txt`` found is empty or not in the format; a ``fra-eng.zip``
            is not a zip archive.
    """
    d = Path(data_dir).expanduser()
    if not d.exists():
        raise FileNotFoundError(f"{str(d)!r} does not exist")
    if d.is_file():
        return check_fra_txt(d)
    for candidate in (d / _FILE, d / "fra-eng" / _FILE, d / "tatoeba-fra-eng" / _FILE):
        if candidate.exists():
            return check_fra_txt(candidate)
    zip_path = d / "fra-eng.zip"
    if zip_path.exists():
        if not zip_path.is_file() or not zipfile.is_zipfile(zip_path):
            raise TatoebaFormatError(f"{str(zip_path)!r} is not a zip archive (expected manythings.org's fra-eng.zip)")
        return zip_path
    return None


def missing_data_message(data_dir: str | None = None) -> str:
    """What to tell the user when ``fra.txt`` is nowhere to be found."""
    where = f"in {data_dir!r}, " if data_dir else ""
    return (
        f"the Tatoeba English-French pairs (fra.txt) were not found {where}in $QKV_DATA_DIR or in {cache_dir()}.\n"
        "Supply them with one of:\n"
        "  qkv run translation-fra-eng --data-dir PATH     # PATH holds fra.txt or fra-eng.zip\n"
        "  qkv run translation-fra-eng --set download=true # fetch " + URL + " into the cache (the default,\n"
        "                                                  # unless --offline; needs network access)\n"
        "  qkv tour --data-dir PATH                        # the same for the tour\n"
        "  (or download and unzip " + URL + " yourself, then use --data-dir)"
    )


def download(dest_dir: str | os.PathLike[str] | None = None, *, sha256: str | None = None,
             timeout: float = 60.0) -> Path:
    """Download :data:`URL`, verify it (when a digest is known) and extract ``fra.txt`` into the cache.

    Returns:
        The path of ``fra.txt``.

    Raises:
        OSError: the download failed.
        ValueError: the archive's SHA-256 differs from the expected digest.
        TatoebaFormatError: the archive holds no ``fra.txt``.
    """
    dest = Path(dest_dir) if dest_dir is not None else cache_dir()
    data = data_files.fetch(URL, sha256=sha256 or os.environ.get("QKV_TATOEBA_SHA256") or SHA256, timeout=timeout,
                            user_agent="qkv (https://pypi.org/project/qkv)")  # manythings.org refuses bare clients
    digest = hashlib.sha256(data).hexdigest()
    zip_path = dest / "fra-eng.zip"
    atomic_write_bytes(zip_path, data)
    atomic_write_bytes(dest / "fra-eng.zip.sha256", f"{digest}  fra-eng.zip\n".encode())
    with zipfile.ZipFile(io.BytesIO(data)):
        pass  # a quick validity check before extracting from the file
    return _extract(zip_path, dest / _FILE)


def load_pairs(path: str | os.PathLike[str], *, min_valid_fraction: float = 0.9) -> list[tuple[str, str]]:
    """Read ``(english, french)`` pairs from a ``fra.txt``-format file.

    Lines with fewer than two tab-separated fields or an empty side are skipped (a truncated
    last line is common); if they are more than ``1 - min_valid_fraction`` of the file, it is
    not this format and :class:`TatoebaFormatError` names the file and the first bad line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TatoebaFormatError(f"{path} is not UTF-8 text ({e}); expected Tatoeba's fra.txt") from None
    if not text.strip():
        raise TatoebaFormatError(f"{path} is empty; expected Tatoeba's fra.txt ('English<TAB>French' lines)")
    pairs, bad, first_bad = [], 0, None
    lines = [line for line in text.splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0].strip() and fields[1].strip():
            pairs.append((fields[0].strip(), fields[1].strip()))
        else:
            bad += 1
            first_bad = first_bad or (number, line[:80])
    if not pairs or len(pairs) < min_valid_fraction * len(lines):
        raise TatoebaFormatError(
            f"{path} does not look like Tatoeba's fra.txt (tab-separated 'English<TAB>French[<TAB>attribution]'): "
            f"{bad} of {len(lines)} lines are malformed, first bad line {first_bad}"
        )
    return pairs
