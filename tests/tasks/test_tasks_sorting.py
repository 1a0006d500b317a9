"""The sorting task: the target sorts, and the checker accepts exactly the sorted permutations."""

from __future__ import annotations

import itertools

import torch

from qkv.tasks.sorting import make_sorting, sorted_accuracy


def test_targets_sort_and_checker_accepts_only_sorted_permutations():
    d = make_sorting(20, 4, generator=torch.Generator().manual_seed(0))
    read = d.values[..., 0].gather(1, d.order)
    assert torch.all(read[:, 1:] > read[:, :-1])
    assert sorted_accuracy(d.values, d.order).all()
    perms = torch.tensor(list(itertools.permutations(range(4))))
    ok = sorted_accuracy(d.values[:1].expand(24, -1, -1), perms)
    assert ok.sum() == 1 and perms[ok.nonzero()[0, 0]].tolist() == d.order[0].tolist()
    bad = d.order.clone()
    bad[:, -1] = -1
    assert not sorted_accuracy(d.values, bad).any()
    repeated = d.order.clone()
    repeated[:, 1] = repeated[:, 0]
    assert not sorted_accuracy(d.values, repeated).any()
