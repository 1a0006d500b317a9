"""Multiple-instance learning on bags of digits: a bag is positive when it holds a given digit.

Shape legend: ``B`` bags, ``S = max_size`` instance slots per bag (every bag is padded to ``max_size``,
not to the longest bag), ``F = 64`` features (pixels).

The MIL-MNIST setting of Ilse, Tomczak and Welling (2018, "Attention-based deep multiple instance
learning") with scikit-learn's 8x8 digits (:mod:`qkv.tasks.digits`): each bag holds ``min_size`` to
``max_size`` digits; its label says whether any instance is the ``target`` digit. Half the bags are
positive (at least one target instance); negative bags hold no target. Only bag labels are used for
training; the instance labels are kept to check where the pooling attends.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DigitBags", "make_bags"]


@dataclass(frozen=True)
class DigitBags:
    """Bags of digit images.

    Attributes:
        instances: ``(B, S, F)`` images in [0, 1], zero past each bag's length.
        lengths: ``(B,)`` instances per bag.
        labels: ``(B,)`` float, 1 for a positive bag.
        instance_labels: ``(B, S)`` the digits (-1 past the length).
        keep: ``(B, S)`` bool, True for a real instance (for :func:`qkv.masks.key_padding`).
    """

    instances: Tensor
    lengths: Tensor
    labels: Tensor
    instance_labels: Tensor

    @property
    def keep(self) -> Tensor:
        return torch.arange(self.instances.shape[1])[None] < self.lengths[:, None]  # (B, S)


def make_bags(images: Tensor, digit_labels: Tensor, *, count: int, target: int = 9, min_size: int = 5,
              max_size: int = 12, generator: torch.Generator | None = None) -> DigitBags:
    """``count`` bags drawn from ``images (P, F)`` with labels ``digit_labels (P,)``, half of them positive.

    A positive bag holds 1 to 3 instances of ``target`` at random positions; every other instance (and
    every instance of a negative bag) is drawn from the other digits.
    """
    if not 1 <= min_size <= max_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    pos_pool = torch.nonzero(digit_labels == target).squeeze(1)
    neg_pool = torch.nonzero(digit_labels != target).squeeze(1)
    if len(pos_pool) == 0 or len(neg_pool) == 0:
        raise ValueError(f"target {target} must occur in digit_labels, and other digits too")
    F = images.shape[1]
    instances = torch.zeros(count, max_size, F, dtype=images.dtype)
    inst_labels = torch.full((count, max_size), -1, dtype=torch.long)
    lengths = torch.randint(min_size, max_size + 1, (count,), generator=generator)
    labels = (torch.arange(count) % 2).float()[torch.randperm(count, generator=generator)]  # half positive
    for b in range(count):
        n = int(lengths[b])
        idx = neg_pool[torch.randint(0, len(neg_pool), (n,), generator=generator)]
        if labels[b] == 1:
            k = int(torch.randint(1, min(3, n) + 1, (1,), generator=generator))
            where = torch.randperm(n, generator=generator)[:k]
            idx[where] = pos_pool[torch.randint(0, len(pos_pool), (k,), generator=generator)]
        instances[b, :n] = images[idx]
        inst_labels[b, :n] = digit_labels[idx]
    return DigitBags(instances=instances, lengths=lengths, labels=labels, instance_labels=inst_labels)
