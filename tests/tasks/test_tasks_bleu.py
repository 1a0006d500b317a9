"""Corpus BLEU through sacrebleu: input forms, variable references, the signature, errors."""

from __future__ import annotations

import pytest

from qkv.tasks.bleu import corpus_bleu


def test_identical_is_100_and_disjoint_is_near_0():
    s = ["the", "cat", "sat", "on", "the", "mat"]
    b = corpus_bleu([s], [[s]])
    assert b.score == pytest.approx(100.0) and b.brevity_penalty == 1.0
    assert corpus_bleu([["a", "b", "c", "d"]], [[["w", "x", "y", "z"]]]).score < 1.0


def test_tokens_and_strings_agree_and_match_sacrebleu():
    import sacrebleu

    hyps = [["le", "chat", "est", "sur", "le", "tapis", "."], ["il", "pleut", "."]]
    refs = [[["le", "chat", "est", "sur", "le", "tapis", "."], ["un", "chat", "dort", "."]], [["il", "pleut", "!"]]]
    a = corpus_bleu(hyps, refs)
    b = corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in rs] for rs in refs])
    assert a == b
    direct = sacrebleu.corpus_bleu([" ".join(h) for h in hyps],
                                   [[" ".join(rs[0]) for rs in refs], ["un chat dort .", None]])
    assert a.score == pytest.approx(direct.score)
    assert a.hyp_len == 10 and len(a.precisions) == 4


def test_signature_records_how_it_was_computed():
    sig = corpus_bleu([["a", "b"]], [[["a", "b"]]]).signature
    for part in ("nrefs:1", "tok:13a", "smooth:exp", "case:mixed", "version:"):
        assert part in sig
    assert "nrefs:var" in corpus_bleu([["a"], ["b"]], [[["a"], ["a"]], [["b"]]]).signature


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        corpus_bleu([["a"], ["b"]], [[["a"]]])
    with pytest.raises(ValueError, match="no reference"):
        corpus_bleu([["a"]], [[]])
