"""Seeded algorithmic sequence-to-sequence tasks on digit strings: copy, reverse, sort and addition.

Shape legend: ``N`` examples, ``S`` source tokens (padded), ``T`` target tokens (``<bos> ... <eos>``, padded).

The small algorithmic problems on which Transformers are first checked (Vaswani et al. 2017 use copy as a
sanity check; the "Transformer algorithmic" tasks of tensor2tensor, Kaiser et al.; seed 003/004 list copy,
reverse, sort and addition). Every example is a pair of character strings over the digits:

* ``copy``: ``"4071" -> "4071"``;
* ``reverse``: ``"4071" -> "1704"``;
* ``sort``: ``"4071" -> "0147"`` (ascending, duplicates kept);
* ``addition``: ``"123+45=" -> "168"`` — two non-negative integers of ``min_length..max_length`` digits each
  (no leading zeros), the sum written most significant digit first, as a person writes it. With
  ``pad_width=W`` the operands are zero-padded to ``W`` digits and the sum to ``W + 1``
  (``"00123+00045=" -> "000168"``): every digit's place then sits at a fixed position, the format in
  which small Transformers learn addition quickly (Lee et al. 2023, "Teaching arithmetic to small
  Transformers", §4 discuss such formatting).

Source lengths (digits of each operand for addition) are drawn uniformly from ``[min_length, max_length]``.
:func:`solve` is the reference each generated target is checked against; :func:`held_out` drops test
examples whose source also occurs in the training set, so test accuracy is measured on unseen sequences.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from qkv.functional.checks import check_positive_int
from qkv.tasks.vocab import Vocab

__all__ = ["SYMBOLS", "TASKS", "AlgorithmicPairs", "encode_pairs", "held_out", "make_pairs", "solve", "vocab"]

#: The tasks, in the order the experiment reports them.
TASKS = ("copy", "reverse", "sort", "addition")

#: Every symbol a source or target may hold (the digits, then the addition's operators).
SYMBOLS = (*"0123456789", "+", "=")


def vocab() -> Vocab:
    """The shared vocabulary: ``<pad> <bos> <eos> <unk>`` then :data:`SYMBOLS` (ids 4..15)."""
    return Vocab(SYMBOLS)


def _check_task(task: object) -> str:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return task  # type: ignore[return-value]


def solve(task: str, source: str, *, pad_width: int | None = None) -> str:
    """The correct target for ``source`` (the reference :func:`make_pairs` is tested against).

    ``pad_width``: for ``addition``, zero-pad the sum to ``pad_width + 1`` digits.

    Raises:
        ValueError: an unknown task, or a source that is not of the task's form.
    """
    _check_task(task)
    if task == "addition":
        left, plus, rest = source.partition("+")
        if not plus or not rest.endswith("=") or not left.isdigit() or not rest[:-1].isdigit():
            raise ValueError(f"solve: an addition source must look like '123+45=', got {source!r}")
        total = str(int(left) + int(rest[:-1]))
        return total if pad_width is None else total.zfill(pad_width + 1)
    if not source.isdigit():
        raise ValueError(f"solve: a {task} source must be a string of digits, got {source!r}")
    if task == "copy":
        return source
    if task == "reverse":
        return source[::-1]
    return "".join(sorted(source))


def _number(digits: int, generator: torch.Generator) -> str:
    """A uniformly random ``digits``-digit integer without leading zeros (``"0"`` is a 1-digit number)."""
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return str(int(torch.randint(low, 10**digits, (1,), generator=generator)))


def make_pairs(
    task: str, count: int, *, min_length: int, max_length: int, generator: torch.Generator,
    pad_width: int | None = None,
) -> list[tuple[str, str]]:
    """``count`` (source, target) string pairs of ``task``.

    Args:
        task: one of :data:`TASKS`.
        count: number of examples.
        min_length, max_length: the source length (for ``addition``: the digits of each operand), drawn
            uniformly from ``[min_length, max_length]``.
        generator: every draw comes from it.
        pad_width: (``addition``) zero-pad the operands to this many digits (>= ``max_length``) and the sum to
            one more; None: no padding.
    """
    _check_task(task)
    check_positive_int("count", count)
    check_positive_int("min_length", min_length)
    check_positive_int("max_length", max_length)
    if min_length > max_length:
        raise ValueError(f"need min_length <= max_length, got {min_length} > {max_length}")
    if pad_width is not None and (isinstance(pad_width, bool) or not isinstance(pad_width, int)
                                  or pad_width < max_length):
        raise ValueError(f"pad_width must be None or an int >= max_length={max_length}, got {pad_width!r}")
    pairs = []
    for _ in range(count):
        if task == "addition":
            a, b = (_number(int(torch.randint(min_length, max_length + 1, (1,), generator=generator)), generator)
                    for _ in range(2))
            if pad_width is not None:
                a, b = a.zfill(pad_width), b.zfill(pad_width)
            source = f"{a}+{b}="
        else:
            n = int(torch.randint(min_length, max_length + 1, (1,), generator=generator))
            source = "".join(str(int(d)) for d in torch.randint(0, 10, (n,), generator=generator))
        pairs.append((source, solve(task, source, pad_width=pad_width if task == "addition" else None)))
    return pairs


def held_out(test: Iterable[tuple[str, str]], train: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The test pairs whose source is not a training source (duplicates within the test set dropped too)."""
    seen = {s for s, _ in train}
    out = []
    for s, t in test:
        if s not in seen:
            seen.add(s)
            out.append((s, t))
    return out


@dataclass(frozen=True)
class AlgorithmicPairs:
    """Encoded pairs: ``src (N, S)`` without specials, ``tgt (N, T)`` as ``<bos> ... <eos>``, both padded.

    A :class:`qkv.train.BatchSource`; batches are trimmed to their longest member.
    """

    sources: list[str]
    targets: list[str]
    src: Tensor
    src_len: Tensor
    tgt: Tensor
    tgt_len: Tensor

    def __len__(self) -> int:
        return self.src.shape[0]

    def batch(self, indices: Tensor) -> dict[str, Tensor]:
        s, t = int(self.src_len[indices].max()), int(self.tgt_len[indices].max())
        return {"src": self.src[indices, :s], "src_len": self.src_len[indices], "tgt": self.tgt[indices, :t]}


def encode_pairs(pairs: Sequence[tuple[str, str]], vocabulary: Vocab) -> AlgorithmicPairs:
    """Encode string pairs with ``vocabulary`` (one token per character)."""
    if not pairs:
        raise ValueError("encode_pairs: pairs is empty")
    src, src_len = vocabulary.pad_batch([vocabulary.encode(list(s), eos=False) for s, _ in pairs])  # (N, S)
    tgt, tgt_len = vocabulary.pad_batch([vocabulary.encode(list(t), bos=True) for _, t in pairs])  # (N, T)
    return AlgorithmicPairs([s for s, _ in pairs], [t for _, t in pairs], src, src_len, tgt, tgt_len)
