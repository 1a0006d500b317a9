"""Captioned canvases of digits: a small, checkable stand-in for Show, Attend and Tell's image captions.

Shape legend: ``N`` canvases, ``C`` canvas side in pixels (the canvas is ``C x C``), ``K = max_digits`` digit
slots per canvas (padded), ``T`` caption length in tokens (``<bos>``, one word per digit, ``<eos>``, padding).

Each canvas holds ``min_digits``..``max_digits`` of scikit-learn's 8x8 digits (:mod:`qkv.tasks.digits`), one per
cell of a ``grid x grid`` layout of square slots of ``slot = C // grid`` pixels, each digit shifted inside its
slot by a random ``0..slot-8`` pixels in each direction. The caption names the digits in **reading order**
(top to bottom, then left to right): ``<bos> three seven one <eos>``. Slots in different rows never share a
pixel row, so the order is unambiguous: digit ``A`` comes before ``B`` when ``A``'s box lies wholly above
``B``'s, or when their boxes share rows and ``A`` is to the left. Each digit's bounding box (the 8x8 square it
was pasted into: ``y0, x0, y1, x1`` with exclusive ends) is kept, so where a captioner attends while naming a
digit can be measured (Xu et al. 2015, §5.4 and fig. 5, "learning to attend to the right object").

:func:`split_images` cuts the source images into disjoint train / validation / test pools, so test canvases are
made of digit images never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from qkv.tasks.digits import SIDE
from qkv.tasks.vocab import Vocab

__all__ = ["WORDS", "DigitCaptions", "caption_vocab", "make_captions", "reading_order", "split_images"]

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def caption_vocab() -> Vocab:
    """``<pad> <bos> <eos> <unk>`` then the ten digit words: digit ``d`` has id ``4 + d``."""
    return Vocab(WORDS)


@dataclass(frozen=True)
class DigitCaptions:
    """Canvases with their captions and digit boxes.

    Attributes:
        images: ``(N, 1, C, C)`` intensities in [0, 1].
        tokens: ``(N, T)`` caption ids ``<bos> w_1 .. w_n <eos>`` then ``<pad>`` (id 0), ``T = max_digits + 2``.
        lengths: ``(N,)`` caption lengths including ``<bos>`` and ``<eos>``.
        digits: ``(N, K)`` the digits in reading order, ``-1`` past the count.
        boxes: ``(N, K, 4)`` ``(y0, x0, y1, x1)`` of each digit in reading order (exclusive ends), ``-1`` past
            the count.
        counts: ``(N,)`` digits per canvas.
    """

    images: Tensor
    tokens: Tensor
    lengths: Tensor
    digits: Tensor
    boxes: Tensor
    counts: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


def reading_order(boxes: Tensor) -> list[int]:
    """Indices sorting ``boxes (n, 4)`` ``(y0, x0, y1, x1)`` top to bottom, then left to right.

    ``A`` precedes ``B`` when ``A`` lies wholly above ``B`` (``A.y1 <= B.y0``), or when their rows overlap and
    ``A.x0 < B.x0``. This is a total order for boxes whose row bands either overlap or are disjoint
    consistently (boxes in a grid of slots); it is independent of how the canvas was built.
    """
    from functools import cmp_to_key

    b = boxes.tolist()

    def cmp(i: int, j: int) -> int:
        if b[i][2] <= b[j][0]:
            return -1
        if b[j][2] <= b[i][0]:
            return 1
        return -1 if b[i][1] < b[j][1] else (1 if b[i][1] > b[j][1] else 0)

    return sorted(range(len(b)), key=cmp_to_key(cmp))


def split_images(count: int, *, fractions: tuple[float, float] = (0.2, 0.2), generator: torch.Generator
                 ) -> dict[str, Tensor]:
    """Disjoint index pools ``{"train", "valid", "test"}`` over ``count`` source images (a seeded permutation).

    Args:
        fractions: the validation and test fractions; the rest is for training.
    """
    valid_f, test_f = fractions
    if not (0 < valid_f < 1 and 0 < test_f < 1 and valid_f + test_f < 1):
        raise ValueError(f"fractions must be two positive fractions summing to < 1, got {fractions!r}")
    perm = torch.randperm(count, generator=generator)
    n_valid, n_test = round(valid_f * count), round(test_f * count)
    return {"valid": perm[:n_valid], "test": perm[n_valid : n_valid + n_test], "train": perm[n_valid + n_test :]}


def make_captions(
    images: Tensor, labels: Tensor, *, count: int, canvas: int = 32, grid: int = 3, min_digits: int = 2,
    max_digits: int = 4, generator: torch.Generator,
) -> DigitCaptions:
    """``count`` captioned canvases made of ``images (P, 64)`` (8x8 digits) with ``labels (P,)``.

    Args:
        canvas: ``C``, the side of the square canvas in pixels.
        grid: slots per side; ``C // grid`` must be at least 8 (a digit fits in a slot).
        min_digits, max_digits: digits per canvas (drawn uniformly), at most ``grid * grid``.
        generator: the random source (slots, shifts, images): the same seed gives the same canvases.

    Raises:
        ValueError: a digit does not fit in a slot, or the digit counts are impossible (names the argument).
    """
    if images.dim() != 2 or images.shape[1] != SIDE * SIDE:
        raise ValueError(f"images must be (P, {SIDE * SIDE}) 8x8 digits, got shape {tuple(images.shape)}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be ({images.shape[0]},), got shape {tuple(labels.shape)}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive int, got {grid!r}")
    slot = canvas // grid
    if slot < SIDE:
        raise ValueError(f"canvas // grid must be >= {SIDE} (a digit fits in a slot), got canvas={canvas}, grid={grid}")
    if not 1 <= min_digits <= max_digits <= grid * grid:
        raise ValueError(f"need 1 <= min_digits <= max_digits <= grid * grid = {grid * grid}, got "
                         f"min_digits={min_digits}, max_digits={max_digits}")
    vocab = caption_vocab()
    out = torch.zeros(count, 1, canvas, canvas, dtype=images.dtype)  # (N, 1, C, C)
    tokens = torch.full((count, max_digits + 2), vocab.pad, dtype=torch.long)  # (N, T)
    digits = torch.full((count, max_digits), -1, dtype=torch.long)  # (N, K)
    boxes = torch.full((count, max_digits, 4), -1, dtype=torch.long)  # (N, K, 4)
    counts = torch.randint(min_digits, max_digits + 1, (count,), generator=generator)  # (N,)
    glyphs = images.reshape(-1, SIDE, SIDE)  # (P, 8, 8)
    jitter = slot - SIDE
    for n in range(count):
        k = int(counts[n])
        slots = torch.randperm(grid * grid, generator=generator)[:k].sort().values  # row-major = reading order
        picks = torch.randint(0, images.shape[0], (k,), generator=generator)
        shifts = torch.randint(0, jitter + 1, (k, 2), generator=generator)
        for j in range(k):
            s = int(slots[j])
            y0 = (s // grid) * slot + int(shifts[j, 0])
            x0 = (s % grid) * slot + int(shifts[j, 1])
            out[n, 0, y0 : y0 + SIDE, x0 : x0 + SIDE] = glyphs[picks[j]]
            boxes[n, j] = torch.tensor([y0, x0, y0 + SIDE, x0 + SIDE])
            digits[n, j] = labels[picks[j]]
        words = [WORDS[int(d)] for d in digits[n, :k]]
        tokens[n, : k + 2] = torch.tensor(vocab.encode(words, bos=True, eos=True))
    return DigitCaptions(images=out, tokens=tokens, lengths=counts + 2, digits=digits, boxes=boxes, counts=counts)
