"""The NTM paper's algorithmic tasks (Graves, Wayne and Danihelka 2014, §4): copy, repeat copy, associative recall.

Shape legend: ``B`` sequences, ``T`` time steps, ``X`` input channels, ``Y`` output channels, ``w`` bits per vector.

Every example is random binary vectors plus delimiter channels; the target is zero and unscored (``mask`` False)
while the input is presented, and is the answer afterwards. All examples of one batch share their length (and
repeat count, item count), so a batch is one ``(B, T, ·)`` tensor without padding.

* **copy** (§4.1): ``L`` vectors of ``w`` bits, then one step on the delimiter channel; then ``L`` blank steps
  during which the model must output the vectors in order. ``X = w + 1``, ``Y = w``, ``T = 2L + 1``.
* **repeat copy** (§4.2): ``L`` vectors, then one step whose repeat channel holds the count ``n`` divided by
  ``repeat_scale`` (the paper normalises the count); then ``n·L + 1`` blank steps: the vectors ``n`` times, then an
  end marker on the extra output channel. ``X = w + 2``, ``Y = w + 1``, ``T = L + 1 + nL + 1``.
* **associative recall** (§4.3): ``I`` items of ``item_len`` vectors, each item preceded by a step on the item
  delimiter channel; then a step on the query channel, one of the items (not the last) as the query, and the
  query delimiter again; then ``item_len`` blank steps where the model must output the item that followed the
  query. ``X = w + 2``, ``Y = w``.

:class:`AlgorithmicStream` is a seeded :class:`~qkv.train.loop.BatchSource` of fresh sequences (the paper trains on
an endless stream): the examples of a batch are a function of the seed and the batch's first index, so a resumed
run sees the same data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = ["CURRICULA", "TASKS", "AlgorithmicBatch", "AlgorithmicStream", "Curriculum", "associative_recall", "copy",
           "make_batch", "repeat_copy", "task_dims"]

TASKS = ("copy", "repeat_copy", "associative_recall")
Curriculum = Literal["size", "repeats", "both"]  # what an AlgorithmicStream curriculum grows
CURRICULA: tuple[Curriculum, ...] = get_args(Curriculum)


@dataclass
class AlgorithmicBatch:
    """``inputs (B, T, X)``, ``targets (B, T, Y)`` (0/1), ``mask (B, T)`` (True where the output is scored)."""

    inputs: Tensor
    targets: Tensor
    mask: Tensor

    def as_dict(self) -> dict[str, Tensor]:
        return {"inputs": self.inputs, "targets": self.targets, "mask": self.mask}


def _check(name: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _bits(batch: int, length: int, width: int, generator: torch.Generator | None) -> Tensor:
    return torch.randint(0, 2, (batch, length, width), generator=generator).float()  # (B, L, w)


def copy(batch: int, length: int, *, width: int = 8, generator: torch.Generator | None = None) -> AlgorithmicBatch:
    """Copy task (§4.1): ``length`` random ``width``-bit vectors, the delimiter, then recall them in order."""
    B, L, w = _check("batch", batch), _check("length", length), _check("width", width)
    seq = _bits(B, L, w, generator)
    x = torch.zeros(B, 2 * L + 1, w + 1)  # (B, T, X)
    x[:, :L, :w] = seq
    x[:, L, w] = 1.0
    y = torch.zeros(B, 2 * L + 1, w)  # (B, T, Y)
    y[:, L + 1 :] = seq
    mask = torch.zeros(B, 2 * L + 1, dtype=torch.bool)
    mask[:, L + 1 :] = True
    return AlgorithmicBatch(x, y, mask)


def repeat_copy(batch: int, length: int, repeats: int, *, width: int = 8, repeat_scale: float = 10.0,
                generator: torch.Generator | None = None) -> AlgorithmicBatch:
    """Repeat copy (§4.2): the sequence, its repeat count (``repeats / repeat_scale``), then ``repeats`` copies and an
    end marker on output channel ``width``."""
    B, L, w = _check("batch", batch), _check("length", length), _check("width", width)
    n = _check("repeats", repeats)
    seq = _bits(B, L, w, generator)
    T = L + 1 + n * L + 1
    x = torch.zeros(B, T, w + 2)  # (B, T, X)
    x[:, :L, :w] = seq
    x[:, L, w + 1] = n / repeat_scale
    x[:, L, w] = 1.0
    y = torch.zeros(B, T, w + 1)  # (B, T, Y)
    y[:, L + 1 : L + 1 + n * L, :w] = seq.repeat(1, n, 1)  # (B, nL, w)
    y[:, -1, w] = 1.0
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, L + 1 :] = True
    return AlgorithmicBatch(x, y, mask)


def associative_recall(batch: int, items: int, *, item_len: int = 3, width: int = 6,
                       generator: torch.Generator | None = None) -> AlgorithmicBatch:
    """Associative recall (§4.3): ``items`` items of ``item_len`` vectors; query one; answer the item after it."""
    B, n, k, w = _check("batch", batch), _check("items", items, 2), _check("item_len", item_len), _check("width", width)
    seq = _bits(B, n * k, w, generator).reshape(B, n, k, w)  # (B, items, item_len, w)
    q = torch.randint(0, n - 1, (B,), generator=generator)  # (B,): the queried item, never the last
    T = n * (k + 1) + 1 + k + 1 + k
    x = torch.zeros(B, T, w + 2)  # (B, T, X)
    for i in range(n):
        x[:, i * (k + 1), w] = 1.0
        x[:, i * (k + 1) + 1 : (i + 1) * (k + 1), :w] = seq[:, i]
    start = n * (k + 1)
    rows = torch.arange(B)
    x[:, start, w + 1] = 1.0
    x[:, start + 1 : start + 1 + k, :w] = seq[rows, q]
    x[:, start + 1 + k, w + 1] = 1.0
    y = torch.zeros(B, T, w)  # (B, T, Y)
    y[:, T - k :] = seq[rows, q + 1]
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, T - k :] = True
    return AlgorithmicBatch(x, y, mask)


def task_dims(task: str, width: int) -> tuple[int, int]:
    """``(X, Y)``: input and output channels of ``task`` with ``width`` bits per vector."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return {"copy": (width + 1, width), "repeat_copy": (width + 2, width + 1),
            "associative_recall": (width + 2, width)}[task]


def make_batch(task: str, batch: int, size: int, *, width: int, repeats: int = 1, repeat_scale: float = 10.0,
               item_len: int = 3, generator: torch.Generator | None = None) -> AlgorithmicBatch:
    """One batch of ``task``; ``size`` is the length (copy, repeat copy) or the number of items (recall)."""
    if task == "copy":
        return copy(batch, size, width=width, generator=generator)
    if task == "repeat_copy":
        return repeat_copy(batch, size, repeats, width=width, repeat_scale=repeat_scale, generator=generator)
    if task == "associative_recall":
        return associative_recall(batch, size, item_len=item_len, width=width, generator=generator)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


class AlgorithmicStream:
    """A seeded stream of ``count`` training sequences of ``task``, as a :class:`~qkv.train.loop.BatchSource`.

    ``batch(indices)`` draws ``len(indices)`` fresh examples from a generator seeded by ``(seed, indices[0])``,
    with one size uniform in ``[min_size, max_size]`` (and, for repeat copy, one count in ``[min_repeats,
    max_repeats]``) for the whole batch.

    ``curriculum`` > 0 makes the stream a curriculum: the largest size and count drawn (``curriculum_on``:
    ``"size"``, ``"repeats"`` or ``"both"``; the other stays at its largest) grow linearly with the position
    ``indices[0]`` from ``min_size`` and ``min_repeats`` at the start to ``max_size`` and ``max_repeats`` after
    ``curriculum`` sequences, each value of the range taking an equal share (:meth:`limits`); the stream then sets
    ``ordered`` so that :func:`~qkv.train.loop.fit` takes its examples in index order.
    """

    def __init__(self, task: str, *, count: int, min_size: int, max_size: int, width: int, seed: int,
                 min_repeats: int = 1, max_repeats: int = 1, repeat_scale: float = 10.0, item_len: int = 3,
                 curriculum: int = 0, curriculum_on: Curriculum = "both") -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if not 1 <= _check("min_size", min_size) <= _check("max_size", max_size):
            raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
        if not 1 <= _check("min_repeats", min_repeats) <= _check("max_repeats", max_repeats):
            raise ValueError(f"need 1 <= min_repeats <= max_repeats, got {min_repeats}, {max_repeats}")
        self.task, self.count, self.width, self.seed = task, _check("count", count), _check("width", width), seed
        self.sizes, self.repeats = (min_size, max_size), (min_repeats, max_repeats)
        self.repeat_scale, self.item_len = repeat_scale, item_len
        _check("curriculum", curriculum, low=0)  # a number of sequences
        if curriculum_on not in CURRICULA:
            raise ValueError(f"curriculum_on must be one of {CURRICULA}, got {curriculum_on!r}")
        self.curriculum, self.curriculum_on = curriculum, curriculum_on
        self.ordered = curriculum > 0

    def __len__(self) -> int:
        return self.count

    def limits(self, index: int) -> tuple[int, int]:
        """The largest size and repeat count drawn for the batch that starts at ``index``."""
        if not self.curriculum:
            return self.sizes[1], self.repeats[1]

        def grow(lo: int, hi: int, on: str) -> int:
            if self.curriculum_on not in (on, "both"):
                return hi
            return lo + min(hi - lo, index * (hi - lo + 1) // self.curriculum)  # integers: exact at the boundaries

        return grow(*self.sizes, "size"), grow(*self.repeats, "repeats")

    def batch(self, indices: Tensor) -> dict[str, Tensor]:
        digest = hashlib.sha256(f"{self.seed}/{int(indices[0])}".encode()).digest()
        g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
        max_size, max_repeats = self.limits(int(indices[0]))
        size = int(torch.randint(self.sizes[0], max_size + 1, (1,), generator=g))
        repeats = int(torch.randint(self.repeats[0], max_repeats + 1, (1,), generator=g))
        return make_batch(self.task, len(indices), size, width=self.width, repeats=repeats,
                          repeat_scale=self.repeat_scale, item_len=self.item_len, generator=g).as_dict()
