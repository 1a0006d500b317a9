"""Seeded transduction sequences: reversal (needs a stack) and copy (needs a queue).

Shape legend: ``N`` sequences, ``T = 2 * max_length + 1`` time steps, ``V`` symbols, ``C = V + 1`` input
channels (the symbols and the separator).

The setting of Grefenstette et al. 2015 §4 ("sequence copying", "sequence reversal") and of the NTM's copy
task (Graves et al. 2014 §4.1) as a single stream the model reads step by step: a source of ``n`` random
symbols (one-hot), then one separator step, then ``n`` blank steps during which the model must emit the
target — the source reversed (``"reverse"``) or as it was (``"copy"``). Past ``2n + 1`` the inputs are
blank and nothing is scored. Sequence ``k`` of a batch has ``n_k`` drawn uniformly from
``[min_length, max_length]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from qkv.functional.checks import check_positive_int

__all__ = ["IGNORE", "TASKS", "Transduction", "make_transduction"]

#: The target at steps that are not scored (``ignore_index`` of :func:`torch.nn.functional.cross_entropy`).
IGNORE = -100

#: The tasks: the target is the source reversed, or copied.
TASKS = ("reverse", "copy")


@dataclass(frozen=True)
class Transduction:
    """A batch of transduction sequences.

    Attributes:
        inputs: ``(N, T, C)`` one-hot symbols (channels ``0..V-1``) and the separator (channel ``V``).
        targets: ``(N, T)`` the symbol to emit at each output step, :data:`IGNORE` elsewhere.
        sources: ``(N, max_length)`` the source symbols, -1 past each length.
        lengths: ``(N,)`` source lengths ``n``.
    """

    inputs: Tensor
    targets: Tensor
    sources: Tensor
    lengths: Tensor

    @property
    def scored(self) -> Tensor:
        """``(N, T)`` bool: the output steps (``n + 1 .. 2n``)."""
        return self.targets != IGNORE


def make_transduction(task: Literal["reverse", "copy"], count: int, *, min_length: int, max_length: int,
                      vocab_size: int, generator: torch.Generator | None = None,
                      steps: int | None = None) -> Transduction:
    """``count`` sequences of ``task`` with source lengths in ``[min_length, max_length]``.

    Args:
        task: ``"reverse"`` or ``"copy"``.
        count: ``N``.
        min_length, max_length: the range of source lengths ``n`` (uniform).
        vocab_size: ``V`` symbols.
        generator: the seed of the lengths and symbols.
        steps: ``T``, at least ``2 * max_length + 1`` (the default); longer pads with blank steps.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    count = check_positive_int("count", count)
    min_length = check_positive_int("min_length", min_length)
    max_length = check_positive_int("max_length", max_length)
    vocab_size = check_positive_int("vocab_size", vocab_size)
    if min_length > max_length:
        raise ValueError(f"min_length must be <= max_length, got {min_length} > {max_length}")
    need = 2 * max_length + 1
    total = need if steps is None else check_positive_int("steps", steps)
    if total < need:
        raise ValueError(f"steps must be >= 2 * max_length + 1 = {need}, got {total}")
    lengths = torch.randint(min_length, max_length + 1, (count,), generator=generator)  # (N,)
    symbols = torch.randint(0, vocab_size, (count, max_length), generator=generator)  # (N, max_length)
    pos = torch.arange(max_length)
    sources = symbols.masked_fill(pos[None] >= lengths[:, None], -1)  # (N, max_length)
    inputs = torch.zeros(count, total, vocab_size + 1)  # (N, T, C)
    targets = torch.full((count, total), IGNORE, dtype=torch.long)  # (N, T)
    rows = torch.arange(count)
    for i in range(max_length):  # source step i, and its output step
        live = lengths > i
        r, n = rows[live], lengths[live]
        inputs[r, i, sources[live, i]] = 1.0
        out_step = n + 1 + (n - 1 - i if task == "reverse" else i)  # (N_live,)
        targets[r, out_step] = sources[live, i]
    inputs[rows, lengths, vocab_size] = 1.0  # the separator
    return Transduction(inputs, targets, sources, lengths)
