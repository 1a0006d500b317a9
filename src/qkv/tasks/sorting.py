"""Sorting numbers by pointing (Vinyals et al. 2015, §1; Vinyals, Bengio and Kudlur 2016, §4.4).

Shape legend: ``B`` examples, ``N`` numbers per example.

The input is ``N`` numbers drawn uniformly from ``[0, 1)``; the answer is the permutation that sorts them
ascending, as a sequence of input positions (:func:`torch.argsort`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from qkv.functional.checks import check_positive_int

__all__ = ["SortingData", "make_sorting", "sorted_accuracy"]


@dataclass(frozen=True)
class SortingData:
    """``values (B, N, 1)`` numbers in ``[0, 1)`` and ``order (B, N)`` the positions that sort them ascending."""

    values: Tensor
    order: Tensor


def make_sorting(count: int, n: int, *, generator: torch.Generator) -> SortingData:
    """``count`` examples of ``n`` uniform numbers and their sorting permutation."""
    count, n = check_positive_int("count", count), check_positive_int("n", n)
    values = torch.rand(count, n, 1, generator=generator)  # (B, N, 1)
    return SortingData(values, values[..., 0].argsort(-1))


def sorted_accuracy(values: Tensor, predicted: Tensor) -> Tensor:
    """``(B,)`` bool: the predicted positions ``(B, T)`` (``-1`` padded) read the values in ascending order.

    A prediction counts when it is a permutation of all ``N`` positions and the values it reads are sorted
    (ties cannot occur for continuous draws); this does not require the exact ``argsort`` tie-break.
    """
    if values.dim() != 3 or predicted.dim() != 2 or predicted.shape[0] != values.shape[0]:
        raise ValueError(f"values must be (B, N, 1) and predicted (B, T), got {tuple(values.shape)}, "
                         f"{tuple(predicted.shape)}")
    n = values.shape[1]
    pred = predicted[:, :n]
    if pred.shape[1] < n:
        return torch.zeros(values.shape[0], dtype=torch.bool)
    valid = (pred >= 0).all(-1) & (pred.clamp(min=0).sort(-1).values == torch.arange(n)).all(-1)
    read = values[..., 0].gather(1, pred.clamp(min=0))  # (B, N)
    return valid & (read[:, 1:] >= read[:, :-1]).all(-1)
