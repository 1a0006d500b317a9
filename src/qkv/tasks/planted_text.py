"""Synthetic documents with planted evidence: a checkable text-classification task for attention.

Shapes: ``B`` documents, ``N`` sentences (padded), ``T`` words per sentence (padded), ``W`` words of the
flattened document (padded); id 0 is padding.

A document is ``N`` sentences of neutral filler words; exactly one sentence (the *evidence sentence*)
carries the label:

* ``kind="sentiment"``: a sentiment phrase, several words long, whose polarity is the label (binary):
  ``"not at all good"`` is negative, ``"not bad at all"`` positive. The modifiers ``not``, ``never``,
  ``at``, ``all``, ``really``, ``very`` also appear as decoys in filler sentences, so the polarity is
  only readable from the contiguous phrase, never from one modifier.
* ``kind="topic"``: one topic keyword (``num_topics`` classes, several keywords each).

Every document keeps where its evidence is (sentence, first word, length), so that an attention
model's weights can be scored against it: the *attention precision* of the ``text-attention``
experiment is the fraction of documents whose top-weighted word lies inside the evidence span (Yang et
al. 2016 §3.5 show the same kind of evidence qualitatively on real reviews).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from qkv.tasks.vocab import Vocab

__all__ = ["FILLER", "NEGATIVE", "POSITIVE", "TOPICS", "PlantedDocs", "make_planted_docs"]

#: Neutral filler words of the distractor sentences.
FILLER = (
    "the", "movie", "film", "plot", "actor", "actress", "scene", "camera", "story", "script", "director", "cast",
    "music", "score", "screen", "hall", "ticket", "seat", "evening", "friend", "sister", "brother", "city",
    "street", "train", "bus", "house", "garden", "window", "door", "table", "morning", "night", "summer", "winter",
    "week", "year", "hour", "minute", "coffee", "dinner", "lunch", "road", "car", "phone", "letter", "book",
    "paper", "chair", "wall", "light", "sound", "voice", "crowd", "line", "time", "place", "part", "end", "start",
    "middle", "side", "a", "an", "of", "in", "on", "to", "with", "and", "then", "there", "was", "is", "it", "we",
    "they", "he", "she", "saw", "went", "came", "left", "made", "took",
)
#: Words that occur in sentiment phrases *and* as decoys in filler sentences.
DECOYS = ("not", "never", "at", "all", "really", "very")
#: Sentiment phrases (label 1).
POSITIVE = ("good", "great", "very good", "really great", "not bad", "not at all bad", "not bad at all",
            "never boring", "not boring at all", "really fun")
#: Sentiment phrases (label 0).
NEGATIVE = ("bad", "awful", "very bad", "really awful", "not good", "not at all good", "not good at all",
            "never fun", "not fun at all", "really boring")
#: Topic keywords (class ``c`` is ``TOPICS[c]``).
TOPICS = (("football", "goal", "referee"), ("election", "senator", "ballot"), ("guitar", "concert", "album"),
          ("vaccine", "clinic", "surgeon"), ("stock", "market", "investor"), ("galaxy", "planet", "telescope"))


@dataclass(frozen=True)
class PlantedDocs:
    """Encoded documents and where their evidence is.

    Attributes:
        tokens: ``(B, N, T)`` word ids, 0 = padding (a padded sentence is all 0).
        labels: ``(B,)`` class ids.
        sentence: ``(B,)`` index of the evidence sentence.
        start: ``(B,)`` first word of the evidence inside that sentence.
        length: ``(B,)`` words of the evidence.
        vocab: the word ids.
        num_classes: 2 for sentiment, ``num_topics`` for topics.
    """

    tokens: Tensor
    labels: Tensor
    sentence: Tensor
    start: Tensor
    length: Tensor
    vocab: Vocab
    num_classes: int

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def evidence(self) -> Tensor:
        """``(B, N, T)`` bool: the words of the planted evidence."""
        B, N, T = self.tokens.shape
        n = torch.arange(N).view(1, N, 1)
        t = torch.arange(T).view(1, 1, T)
        return ((n == self.sentence.view(B, 1, 1)) & (t >= self.start.view(B, 1, 1))
                & (t < (self.start + self.length).view(B, 1, 1)))

    def flat(self) -> tuple[Tensor, Tensor, Tensor]:
        """The documents as one word sequence each: ``tokens (B, W)``, ``keep (B, W)``, ``evidence (B, W)``."""
        keep3 = self.tokens != 0  # (B, N, T)
        counts = keep3.flatten(1).sum(-1)  # (B,)
        W = int(counts.max())
        order = torch.argsort((~keep3).flatten(1).to(torch.int8), dim=-1, stable=True)[:, :W]  # (B, W): words first
        tokens = self.tokens.flatten(1).gather(1, order)  # (B, W)
        keep = torch.arange(W).view(1, W) < counts.view(-1, 1)  # (B, W)
        evidence = self.evidence().flatten(1).gather(1, order) & keep  # (B, W)
        return tokens * keep, keep, evidence

    def text(self, i: int) -> list[list[str]]:
        """Document ``i`` as its sentences' words."""
        return [[self.vocab.itos[w] for w in sent if w != 0] for sent in self.tokens[i].tolist() if any(sent)]


def _pick(seq: tuple[str, ...] | list[str], gen: torch.Generator) -> str:
    return seq[int(torch.randint(len(seq), (1,), generator=gen))]


def _randint(lo: int, hi: int, gen: torch.Generator) -> int:
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def make_planted_docs(
    count: int,
    *,
    kind: str = "sentiment",
    min_sentences: int = 3,
    max_sentences: int = 6,
    min_words: int = 5,
    max_words: int = 10,
    decoy_rate: float = 0.5,
    num_topics: int = 4,
    generator: torch.Generator | None = None,
) -> PlantedDocs:
    """``count`` documents with one planted evidence sentence each (classes balanced in expectation).

    Args:
        count: documents.
        kind: ``"sentiment"`` (binary, multi-word phrases) or ``"topic"`` (``num_topics`` classes).
        min_sentences, max_sentences: sentences per document.
        min_words, max_words: filler words per sentence (the evidence sentence adds its phrase).
        decoy_rate: probability that a filler sentence carries a decoy modifier (``not``, ``at all``, ...).
        num_topics: classes of the topic task (at most ``len(TOPICS)``).
        generator: the seed of everything drawn.
    """
    if kind not in ("sentiment", "topic"):
        raise ValueError(f"kind must be 'sentiment' or 'topic', got {kind!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    if not 1 <= min_sentences <= max_sentences:
        raise ValueError(f"need 1 <= min_sentences <= max_sentences, got {min_sentences}, {max_sentences}")
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    if not 0.0 <= decoy_rate <= 1.0:
        raise ValueError(f"decoy_rate must be in [0, 1], got {decoy_rate!r}")
    if not 2 <= num_topics <= len(TOPICS):
        raise ValueError(f"num_topics must be in [2, {len(TOPICS)}], got {num_topics!r}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    topics = TOPICS[:num_topics]
    phrase_words = {w for p in POSITIVE + NEGATIVE for w in p.split()}
    vocab = Vocab([*FILLER, *DECOYS, *sorted(phrase_words - set(DECOYS)), *(w for t in TOPICS for w in t)])
    docs, labels, where = [], [], []
    for _ in range(count):
        n = _randint(min_sentences, max_sentences, gen)
        evidence_at = _randint(0, n - 1, gen)
        sentences = []
        for s in range(n):
            words = [_pick(FILLER, gen) for _ in range(_randint(min_words, max_words, gen))]
            if s == evidence_at:
                if kind == "sentiment":
                    label = _randint(0, 1, gen)
                    phrase = _pick(POSITIVE if label == 1 else NEGATIVE, gen).split()
                else:
                    label = _randint(0, num_topics - 1, gen)
                    phrase = [_pick(topics[label], gen)]
                at = _randint(0, len(words), gen)
                words[at:at] = phrase
                where.append((s, at, len(phrase)))
                labels.append(label)
            elif float(torch.rand((), generator=gen)) < decoy_rate:
                decoy = _pick(("not", "never", "at all", "really", "very", "not at all"), gen).split()
                at = _randint(0, len(words), gen)
                words[at:at] = decoy
            sentences.append(words)
        docs.append(sentences)
    N = max(len(d) for d in docs)
    T = max(len(s) for d in docs for s in d)
    tokens = torch.zeros(count, N, T, dtype=torch.long)  # (B, N, T)
    for b, d in enumerate(docs):
        for s, words in enumerate(d):
            tokens[b, s, : len(words)] = torch.tensor([vocab.stoi[w] for w in words])
    sent, start, length = (torch.tensor(c) for c in zip(*where, strict=True))
    return PlantedDocs(tokens, torch.tensor(labels), sent, start, length, vocab,
                       2 if kind == "sentiment" else num_topics)
