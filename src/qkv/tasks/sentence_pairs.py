"""Sentence pairs: a seeded synthetic paraphrase task with gold word alignments, and a SICK loader.

Shape legend: ``N`` pairs, ``L`` padded sentence length (one ``L`` for both sentences, as ABCNN's fixed
``s``), ``V`` vocabulary, ``D`` embedding width.

**Synthetic task** (:func:`make_pairs`). Sentence 0 follows the template
``the [ADJ] NOUN VERB the [ADJ] NOUN [PREP the PLACE]`` (bracketed parts optional). Sentence 1 is

* a **paraphrase** (label 1): the same proposition, each content word replaced by its synonym with
  probability ``synonym_p``, in the active voice or the passive (``the NOUN2 was VERB by the NOUN1``),
  the prepositional phrase possibly moved to the front; or
* a **non-paraphrase** (label 0) built from a paraphrase by one of: swapping the two arguments (who did
  what to whom; the same bag of words), inserting ``not`` before the verb, or replacing one noun or the
  verb by a word of another synonym set.

Every content word of sentence 0 (adjective, noun, verb, preposition, place) has a **gold partner** in
sentence 1 — the position of the same word or its synonym — unless it was replaced (then none); function
words (``the``, ``was``, ``by``, ``not``) have none. ``align[n, i]`` is that position or ``-1``. Attention
alignment accuracy (:func:`alignment_accuracy`) asks, for each word of sentence 0 with a gold partner,
whether the attention row's argmax over sentence 1 is the partner.

:func:`clustered_vectors` gives the words "pretrained" vectors in which synonyms are near each other (a
shared centre plus noise), the role word2vec plays in the papers.

**SICK** (Marelli et al. 2014; ABCNN's entailment benchmark): ``SICK.txt``, tab separated with a header
``pair_ID  sentence_A  sentence_B  entailment_label  relatedness_score  ...  SemEval_set``; labels
ENTAILMENT / NEUTRAL / CONTRADICTION, sets TRAIN / TRIAL / TEST. Looked for in ``data_dir`` (``--data-dir``),
``$QKV_DATA_DIR``, then :func:`cache_dir`; :func:`download` fetches :data:`SICK_URL` (a Zenodo mirror of
the SemEval-2014 Task 1 release). SICK has no gold alignments (``align`` is all ``-1``).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from qkv.tasks import data_files
from qkv.tasks.vocab import Vocab, word_tokenize
from qkv.train.io import atomic_write_bytes

__all__ = [
    "SICK_LABELS",
    "SICK_SHA256",
    "SICK_URL",
    "SentencePairs",
    "alignment_accuracy",
    "cache_dir",
    "chance_alignment",
    "clustered_vectors",
    "download",
    "find_sick",
    "load_sick",
    "make_pairs",
    "synthetic_vocab",
]

# -- the synthetic task's lexicon: synonym sets --------------------------------------------------------------

NOUNS = (("dog", "hound"), ("cat", "feline"), ("boy", "lad"), ("girl", "lass"), ("man", "guy"),
         ("woman", "lady"), ("horse", "steed"), ("bird", "fowl"), ("teacher", "tutor"), ("doctor", "physician"),
         ("child", "kid"), ("farmer", "grower"))
VERBS = (("chased", "pursued"), ("watched", "observed"), ("helped", "aided"), ("pushed", "shoved"),
         ("hit", "struck"), ("liked", "admired"), ("called", "summoned"), ("followed", "trailed"))
ADJECTIVES = (("big", "large"), ("small", "little"), ("happy", "glad"), ("quick", "fast"), ("old", "aged"),
              ("angry", "mad"))
PREPOSITIONS = (("near", "beside"), ("in", "inside"))
PLACES = (("park", "garden"), ("street", "road"), ("house", "home"), ("field", "meadow"))
FUNCTION_WORDS = ("the", "was", "by", "not")
SYNONYM_SETS: tuple[tuple[str, str], ...] = NOUNS + VERBS + ADJECTIVES + PREPOSITIONS + PLACES
NEGATIVE_KINDS = ("swap", "negation", "replace")


@dataclass
class SentencePairs:
    """A batch of sentence pairs as padded ids.

    Attributes:
        tokens0, tokens1: ``(N, L)`` word ids, ``0`` = padding.
        lengths0, lengths1: ``(N,)`` real lengths.
        labels: ``(N,)`` class ids (synthetic: 1 paraphrase, 0 not; SICK: :data:`SICK_LABELS`).
        align: ``(N, L)`` gold partner position in sentence 1 of each word of sentence 0, ``-1`` if none.
        kinds: per pair, how sentence 1 was made (``"active"``, ``"passive"``, ``"swap"``, ...).
        vocab: the id <-> word map.
    """

    tokens0: Tensor
    tokens1: Tensor
    lengths0: Tensor
    lengths1: Tensor
    labels: Tensor
    align: Tensor
    kinds: list[str]
    vocab: Vocab

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def words(self, n: int) -> tuple[list[str], list[str]]:
        """The two sentences of pair ``n`` as words."""
        w0 = [self.vocab.itos[i] for i in self.tokens0[n, : int(self.lengths0[n])].tolist()]
        w1 = [self.vocab.itos[i] for i in self.tokens1[n, : int(self.lengths1[n])].tolist()]
        return w0, w1


def synthetic_vocab() -> Vocab:
    """Every word of the synthetic task (plus the four specials; ``<pad>`` is id 0)."""
    return Vocab([w for pair in SYNONYM_SETS for w in pair] + list(FUNCTION_WORDS))


def clustered_vectors(vocab: Vocab, dim: int, *, noise: float = 0.5, generator: torch.Generator) -> Tensor:
    """``(V, D)`` "pretrained" vectors: synonyms share a random centre; each word adds ``noise``-scaled noise.

    Centres and noise are ``N(0, 1/D)`` per coordinate, so unrelated words have cosine near 0 and synonyms
    about ``1 / (1 + noise²)``. Words outside the synonym sets get their own random vector; ``<pad>`` is 0.

    Raises:
        ValueError: ``dim < 1`` or ``noise < 0``.
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    std = dim ** -0.5
    out = torch.randn(len(vocab), dim, generator=generator) * std  # (V, D)
    for pair in SYNONYM_SETS:
        centre = torch.randn(dim, generator=generator) * std
        for w in pair:
            if w in vocab.stoi:
                out[vocab.stoi[w]] = centre + noise * torch.randn(dim, generator=generator) * std
    out[vocab.pad] = 0.0
    return out


class _Draw:
    """Small helpers over a ``random.Random`` seeded from one draw of the caller's torch.Generator (fast per word)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.r = random.Random(int(torch.randint(2**62, (1,), generator=generator)))

    def below(self, n: int) -> int:
        return self.r.randrange(n)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def distinct(self, n: int, k: int) -> list[int]:
        return self.r.sample(range(n), k)


def _pair(d: _Draw, *, synonym_p: float, negative: bool) -> tuple[list[str], list[str], list[int], str]:
    """One pair: (sentence 0, sentence 1, gold alignment of sentence 0, kind)."""
    n1, n2 = d.distinct(len(NOUNS), 2)
    verb = d.below(len(VERBS))
    a1 = d.below(len(ADJECTIVES)) if d.chance(0.5) else None
    a2 = d.below(len(ADJECTIVES)) if d.chance(0.5) else None
    if a1 is not None and a1 == a2:
        a2 = None  # one adjective per synonym set, so every content word has one partner
    pp = (d.below(len(PREPOSITIONS)), d.below(len(PLACES))) if d.chance(0.5) else None

    # Sentence 0: (word, concept id) with concept = (set name, index) or None for function words.
    def np_(adj: int | None, noun: int, role: str, syn: bool) -> list[tuple[str, object]]:
        out: list[tuple[str, object]] = [("the", None)]
        if adj is not None:
            out.append((ADJECTIVES[adj][int(syn and d.chance(synonym_p))], ("adj", role)))
        out.append((NOUNS[noun][int(syn and d.chance(synonym_p))], ("noun", role)))
        return out

    def pp_(syn: bool) -> list[tuple[str, object]]:
        assert pp is not None
        return [(PREPOSITIONS[pp[0]][int(syn and d.chance(synonym_p))], ("prep", 0)), ("the", None),
                (PLACES[pp[1]][int(syn and d.chance(synonym_p))], ("place", 0))]

    s0 = [*np_(a1, n1, "agent", False), (VERBS[verb][0], ("verb", 0)), *np_(a2, n2, "patient", False)]
    if pp is not None:
        s0 += pp_(False)

    kind = "passive" if d.chance(0.5) else "active"
    agent, patient = (a1, n1, "agent"), (a2, n2, "patient")
    neg = NEGATIVE_KINDS[d.below(len(NEGATIVE_KINDS))] if negative else None
    if neg == "swap":  # who did what to whom is reversed: the same words, the other roles
        agent, patient = (a2, n2, "patient"), (a1, n1, "agent")
    vword = (VERBS[verb][int(d.chance(synonym_p))], ("verb", 0))
    neg_word = [("not", None)] if neg == "negation" else []
    subj = np_(agent[0], agent[1], agent[2], True)
    obj = np_(patient[0], patient[1], patient[2], True)
    if kind == "active":
        s1 = [*subj, *neg_word, vword, *obj]
    else:
        s1 = [*obj, ("was", None), *neg_word, vword, ("by", None), *subj]
    if pp is not None:
        phrase = pp_(True)
        s1 = phrase + s1 if d.chance(0.5) else s1 + phrase
    if neg == "replace":  # one noun or the verb becomes a word of another synonym set
        target = d.below(3)
        concept = ("noun", "agent") if target == 0 else ("noun", "patient") if target == 1 else ("verb", 0)
        pos = next(j for j, (_, c) in enumerate(s1) if c == concept)
        if concept[0] == "noun":
            used = {n1, n2}
            other = [i for i in range(len(NOUNS)) if i not in used][d.below(len(NOUNS) - 2)]
            s1[pos] = (NOUNS[other][d.below(2)], ("replaced", 0))
        else:
            other = [i for i in range(len(VERBS)) if i != verb][d.below(len(VERBS) - 1)]
            s1[pos] = (VERBS[other][d.below(2)], ("replaced", 0))
    where = {c: j for j, (_, c) in enumerate(s1) if c is not None}
    align = [where.get(c, -1) if c is not None else -1 for _, c in s0]
    return [w for w, _ in s0], [w for w, _ in s1], align, neg or kind


def _pad(rows: Sequence[Sequence[int]], length: int, fill: int = 0) -> Tensor:
    out = torch.full((len(rows), length), fill, dtype=torch.long)  # (N, L)
    for n, row in enumerate(rows):
        out[n, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


#: The longest sentence the templates make: the ADJ NOUN was not VERB by the ADJ NOUN PREP the PLACE.
MAX_LENGTH = 13


def make_pairs(count: int, *, generator: torch.Generator, synonym_p: float = 0.5,
               negative_fraction: float = 0.5, length: int = MAX_LENGTH) -> SentencePairs:
    """``count`` synthetic pairs with gold alignments (see the module docstring), padded to ``length``.

    Raises:
        ValueError: ``count < 1``, a probability outside [0, 1], or ``length`` below :data:`MAX_LENGTH`.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    for name, p in (("synonym_p", synonym_p), ("negative_fraction", negative_fraction)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    if length < MAX_LENGTH:
        raise ValueError(f"length must be >= {MAX_LENGTH} (the longest template sentence), got {length}")
    vocab = synthetic_vocab()
    d = _Draw(generator)
    negatives = set(d.distinct(count, round(negative_fraction * count)))
    s0s, s1s, aligns, labels, kinds = [], [], [], [], []
    for n in range(count):
        s0, s1, align, kind = _pair(d, synonym_p=synonym_p, negative=n in negatives)
        s0s.append(vocab.encode(s0, eos=False))
        s1s.append(vocab.encode(s1, eos=False))
        aligns.append(align)
        labels.append(0 if n in negatives else 1)
        kinds.append(kind)
    return SentencePairs(
        tokens0=_pad(s0s, length), tokens1=_pad(s1s, length),
        lengths0=torch.tensor([len(s) for s in s0s]), lengths1=torch.tensor([len(s) for s in s1s]),
        labels=torch.tensor(labels), align=_pad(aligns, length, fill=-1), kinds=kinds, vocab=vocab)


def chance_alignment(pairs: SentencePairs) -> float:
    """The alignment accuracy of a uniformly random argmax: mean of ``1 / len(sentence 1)`` over gold words."""
    has = pairs.align >= 0  # (N, L)
    per = (1.0 / pairs.lengths1.float()).unsqueeze(1).expand_as(has)  # (N, L)
    return float(per[has].mean()) if bool(has.any()) else float("nan")


def alignment_accuracy(attention: Tensor, align: Tensor, lengths1: Tensor) -> float:
    """Fraction of sentence-0 words with a gold partner whose attention row peaks at the partner.

    Args:
        attention: ``(N, L0, L1)`` attention matrices (rows: words of sentence 0; ``L0, L1 >= L`` are cut).
        align: ``(N, L)`` gold partner positions, ``-1`` where none.
        lengths1: ``(N,)`` real lengths of sentence 1 (the argmax runs over real words only).

    Raises:
        ValueError: shapes that do not fit together.
    """
    if attention.dim() != 3 or align.dim() != 2 or attention.shape[0] != align.shape[0] \
            or attention.shape[1] < align.shape[1] or lengths1.shape != align.shape[:1]:
        raise ValueError(f"attention (N, L0, L1), align (N, L) with L0 >= L and lengths1 (N,) expected, got "
                         f"attention {tuple(attention.shape)}, align {tuple(align.shape)}, "
                         f"lengths1 {tuple(lengths1.shape)}")
    L = align.shape[1]
    a = attention[:, :L].float()  # (N, L, L1)
    real = torch.arange(a.shape[-1]) < lengths1.unsqueeze(1)  # (N, L1)
    a = a.masked_fill(~real.unsqueeze(1), float("-inf"))
    has = align >= 0
    if not bool(has.any()):
        return float("nan")
    return float((a.argmax(-1) == align)[has].float().mean())


# -- SICK --------------------------------------------------------------------------------------------------

SICK_URL = "https://zenodo.org/records/2787612/files/SICK.zip"
#: SHA-256 of ``SICK.zip``: unknown — this project could not download it to compute one (no network
#: access); None. :func:`download` verifies when a digest is given and records the digest it saw.
SICK_SHA256: str | None = None
SICK_LABELS = ("NEUTRAL", "ENTAILMENT", "CONTRADICTION")
SICK_SETS = ("TRAIN", "TRIAL", "TEST")
_SICK = "SICK.txt"
_SICK_HEADER = ("pair_ID", "sentence_A", "sentence_B", "entailment_label", "relatedness_score")


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/qkv/sick`` (default ``~/.cache/qkv/sick``)."""
    return data_files.cache_dir("sick")


def find_sick(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first ``SICK.txt`` in ``data_dir`` (or ``data_dir/SICK/``), ``$QKV_DATA_DIR``, then the cache.

    Raises:
        FileNotFoundError: ``data_dir`` was given but does not exist.
    """
    given = data_files.checked_data_dir(data_dir)
    if given is not None and given.is_file():
        return given
    dirs = [*data_files.search_roots(data_dir), cache_dir()]
    for d in dirs:
        for candidate in (d / _SICK, d / "SICK" / _SICK, d / "sick" / _SICK):
            if candidate.is_file():
                return candidate
    return None


def download(dest_dir: str | os.PathLike[str] | None = None, *, sha256: str | None = None,
             timeout: float = 60.0) -> Path:
    """Download :data:`SICK_URL`, verify it when a digest is known, and extract ``SICK.txt`` into the cache.

    Raises:
        OSError: the download failed.
        ValueError: the digest differs from the expected one, or the archive holds no ``SICK.txt``.
    """
    dest = Path(dest_dir) if dest_dir is not None else cache_dir()
    data = data_files.fetch(SICK_URL, sha256=sha256 or SICK_SHA256, timeout=timeout)
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(dest / "SICK.zip.sha256", (digest + "\n").encode())
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = [n for n in zf.namelist() if Path(n).name == _SICK]
        if not names:
            raise ValueError(f"{SICK_URL} holds no {_SICK} (it has {zf.namelist()[:5]})")
        atomic_write_bytes(dest / _SICK, zf.read(names[0]))
    return dest / _SICK


def load_sick(path: str | os.PathLike[str], *, length: int | None = None,
              vocab: Vocab | None = None) -> dict[str, SentencePairs]:
    """Read ``SICK.txt`` into one :class:`SentencePairs` per SemEval set (``"TRAIN"``, ``"TRIAL"``, ``"TEST"``).

    Sentences are lower-cased word tokens (:func:`qkv.tasks.vocab.word_tokenize`); labels index
    :data:`SICK_LABELS`; ``align`` is all ``-1`` (SICK has no alignments).

    Args:
        path: the file.
        length: padded length; ``None``: the longest sentence (longer ones are cut to ``length``).
        vocab: the word map; ``None``: built from the TRAIN set (other words become ``<unk>``).

    Raises:
        ValueError: the header lacks SICK's columns, a row has too few fields, or an unknown label/set.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"{str(path)!r} is empty (expected SICK.txt with a header line)")
    header = lines[0].split("\t")
    missing = [c for c in (*_SICK_HEADER, "SemEval_set") if c not in header]
    if missing:
        raise ValueError(f"{str(path)!r} is not SICK.txt: its header {header[:6]} lacks columns {missing}")
    col = {c: header.index(c) for c in (*_SICK_HEADER, "SemEval_set")}
    rows: dict[str, list[tuple[list[str], list[str], int]]] = {s: [] for s in SICK_SETS}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < len(header):
            raise ValueError(f"{str(path)!r} line {number}: {len(fields)} fields, the header has {len(header)}")
        label, split = fields[col["entailment_label"]].strip(), fields[col["SemEval_set"]].strip()
        if label not in SICK_LABELS:
            raise ValueError(f"{str(path)!r} line {number}: entailment_label must be one of {SICK_LABELS}, "
                             f"got {label!r}")
        if split not in SICK_SETS:
            raise ValueError(f"{str(path)!r} line {number}: SemEval_set must be one of {SICK_SETS}, got {split!r}")
        rows[split].append((word_tokenize(fields[col["sentence_A"]]), word_tokenize(fields[col["sentence_B"]]),
                            SICK_LABELS.index(label)))
    if vocab is None:
        vocab = Vocab.build([s for a, b, _ in rows["TRAIN"] for s in (a, b)])
    if length is None:
        length = max((max(len(a), len(b)) for r in rows.values() for a, b, _ in r), default=1)
    out = {}
    for split, items in rows.items():
        s0 = [vocab.encode(a[:length], eos=False) for a, _, _ in items]
        s1 = [vocab.encode(b[:length], eos=False) for _, b, _ in items]
        out[split] = SentencePairs(
            tokens0=_pad(s0, length), tokens1=_pad(s1, length),
            lengths0=torch.tensor([len(s) for s in s0], dtype=torch.long),
            lengths1=torch.tensor([len(s) for s in s1], dtype=torch.long),
            labels=torch.tensor([y for _, _, y in items], dtype=torch.long),
            align=torch.full((len(items), length), -1, dtype=torch.long), kinds=["sick"] * len(items), vocab=vocab)
    return out
