"""SQuAD v1.1 EM/F1 on hand-computed examples."""

from __future__ import annotations

import pytest

from qkv.tasks.squad_eval import exact_match, f1, max_over_gold, normalize_answer, squad_scores


def test_normalisation():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theatre") == "theatre"  # 'the' only as a word
    assert normalize_answer("U.S.") == "us"


def test_exact_match_and_f1_by_hand():
    assert exact_match("the Denver Broncos", "Denver Broncos") == 1.0
    assert exact_match("Broncos", "Denver Broncos") == 0.0
    # pred {denver, broncos, team}, gold {denver, broncos}: P = 2/3, R = 1, F1 = 0.8
    assert f1("Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)
    # bags: pred {a: 'new', 'new', 'york'} vs gold {'new', 'york', 'city'}: shared 2 -> P = 2/3, R = 2/3
    assert f1("new new york", "New York City") == pytest.approx(2 / 3)
    assert f1("paris", "rome") == 0.0
    assert f1("the", "a") == 0.0  # both normalise to nothing: v1.1 scores 0


def test_max_over_gold_and_averages():
    assert max_over_gold(f1, "Denver", ["Denver Broncos", "Denver"]) == 1.0
    scores = squad_scores(["Denver Broncos team", "rome"], [["Denver Broncos"], ["Paris", "the Rome"]])
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100 * (0.8 + 1.0) / 2)
    with pytest.raises(ValueError, match="golds is empty"):
        max_over_gold(f1, "x", [])
    with pytest.raises(ValueError, match="1 predictions and 2 gold lists"):
        squad_scores(["x"], [["x"], ["y"]])
