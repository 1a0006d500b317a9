"""Captioned digit canvases: captions recomputed from the boxes and the pixels, determinism, disjoint splits."""

from __future__ import annotations

import pytest
import torch

from qkv.tasks.digit_captions import WORDS, caption_vocab, make_captions, reading_order, split_images
from qkv.tasks.digits import load_digits


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_captions_name_the_pasted_digits_in_reading_order(digits):
    pool = torch.arange(300)
    data = make_captions(digits.images[pool], digits.labels[pool], count=40, canvas=32, grid=3,
                         generator=torch.Generator().manual_seed(0))
    vocab = caption_vocab()
    glyphs = digits.images[pool].reshape(-1, 8, 8)
    assert data.images.shape == (40, 1, 32, 32) and data.tokens.shape == (40, 6)
    assert set(data.counts.tolist()) <= {2, 3, 4}
    for n in range(40):
        k = int(data.counts[n])
        boxes = data.boxes[n, :k]
        shuffled = torch.randperm(k, generator=torch.Generator().manual_seed(n))
        order = reading_order(boxes[shuffled])  # recomputed from the boxes alone
        assert [int(shuffled[i]) for i in order] == list(range(k))
        words = []
        covered = torch.zeros(32, 32, dtype=torch.bool)
        for y0, x0, y1, x1 in boxes.tolist():
            assert y1 - y0 == 8 and x1 - x0 == 8 and 0 <= y0 < y1 <= 32 and 0 <= x0 < x1 <= 32
            assert not covered[y0:y1, x0:x1].any()  # no overlap
            covered[y0:y1, x0:x1] = True
            crop = data.images[n, 0, y0:y1, x0:x1]
            match = torch.nonzero((glyphs == crop).flatten(1).all(1)).squeeze(1)  # the source image(s)
            labels = set(digits.labels[pool][match].tolist())
            assert len(labels) == 1
            words.append(WORDS[labels.pop()])
        assert torch.all(data.images[n, 0][~covered] == 0)
        assert vocab.decode(data.tokens[n].tolist()) == words
        assert data.tokens[n, 0] == vocab.bos and data.tokens[n, k + 1] == vocab.eos and data.lengths[n] == k + 2
        assert torch.all(data.tokens[n, k + 2 :] == vocab.pad) and torch.all(data.digits[n, k:] == -1)


def test_same_seed_same_canvases_other_seed_other_canvases(digits):
    kw = {"count": 10, "canvas": 24, "grid": 2, "max_digits": 3}
    a = make_captions(digits.images, digits.labels, generator=torch.Generator().manual_seed(4), **kw)
    b = make_captions(digits.images, digits.labels, generator=torch.Generator().manual_seed(4), **kw)
    c = make_captions(digits.images, digits.labels, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(a.images, b.images) and torch.equal(a.tokens, b.tokens) and torch.equal(a.boxes, b.boxes)
    assert not torch.equal(a.images, c.images)


def test_splits_are_disjoint_and_cover_the_images():
    parts = split_images(100, fractions=(0.1, 0.2), generator=torch.Generator().manual_seed(0))
    assert [len(parts[k]) for k in ("train", "valid", "test")] == [70, 10, 20]
    assert sorted(torch.cat(list(parts.values())).tolist()) == list(range(100))
    with pytest.raises(ValueError, match="fractions"):
        split_images(100, fractions=(0.5, 0.6), generator=torch.Generator())


def test_errors_name_the_argument(digits):
    g = torch.Generator()
    with pytest.raises(ValueError, match="canvas // grid"):
        make_captions(digits.images, digits.labels, count=2, canvas=20, grid=3, generator=g)
    with pytest.raises(ValueError, match="max_digits"):
        make_captions(digits.images, digits.labels, count=2, canvas=24, grid=2, max_digits=5, generator=g)
    with pytest.raises(ValueError, match="count"):
        make_captions(digits.images, digits.labels, count=0, generator=g)
    with pytest.raises(ValueError, match="images"):
        make_captions(digits.images[:, :60], digits.labels, count=2, generator=g)
