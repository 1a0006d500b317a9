"""The NTM paper's algorithmic tasks: layouts as in Graves et al. 2014 §4, seeded, one size per batch."""

from __future__ import annotations

import pytest
import torch

from qkv.tasks.algorithmic_memory import AlgorithmicStream, associative_recall, copy, repeat_copy, task_dims


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_copy_layout():
    b = copy(3, 4, width=5, generator=_g())
    assert b.inputs.shape == (3, 9, 6) and b.targets.shape == (3, 9, 5) and b.mask.shape == (3, 9)
    seq = b.inputs[:, :4, :5]
    assert torch.equal(b.targets[:, 5:], seq)  # recalled in order after the delimiter
    assert torch.all(b.inputs[:, 4, 5] == 1) and b.inputs[:, :, 5].sum() == 3  # one delimiter step each
    assert torch.all(b.inputs[:, 5:] == 0)  # blank during the answer
    assert b.mask[:, 5:].all() and not b.mask[:, :5].any()
    assert set(seq.unique().tolist()) <= {0.0, 1.0}


def test_repeat_copy_layout():
    b = repeat_copy(2, 3, 4, width=5, repeat_scale=10.0, generator=_g(1))
    T = 3 + 1 + 4 * 3 + 1
    assert b.inputs.shape == (2, T, 7) and b.targets.shape == (2, T, 6)
    seq = b.inputs[:, :3, :5]
    for r in range(4):
        assert torch.equal(b.targets[:, 4 + 3 * r : 7 + 3 * r, :5], seq)
    assert torch.all(b.inputs[:, 3, 6] == 0.4)  # the repeat count, normalised
    assert torch.all(b.targets[:, -1, 5] == 1) and b.targets[:, :-1, 5].sum() == 0  # end marker
    assert b.mask[:, 4:].all() and not b.mask[:, :4].any()


def test_associative_recall_answer_is_the_item_after_the_query():
    n, k, w = 5, 3, 6
    b = associative_recall(16, n, item_len=k, width=w, generator=_g(2))
    x = b.inputs
    items = torch.stack([x[:, i * (k + 1) + 1 : (i + 1) * (k + 1), :w] for i in range(n)], 1)  # (B, n, k, w)
    start = n * (k + 1)
    query = x[:, start + 1 : start + 1 + k, :w]
    assert torch.all(x[:, start, w + 1] == 1) and torch.all(x[:, start + 1 + k, w + 1] == 1)
    for bi in range(16):
        matches = [i for i in range(n) if torch.equal(items[bi, i], query[bi])]
        assert matches and matches[0] < n - 1
        assert torch.equal(b.targets[bi, -k:], items[bi, matches[0] + 1])
    assert b.mask[:, -k:].all() and b.mask.sum() == 16 * k


def test_seeded_and_stream_deterministic_with_one_size_per_batch():
    assert torch.equal(copy(2, 3, generator=_g(5)).inputs, copy(2, 3, generator=_g(5)).inputs)
    s1 = AlgorithmicStream("copy", count=100, min_size=1, max_size=20, width=8, seed=3)
    s2 = AlgorithmicStream("copy", count=100, min_size=1, max_size=20, width=8, seed=3)
    idx = torch.tensor([7, 2, 9])
    a, b = s1.batch(idx), s2.batch(idx)
    assert all(torch.equal(a[k], b[k]) for k in a)
    lengths = {s1.batch(torch.tensor([i]))["inputs"].shape[1] for i in range(30)}
    assert len(lengths) > 3 and all(3 <= t <= 41 for t in lengths)
    other = AlgorithmicStream("copy", count=100, min_size=1, max_size=20, width=8, seed=4).batch(idx)
    assert not (other["inputs"].shape == a["inputs"].shape and torch.equal(other["inputs"], a["inputs"]))
    rc = AlgorithmicStream("repeat_copy", count=10, min_size=2, max_size=2, width=3, seed=0, min_repeats=1,
                           max_repeats=3).batch(idx)
    assert rc["inputs"].shape[-1] == 5 and rc["targets"].shape[-1] == 4


def test_a_curriculum_grows_the_sizes_and_counts_with_the_position_in_the_stream():
    s = AlgorithmicStream("repeat_copy", count=1000, min_size=1, max_size=4, width=3, seed=0, min_repeats=2,
                          max_repeats=5, curriculum=500)
    assert s.ordered and not AlgorithmicStream("copy", count=10, min_size=1, max_size=2, width=1, seed=0).ordered
    caps = [s.limits(i) for i in range(1000)]
    assert caps[0] == (1, 2) and caps[499] == (4, 5) and all(c == (4, 5) for c in caps[500:])
    assert caps == sorted(caps)  # never shrinks
    # every size of 1..4 (and count of 2..5) is the cap for an equal share of the curriculum
    assert [sum(c[0] == k for c in caps[:500]) for k in (1, 2, 3, 4)] == [125] * 4
    assert [sum(c[1] == k for c in caps[:500]) for k in (2, 3, 4, 5)] == [125] * 4
    # the drawn sequences obey the caps: repeat copy is T = L + 1 + nL + 1 steps
    steps = {i: s.batch(torch.tensor([i, i + 1]))["inputs"].shape[1] for i in range(0, 1000, 7)}
    assert steps[0] == 1 + 1 + 2 + 1  # L = 1, n = 2 at the start
    assert all(t <= (s.limits(i)[0]) * (s.limits(i)[1] + 1) + 2 for i, t in steps.items())
    assert max(steps.values()) == 4 * 6 + 2  # the full range is reached
    # a curriculum on one range leaves the other whole from the start
    on_repeats = AlgorithmicStream("repeat_copy", count=1000, min_size=1, max_size=4, width=3, seed=0, min_repeats=2,
                                   max_repeats=5, curriculum=500, curriculum_on="repeats")
    on_size = AlgorithmicStream("repeat_copy", count=1000, min_size=1, max_size=4, width=3, seed=0, min_repeats=2,
                                max_repeats=5, curriculum=500, curriculum_on="size")
    assert [on_repeats.limits(i) for i in range(1000)] == [(4, c[1]) for c in caps]
    assert [on_size.limits(i) for i in range(1000)] == [(c[0], 5) for c in caps]
    for bad in (-1, 0.5, True):
        with pytest.raises(ValueError, match="curriculum must be an int >= 0"):
            AlgorithmicStream("copy", count=10, min_size=1, max_size=2, width=1, seed=0, curriculum=bad)
    with pytest.raises(ValueError, match="curriculum_on"):
        AlgorithmicStream("copy", count=10, min_size=1, max_size=2, width=1, seed=0, curriculum=5, curriculum_on="x")


def test_dims_and_errors():
    assert task_dims("copy", 8) == (9, 8)
    assert task_dims("repeat_copy", 8) == (10, 9)
    assert task_dims("associative_recall", 6) == (8, 6)
    with pytest.raises(ValueError, match="length"):
        copy(2, 0)
    with pytest.raises(ValueError, match="items"):
        associative_recall(2, 1)
    with pytest.raises(ValueError, match="task"):
        AlgorithmicStream("sort", count=1, min_size=1, max_size=1, width=1, seed=0)
    with pytest.raises(ValueError, match="min_size"):
        AlgorithmicStream("copy", count=1, min_size=3, max_size=2, width=1, seed=0)
