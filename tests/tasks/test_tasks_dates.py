"""The synthetic date task: formats, gold alignment, determinism."""

from __future__ import annotations

from datetime import date

import pytest
import torch

from qkv.tasks.dates import FORMATS, alignment_accuracy, generate_dates, render_date


@pytest.mark.parametrize("fmt", FORMATS)
def test_alignment_points_at_the_digits_that_determine_the_output(fmt):
    ex = render_date(date(2026, 11, 1), fmt)
    assert ex.target == "2026-11-01"
    assert len(ex.alignment) == len(ex.target)
    for t, gold in enumerate(ex.alignment):
        if ex.target[t] == "-":
            assert not gold
            continue
        assert gold
        chars = "".join(ex.source[s] for s in sorted(gold))
        if t < 4:  # year digits align one to one
            assert chars == ex.target[t]
        elif t in (5, 6):  # month "11": one digit each, or the whole month name
            assert chars == ex.target[t] or chars in ("Nov", "November")
        else:  # day 1 written "01" aligns digit to digit; written "1" it determines both "0" and "1"
            assert chars == ex.target[t] or chars == "1"


def test_generation_is_deterministic_and_varied():
    a, b = generate_dates(50, seed=3), generate_dates(50, seed=3)
    assert a == b
    assert generate_dates(50, seed=4) != a
    assert len({e.source for e in a}) > 45
    assert all(1950 <= int(e.target[:4]) <= 2049 for e in a)
    with pytest.raises(ValueError, match="n must be"):
        generate_dates(-1, seed=0)


def test_alignment_accuracy_counts_argmax_in_gold():
    ex = render_date(date(1999, 3, 14), "{dd}/{mm}/{Y}")  # "14/03/1999"
    T, S = len(ex.target), len(ex.source)
    perfect = torch.zeros(1, T, S)
    for t, gold in enumerate(ex.alignment):
        perfect[0, t, min(gold) if gold else 0] = 1.0
    assert alignment_accuracy(perfect, [ex]) == 1.0
    wrong = torch.zeros(1, T, S)
    wrong[..., 2] = 1.0  # always the "/"
    assert alignment_accuracy(wrong, [ex]) == 0.0
    with pytest.raises(ValueError, match=r"\(B, T, S\)"):
        alignment_accuracy(perfect[0], [ex])
