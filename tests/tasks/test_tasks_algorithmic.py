"""The algorithmic task generators (copy, reverse, sort, addition) against answers computed here."""

from __future__ import annotations

import pytest
import torch

from qkv.tasks.algorithmic import TASKS, encode_pairs, held_out, make_pairs, solve, vocab


def _expected(task: str, source: str) -> str:  # an independent transcription of each task
    if task == "copy":
        return source
    if task == "reverse":
        return "".join(source[i] for i in range(len(source) - 1, -1, -1))
    if task == "sort":
        return "".join(d * source.count(d) for d in "0123456789")
    a, b = source[:-1].split("+")
    return str(int(a) + int(b))


@pytest.mark.parametrize("task", TASKS)
def test_targets_are_correct_and_lengths_in_range(task):
    pairs = make_pairs(task, 300, min_length=2, max_length=6, generator=torch.Generator().manual_seed(1))
    assert len(pairs) == 300
    for source, target in pairs:
        assert target == _expected(task, source)
        if task == "addition":
            a, b = source[:-1].split("+")
            assert all(2 <= len(x) <= 6 and x[0] != "0" for x in (a, b))
        else:
            assert 2 <= len(source) <= 6 and source.isdigit()
    lengths = {len(s) for s, _ in pairs}
    assert len(lengths) > 2  # lengths are drawn, not fixed


def test_seeded_and_padded_addition():
    kw = {"min_length": 1, "max_length": 4}
    a = make_pairs("addition", 50, generator=torch.Generator().manual_seed(3), **kw)
    assert a == make_pairs("addition", 50, generator=torch.Generator().manual_seed(3), **kw)
    assert a != make_pairs("addition", 50, generator=torch.Generator().manual_seed(4), **kw)
    padded = make_pairs("addition", 200, generator=torch.Generator().manual_seed(3), pad_width=5, **kw)
    for source, target in padded:
        left, right = source[:-1].split("+")
        assert len(left) == len(right) == 5 and len(target) == 6
        assert int(target) == int(left) + int(right)
    assert solve("addition", "99+1=", pad_width=3) == "0100"
    assert solve("addition", "123+45=") == "168"


def test_bad_arguments_name_themselves():
    g = torch.Generator()
    with pytest.raises(ValueError, match="task"):
        make_pairs("divide", 3, min_length=1, max_length=2, generator=g)
    with pytest.raises(ValueError, match="min_length <= max_length"):
        make_pairs("copy", 3, min_length=4, max_length=2, generator=g)
    with pytest.raises(ValueError, match="pad_width"):
        make_pairs("addition", 3, min_length=1, max_length=4, pad_width=2, generator=g)
    with pytest.raises(ValueError, match="addition source"):
        solve("addition", "12-3=")


def test_held_out_never_repeats_training_sources():
    g = torch.Generator().manual_seed(0)
    train = make_pairs("copy", 500, min_length=1, max_length=3, generator=g)
    test = held_out(make_pairs("copy", 500, min_length=1, max_length=3, generator=g), train)
    sources = [s for s, _ in test]
    assert sources and not set(sources) & {s for s, _ in train} and len(set(sources)) == len(sources)


def test_encode_pairs_pads_and_trims_batches():
    v = vocab()
    data = encode_pairs([("12", "21"), ("3456", "6543")], v)
    assert data.src.tolist() == [[v.stoi["1"], v.stoi["2"], 0, 0], [v.stoi[c] for c in "3456"]]
    assert data.tgt[0].tolist() == [v.bos, v.stoi["2"], v.stoi["1"], v.eos, 0, 0]
    b = data.batch(torch.tensor([0]))
    assert b["src"].shape == (1, 2) and b["tgt"].shape == (1, 4) and b["src_len"].tolist() == [2]
