"""Corpus BLEU against hand-computed values (Papineni et al. 2002)."""

from __future__ import annotations

import math

import pytest

from qkv.tasks.bleu import corpus_bleu, ngram_counts


def test_identical_is_100_and_disjoint_is_0():
    s = ["the", "cat", "sat", "on", "the", "mat"]
    assert corpus_bleu([s], [[s]]).score == pytest.approx(100.0)
    assert corpus_bleu([["a", "b", "c", "d"]], [[["w", "x", "y", "z"]]]).score == 0.0


def test_papineni_clipping_example():
    # Papineni et al. 2002 §2.1: "the the the the the the the" has modified unigram precision 2/7
    hyp = ["the", "the", "the", "the", "the", "the", "the"]
    refs = [["the", "cat", "is", "on", "the", "mat"], ["there", "is", "a", "cat", "on", "the", "mat"]]
    b = corpus_bleu([hyp], [refs], max_n=1)
    assert b.precisions[0] == pytest.approx(2 / 7)
    assert b.matches[0] == 2 and b.totals[0] == 7


def test_hand_computed_corpus_score():
    # hyp1: "a b c d e" vs "a b c x e": 1-grams 4/5, 2-grams 2/4, 3-grams 1/3, 4-grams 0/2
    # hyp2: "a b"       vs "a b c":     1-grams 2/2, 2-grams 1/1;  lengths c=7, r=8
    hyps = [list("abcde"), list("ab")]
    refs = [[list("abcxe")], [list("abc")]]
    b = corpus_bleu(hyps, refs, max_n=3)
    assert b.matches == (6, 3, 1) and b.totals == (7, 5, 3)
    assert b.hyp_len == 7 and b.ref_len == 8
    expected = 100 * math.exp(1 - 8 / 7) * math.exp((math.log(6 / 7) + math.log(3 / 5) + math.log(1 / 3)) / 3)
    assert b.score == pytest.approx(expected)
    assert corpus_bleu(hyps, refs, max_n=4).score == 0.0  # no 4-gram match, no smoothing
    smoothed = corpus_bleu(hyps, refs, max_n=4, smooth="exp")
    p4 = 1 / (2 * 2)  # first zero order: 1 / (2 * total_4), total_4 = 2
    assert smoothed.precisions[3] == pytest.approx(p4)
    assert smoothed.score == pytest.approx(
        100 * math.exp(1 - 8 / 7) * math.exp((math.log(6 / 7) + math.log(3 / 5) + math.log(1 / 3) + math.log(p4)) / 4)
    )


def test_closest_reference_length_and_longer_hypothesis():
    hyp = list("abcdef")
    b = corpus_bleu([hyp], [[list("abc"), list("abcdefg"), list("abcde")]], max_n=1)
    assert b.ref_len == 5  # |6-5| = |6-7| = 1: the shorter wins
    assert b.brevity_penalty == 1.0


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        corpus_bleu([["a"], ["b"]], [[["a"]]])
    with pytest.raises(ValueError, match="no reference"):
        corpus_bleu([["a"]], [[]])
    with pytest.raises(ValueError, match="smooth"):
        corpus_bleu([["a"]], [[["a"]]], smooth="add1")  # type: ignore[arg-type]
    assert ngram_counts(list("abab"), 2) == {("a", "b"): 2, ("b", "a"): 1}
