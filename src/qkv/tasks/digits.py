"""The handwritten digits that scikit-learn ships (8x8, 1,797 images), as ±1 patterns or as features.

Shape legend: ``P`` patterns (images), ``N = 64`` pixels.

Alpaydin and Kaynak (1998), UCI "Optical Recognition of Handwritten Digits"; ``sklearn.datasets.load_digits``
reads it from the scikit-learn package itself — no download, so the Hopfield experiments run offline.
Binarised at half the intensity range (pixel > 8 of 16 -> +1, else -1), as in the classical
associative-memory demonstrations.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["Digits", "binarize", "distinct", "load_digits"]

SIDE = 8  # images are SIDE x SIDE
MAX_INTENSITY = 16.0


@dataclass(frozen=True)
class Digits:
    """The digits: ``images (P, 64)`` intensities in [0, 1], ``labels (P,)`` in 0..9."""

    images: Tensor
    labels: Tensor

    @property
    def patterns(self) -> Tensor:
        """``(P, 64)`` ±1 patterns (:func:`binarize`)."""
        return binarize(self.images)


def _bundled_csv() -> Path | None:
    """scikit-learn's own copy of the digits (``sklearn/datasets/data/digits.csv.gz``), found without importing it."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def load_digits(*, dtype: torch.dtype = torch.float32) -> Digits:
    """Load scikit-learn's digits (bundled with scikit-learn; nothing is downloaded).

    Reads the CSV that ``sklearn.datasets.load_digits`` reads (64 intensities and the label per row)
    straight from the installed package — importing ``sklearn.datasets`` takes seconds — and falls back
    to ``load_digits`` itself if the file has moved.

    Raises:
        ImportError: scikit-learn is missing (it is a dependency of qkv: ``pip install scikit-learn``).
    """
    path = _bundled_csv()
    if path is not None:
        with gzip.open(path, "rt") as f:
            table = torch.tensor([[float(v) for v in line.split(",")] for line in f if line.strip()])  # (P, 65)
        pixels, labels = table[:, :-1], table[:, -1]
    else:
        try:
            from sklearn.datasets import load_digits as sk_load
        except ImportError as e:
            raise ImportError("the digits come with scikit-learn: pip install scikit-learn") from e
        data = sk_load()
        pixels, labels = torch.as_tensor(data.data), torch.as_tensor(data.target)
    images = (pixels / MAX_INTENSITY).to(dtype)  # (P, 64) in [0, 1]
    return Digits(images=images, labels=labels.long())


def binarize(images: Tensor, *, threshold: float = 0.5) -> Tensor:
    """``images (P, N)`` in [0, 1] -> ``(P, N)`` ±1: +1 where the intensity exceeds ``threshold``."""
    return torch.where(images > threshold, 1.0, -1.0).to(images.dtype)


def distinct(patterns: Tensor, count: int, *, min_distance: int = 1, generator: torch.Generator | None = None
             ) -> Tensor:
    """Indices of up to ``count`` patterns, in random order, pairwise at Hamming distance ``>= min_distance``.

    Binarised digits repeat (the same ±1 image for different scans); two identical stored patterns make
    "which one was retrieved" meaningless, so retrieval experiments store distinct ones.

    Args:
        patterns: ``(P, N)`` ±1.
        count: how many to pick.
        min_distance: the smallest Hamming distance allowed between two picked patterns.
        generator: the order in which candidates are tried.

    Returns:
        ``(K,)`` indices, ``K <= count``.
    """
    order = torch.randperm(patterns.shape[0], generator=generator)
    picked: list[int] = []
    kept = patterns.new_empty(0, patterns.shape[1])
    for i in order.tolist():
        if len(picked) == count:
            break
        hamming = (kept != patterns[i]).sum(-1)  # (K,)
        if kept.shape[0] == 0 or int(hamming.min()) >= min_distance:
            picked.append(i)
            kept = torch.cat([kept, patterns[i : i + 1]])
    return torch.tensor(picked, dtype=torch.long)
