"""Reversal and copy sequences: layout, targets, seeding, errors."""

from __future__ import annotations

import pytest
import torch

from qkv.tasks.transduction import IGNORE, make_transduction


@pytest.mark.parametrize("task", ["reverse", "copy"])
def test_layout_and_targets(task):
    V = 5
    d = make_transduction(task, 40, min_length=2, max_length=6, vocab_size=V,
                          generator=torch.Generator().manual_seed(0))
    assert d.inputs.shape == (40, 13, V + 1) and d.targets.shape == (40, 13)
    assert int(d.lengths.min()) >= 2 and int(d.lengths.max()) <= 6
    for k in range(40):
        n = int(d.lengths[k])
        src = d.sources[k, :n]
        assert torch.all(src >= 0) and torch.all(d.sources[k, n:] == -1)
        assert torch.equal(d.inputs[k, :n, :V].argmax(-1), src)  # the source, one-hot
        assert float(d.inputs[k, n, V]) == 1 and float(d.inputs[k, n].sum()) == 1  # the separator
        assert float(d.inputs[k, n + 1:].sum()) == 0  # blank afterwards
        expected = src.flip(0) if task == "reverse" else src
        assert torch.equal(d.targets[k, n + 1: 2 * n + 1], expected)
        assert torch.all(d.targets[k, : n + 1] == IGNORE) and torch.all(d.targets[k, 2 * n + 1:] == IGNORE)
        assert int(d.scored[k].sum()) == n


def test_seeded_and_padded():
    kw = {"min_length": 1, "max_length": 4, "vocab_size": 3}
    a = make_transduction("copy", 8, generator=torch.Generator().manual_seed(3), **kw)
    b = make_transduction("copy", 8, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    c = make_transduction("copy", 8, generator=torch.Generator().manual_seed(3), steps=15, **kw)
    assert c.inputs.shape[1] == 15 and torch.equal(c.inputs[:, :9], a.inputs)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="task"):
        make_transduction("sort", 2, min_length=1, max_length=2, vocab_size=2)
    with pytest.raises(ValueError, match="min_length"):
        make_transduction("copy", 2, min_length=3, max_length=2, vocab_size=2)
    with pytest.raises(ValueError, match="steps"):
        make_transduction("copy", 2, min_length=1, max_length=4, vocab_size=2, steps=5)
    with pytest.raises(ValueError, match="vocab_size"):
        make_transduction("copy", 2, min_length=1, max_length=4, vocab_size=0)
