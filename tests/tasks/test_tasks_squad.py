"""SQuAD v1.1 loader on a tiny generated file: offsets, character-to-token spans, errors, finding files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qkv.tasks.squad import (
    FILES,
    SquadFormatError,
    char_to_token_span,
    find_squad,
    load_squad,
    tokenize_with_offsets,
)
from qkv.tasks.squad_eval import exact_match

CONTEXT = "Super Bowl 50 was won by the Denver Broncos, who beat the Carolina Panthers 24-10 in Santa Clara."


def _write(path: Path, qas=None) -> Path:
    start = CONTEXT.index("Denver")
    qas = qas or [
        {"id": "q1", "question": "Who won Super Bowl 50?",
         "answers": [{"answer_start": start, "text": "Denver Broncos"},
                     {"answer_start": CONTEXT.index("the Denver"), "text": "the Denver Broncos"}]},
        {"id": "q2", "question": "Where was it played?",
         "answers": [{"answer_start": CONTEXT.index("Santa"), "text": "Santa Clara"}]},
        {"id": "q3", "question": "What was the score?",
         "answers": [{"answer_start": CONTEXT.index("24"), "text": "24-10"}]},
    ]
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "SB50", "paragraphs": [
        {"context": CONTEXT, "qas": qas}]}]}))
    return path


def test_offsets_point_at_the_tokens():
    tokens, offsets = tokenize_with_offsets(CONTEXT)
    assert all(CONTEXT[s:e].lower() == t for t, (s, e) in zip(tokens, offsets, strict=True))
    assert char_to_token_span(offsets, CONTEXT.index("Denver"), CONTEXT.index("Denver") + 14) == (7, 8)
    assert char_to_token_span(offsets, 3, 3) is None  # an empty range overlaps nothing


def test_loader_maps_character_answers_to_token_spans(tmp_path):
    examples, skipped = load_squad(_write(tmp_path / "dev-v1.1.json"))
    assert skipped == 0 and len(examples) == 3
    assert [ex.span_text for ex in examples] == ["Denver Broncos", "Santa Clara", "24-10"]
    assert examples[0].answers == ("Denver Broncos", "the Denver Broncos")
    assert examples[2].context[examples[2].start:examples[2].end + 1] == ("24", "-", "10")
    assert examples[0].question[:2] == ("who", "won")
    for ex in examples:
        assert exact_match(ex.span_text, ex.answers[0]) == 1.0


def test_loader_errors_say_where(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SquadFormatError, match="is not JSON"):
        load_squad(bad)
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "x", "qas": [{"question": "q"}]}]}]}))
    with pytest.raises(SquadFormatError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]"):
        load_squad(bad)


def test_find_squad(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("QKV_DATA_DIR", raising=False)
    assert find_squad("dev", tmp_path) is None
    _write(tmp_path / FILES["dev"])
    assert find_squad("dev", tmp_path) == tmp_path / FILES["dev"]
    assert find_squad("dev", tmp_path / FILES["dev"]) == tmp_path / FILES["dev"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_squad("dev", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="split must be one of"):
        find_squad("test", tmp_path)
