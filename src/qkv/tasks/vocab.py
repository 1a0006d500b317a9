"""Token vocabularies with the four specials every seq2seq task needs, and padding to tensors.

Shapes: B batch, L padded length.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

__all__ = ["BOS", "EOS", "PAD", "UNK", "Vocab", "char_tokenize", "word_tokenize"]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def char_tokenize(text: str) -> list[str]:
    """One token per character."""
    return list(text)


def word_tokenize(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks (``"Don't!"`` -> ``don ' t !``)."""
    return _WORD.findall(text.lower())


class Vocab:
    """A token <-> id map; ids 0..3 are ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``.

    Args:
        tokens: the non-special tokens, in id order (duplicates and specials are dropped).
    """

    specials = (PAD, BOS, EOS, UNK)

    def __init__(self, tokens: Iterable[str]) -> None:
        self.itos: list[str] = list(self.specials)
        seen = set(self.itos)
        for t in tokens:
            if t not in seen:
                seen.add(t)
                self.itos.append(t)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.pad, self.bos, self.eos, self.unk = 0, 1, 2, 3

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], *, min_freq: int = 1, max_size: int | None = None) -> Vocab:
        """From token sequences: tokens with count >= ``min_freq``, most frequent first (ties by token)."""
        counts = Counter(t for seq in sequences for t in seq)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        return cls(ranked[:max_size] if max_size is not None else ranked)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str], *, bos: bool = False, eos: bool = True) -> list[int]:
        ids = [self.stoi.get(t, self.unk) for t in tokens]
        return ([self.bos] if bos else []) + ids + ([self.eos] if eos else [])

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to (excluding) the first ``<eos>``; ``<pad>``/``<bos>`` are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i in (self.pad, self.bos):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return out

    def pad_batch(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad id lists to ``(B, L)`` with ``<pad>``; also return lengths ``(B,)``."""
        if not sequences:
            raise ValueError("pad_batch: sequences is empty")
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)  # (B,)
        out = torch.full((len(sequences), int(lengths.max())), self.pad, dtype=torch.long)  # (B, L)
        for i, s in enumerate(sequences):
            out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        return out, lengths
