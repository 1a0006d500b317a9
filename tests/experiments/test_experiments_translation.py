"""The translation experiment's data split."""

from __future__ import annotations

import pytest

from qkv.experiments.translation_fra_eng import split_pairs


def test_split_is_by_english_sentence_seeded_and_keeps_all_references():
    pairs = [([f"e{i}"], [f"f{i}", str(j)]) for i in range(30) for j in range(1 + i % 3)]
    a = split_pairs(pairs, seed=0, valid=5, test=5)
    assert split_pairs(pairs, seed=0, valid=5, test=5) == a
    assert split_pairs(pairs, seed=1, valid=5, test=5) != a
    train_src = {tuple(s) for s, _ in a["train"]}
    held = [tuple(s) for name in ("valid", "test") for s, _ in a[name]]
    assert len(held) == len(set(held)) == 10 and not train_src & set(held)
    for src, refs in a["test"]:
        i = int(src[0][1:])
        assert len(refs) == 1 + i % 3  # every French translation is a reference
    assert len(a["train"]) + sum(len(r) for n in ("valid", "test") for _, r in a[n]) == len(pairs)
    with pytest.raises(ValueError, match="only 30 distinct English sentences"):
        split_pairs(pairs, seed=0, valid=20, test=10)
