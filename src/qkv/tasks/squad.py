"""SQuAD v1.1 (Rajpurkar et al. 2016): the JSON layout, tokenisation with character offsets, answer spans.

Shape legend: none (lists of examples; :func:`qkv.tasks.span_qa.encode` makes tensors).

Layout (``train-v1.1.json``, ``dev-v1.1.json``)::

    {"version": "1.1", "data": [{"title": ..., "paragraphs": [{"context": "...",
        "qas": [{"id": ..., "question": "...", "answers": [{"answer_start": 177, "text": "Denver Broncos"}]}]}]}]}

:func:`tokenize_with_offsets` splits text into words and single punctuation marks (lower-cased, as
:func:`qkv.tasks.vocab.word_tokenize`) and keeps each token's character offsets; :func:`char_to_token_span`
maps an answer's characters ``[answer_start, answer_start + len(text))`` to the tokens overlapping them.
Training uses the first gold answer's span; evaluation keeps every gold text (EM/F1 take the best,
:mod:`qkv.tasks.squad_eval`).

Where the files come from: ``data_dir`` (``--data-dir``: the folder holding them, or a file), then
``$QKV_DATA_DIR`` (itself or its ``squad/``), then the cache ``$XDG_CACHE_HOME/qkv/squad`` filled by
:func:`download` from :data:`URLS`. Checksums: :data:`SHA256` is ``None`` for both files: their digests
could not be computed or checked here (no network access when this was written); a download is then
accepted if it parses as SQuAD JSON, and ``$QKV_SQUAD_SHA256_<SPLIT>`` can pin one.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from qkv.tasks import data_files
from qkv.tasks.span_qa import SpanExample
from qkv.train.io import atomic_write_bytes

__all__ = [
    "FILES",
    "SHA256",
    "URLS",
    "SquadFormatError",
    "cache_dir",
    "char_to_token_span",
    "download",
    "find_squad",
    "load_squad",
    "tokenize_with_offsets",
]

FILES = {"train": "train-v1.1.json", "dev": "dev-v1.1.json"}
URLS = {split: f"https://rajpurkar.github.io/SQuAD-explorer/dataset/{name}" for split, name in FILES.items()}
#: SHA-256 of each file: unknown here (see the module docstring), so ``None``.
SHA256: dict[str, str | None] = {"train": None, "dev": None}
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class SquadFormatError(ValueError):
    """A file that should be SQuAD v1.1 JSON is not (the message names the file and the place)."""


def tokenize_with_offsets(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Lower-cased words and punctuation marks with their ``(start, end)`` character offsets in ``text``."""
    tokens, offsets = [], []
    for m in _TOKEN.finditer(text):
        tokens.append(m.group().lower())
        offsets.append((m.start(), m.end()))
    return tokens, offsets


def char_to_token_span(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """The inclusive token span overlapping characters ``[start, end)``; ``None`` if no token overlaps (or empty)."""
    if end <= start:
        return None
    hit = [i for i, (s, e) in enumerate(offsets) if s < end and e > start]
    return (hit[0], hit[-1]) if hit else None


def load_squad(path: str | os.PathLike[str]) -> tuple[list[SpanExample], int]:
    """Read a SQuAD v1.1 file into span examples (first gold answer's span); also how many were skipped.

    A question is skipped when its first answer's characters overlap no token (it cannot be a span).

    Raises:
        FileNotFoundError: no such file.
        SquadFormatError: not JSON, or not the v1.1 layout (the message says where).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SquadFormatError(f"{path} is not JSON ({e}); expected a SQuAD v1.1 file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise SquadFormatError(f"{path}: expected a JSON object with a 'data' list (SQuAD v1.1 layout)")
    out, skipped = [], 0
    for a, article in enumerate(doc["data"]):
        for p, para in enumerate(article.get("paragraphs", [])):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            if not isinstance(para.get("context"), str) or not isinstance(para.get("qas"), list):
                raise SquadFormatError(f"{where} needs a 'context' string and a 'qas' list")
            context = para["context"]
            tokens, offsets = tokenize_with_offsets(context)
            for k, qa in enumerate(para["qas"]):
                answers = qa.get("answers")
                if not isinstance(qa.get("question"), str) or not isinstance(answers, list) or not answers:
                    raise SquadFormatError(f"{where}.qas[{k}] needs a 'question' string and a non-empty 'answers' list")
                try:
                    texts = tuple(str(ans["text"]) for ans in answers)
                    first = int(answers[0]["answer_start"])
                except (KeyError, TypeError, ValueError):
                    raise SquadFormatError(f"{where}.qas[{k}]: each answer needs 'answer_start' and 'text'") from None
                span = char_to_token_span(offsets, first, first + len(texts[0]))
                if span is None:
                    skipped += 1
                    continue
                question, _ = tokenize_with_offsets(qa["question"])
                out.append(SpanExample(tuple(tokens), tuple(question), span[0], span[1], texts, "squad", context,
                                       tuple(offsets)))
    return out, skipped


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/qkv/squad`` (default ``~/.cache/qkv/squad``)."""
    return data_files.cache_dir("squad")


def find_squad(split: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The ``split`` file (``"train"`` or ``"dev"``) in ``data_dir``, ``$QKV_DATA_DIR`` or the cache, or ``None``.

    Raises:
        ValueError: an unknown split.
        FileNotFoundError: ``data_dir`` was given but does not exist.
    """
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    given = data_files.checked_data_dir(data_dir)
    if given is not None and given.is_file():
        return given if given.name == FILES[split] else None
    places = [*data_files.search_roots(data_dir, subdirs=("squad",)), cache_dir()]
    for place in places:
        if (place / FILES[split]).is_file():
            return place / FILES[split]
    return None


def download(split: str, dest_dir: str | os.PathLike[str] | None = None, *, timeout: float = 120.0) -> Path:
    """Fetch :data:`URLS` ``[split]`` into the cache, check its digest when one is known and that it parses.

    Raises:
        OSError: the download failed.
        ValueError: the SHA-256 differs from the pinned digest.
        SquadFormatError: the file is not SQuAD JSON.
    """
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    expected = os.environ.get(f"QKV_SQUAD_SHA256_{split.upper()}") or SHA256[split]
    data = data_files.fetch(URLS[split], sha256=expected, timeout=timeout)
    dest = (Path(dest_dir) if dest_dir is not None else cache_dir()) / FILES[split]
    atomic_write_bytes(dest, data)
    load_squad(dest)  # raises SquadFormatError if it is not SQuAD
    return dest
