"""Synthetic sentence pairs (gold alignments checked word by word), alignment scoring, the SICK loader."""

from __future__ import annotations

import pytest
import torch

from qkv.tasks import sentence_pairs as sp


def _set_of(word):
    return next((i for i, pair in enumerate(sp.SYNONYM_SETS) if word in pair), None)


def test_gold_alignments_point_at_the_same_word_or_its_synonym():
    pairs = sp.make_pairs(300, generator=torch.Generator().manual_seed(0))
    assert int(pairs.labels.sum()) == 150
    kinds = set(pairs.kinds)
    assert kinds == {"active", "passive", "swap", "negation", "replace"}
    for n in range(len(pairs)):
        w0, w1 = pairs.words(n)
        align = pairs.align[n].tolist()
        assert all(a == -1 for a in align[len(w0):])
        label, kind = int(pairs.labels[n]), pairs.kinds[n]
        assert (label == 1) == (kind in ("active", "passive"))
        for i, word in enumerate(w0):
            j = align[i]
            if word in sp.FUNCTION_WORDS:
                assert j == -1
            elif j == -1:  # only a replaced word loses its partner
                assert kind == "replace" and _set_of(word) not in {_set_of(v) for v in w1}
            else:
                assert 0 <= j < len(w1) and _set_of(w1[j]) == _set_of(word)
        if kind != "replace":  # every content word has its partner
            assert sum(a >= 0 for a in align) == sum(w not in sp.FUNCTION_WORDS for w in w0)
        assert ("not" in w1) == (kind == "negation")
        if kind in ("active", "passive", "swap", "negation"):
            assert sorted(_set_of(w) for w in w0 if w not in sp.FUNCTION_WORDS) == \
                sorted(_set_of(w) for w in w1 if w not in sp.FUNCTION_WORDS)


def test_swap_reverses_the_roles():
    pairs = sp.make_pairs(200, generator=torch.Generator().manual_seed(1))
    nouns = {w for pair in sp.NOUNS for w in pair}
    for n in [i for i, k in enumerate(pairs.kinds) if k in ("swap", "active")]:
        w0, w1 = pairs.words(n)
        if "was" in w1:  # passive swap: the first noun of both sentences agree
            continue
        first0 = _set_of(next(w for w in w0 if w in nouns))
        first1 = _set_of(next(w for w in w1 if w in nouns))
        assert (first0 == first1) == (pairs.kinds[n] == "active")


def test_seeded_and_validated():
    a = sp.make_pairs(20, generator=torch.Generator().manual_seed(5))
    b = sp.make_pairs(20, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.tokens0, b.tokens0) and torch.equal(a.tokens1, b.tokens1) and torch.equal(a.align, b.align)
    with pytest.raises(ValueError, match="synonym_p must be in"):
        sp.make_pairs(4, generator=torch.Generator(), synonym_p=1.5)
    with pytest.raises(ValueError, match="length must be >= 13"):
        sp.make_pairs(4, generator=torch.Generator(), length=5)


def test_alignment_accuracy_and_chance():
    pairs = sp.make_pairs(50, generator=torch.Generator().manual_seed(2))
    N, L = pairs.align.shape
    gold = torch.zeros(N, L, L)
    has = pairs.align >= 0
    n_idx, i_idx = has.nonzero(as_tuple=True)
    gold[n_idx, i_idx, pairs.align[has]] = 1.0
    assert sp.alignment_accuracy(gold, pairs.align, pairs.lengths1) == 1.0
    shifted = torch.roll(gold, 1, dims=-1)
    assert sp.alignment_accuracy(shifted, pairs.align, pairs.lengths1) < 0.2
    expected = sum(1 / int(pairs.lengths1[n]) for n in range(N) for i in range(L) if pairs.align[n, i] >= 0)
    expected /= int(has.sum())
    assert sp.chance_alignment(pairs) == pytest.approx(expected)
    # the argmax runs over the real words of sentence 1 only
    padded = gold.clone()
    padded[:, :, -1] = 5.0
    assert sp.alignment_accuracy(padded, pairs.align, pairs.lengths1) == 1.0
    with pytest.raises(ValueError, match=r"attention \(N, L0, L1\).*got attention \(50, 13\)"):
        sp.alignment_accuracy(gold[:, 0], pairs.align, pairs.lengths1)


def test_clustered_vectors_put_synonyms_together():
    vocab = sp.synthetic_vocab()
    v = sp.clustered_vectors(vocab, 64, noise=0.3, generator=torch.Generator().manual_seed(0))
    cos = torch.nn.functional.cosine_similarity
    syn = [float(cos(v[vocab.stoi[a]], v[vocab.stoi[b]], dim=0)) for a, b in sp.SYNONYM_SETS]
    other = [float(cos(v[vocab.stoi[a[0]]], v[vocab.stoi[b[0]]], dim=0))
             for a, b in zip(sp.SYNONYM_SETS, sp.SYNONYM_SETS[1:], strict=False)]
    assert min(syn) > max(other) and torch.all(v[vocab.pad] == 0)


SICK_ROWS = [
    "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tentailment_AB\tentailment_BA\t"
    "sentence_A_original\tsentence_B_original\tsentence_A_dataset\tsentence_B_dataset\tSemEval_set",
    "1\tA group of kids is playing in a yard\tA group of boys is playing\tENTAILMENT\t4.5\tA_entails_B\tB_neutral_A\t"
    "x\ty\tFLICKR\tFLICKR\tTRAIN",
    "2\tA man is playing a guitar\tNobody is playing a guitar\tCONTRADICTION\t3.2\tA_contradicts_B\t"
    "B_contradicts_A\tx\ty\tSEMEVAL\tSEMEVAL\tTRAIN",
    "3\tA dog runs\tA cat sleeps on the sofa\tNEUTRAL\t1.1\tA_neutral_B\tB_neutral_A\tx\ty\tFLICKR\tFLICKR\tTEST",
    "4\tThe kids play\tA zebra plays\tNEUTRAL\t2.0\tA_neutral_B\tB_neutral_A\tx\ty\tFLICKR\tFLICKR\tTRIAL",
]


def test_sick_loader_reads_the_format(tmp_path):
    (tmp_path / "SICK.txt").write_text("\n".join(SICK_ROWS) + "\n", encoding="utf-8")
    assert sp.find_sick(tmp_path) == tmp_path / "SICK.txt"
    sets = sp.load_sick(sp.find_sick(tmp_path))
    train, test, trial = sets["TRAIN"], sets["TEST"], sets["TRIAL"]
    assert len(train) == 2 and len(test) == 1 and len(trial) == 1
    assert train.labels.tolist() == [sp.SICK_LABELS.index("ENTAILMENT"), sp.SICK_LABELS.index("CONTRADICTION")]
    assert train.words(0) == (["a", "group", "of", "kids", "is", "playing", "in", "a", "yard"],
                              ["a", "group", "of", "boys", "is", "playing"])
    assert test.words(0)[1] == ["a"] + ["<unk>"] * 5  # words unseen in TRAIN
    assert train.tokens0.shape == (2, 9) and bool((train.align == -1).all())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sp.find_sick(tmp_path / "nope")


def test_sick_loader_errors(tmp_path):
    path = tmp_path / "SICK.txt"
    path.write_text("pair_ID\tsentence_A\n1\ta\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks columns.*sentence_B"):
        sp.load_sick(path)
    path.write_text("\n".join([SICK_ROWS[0], SICK_ROWS[1].replace("ENTAILMENT", "MAYBE")]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: entailment_label must be one of.*'MAYBE'"):
        sp.load_sick(path)
