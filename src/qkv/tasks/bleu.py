"""Corpus BLEU (Papineni et al., 2002, "BLEU: a Method for Automatic Evaluation of Machine Translation").

.. math::
    \\mathrm{BLEU} = \\mathrm{BP} \\cdot \\exp\\Big(\\sum_{n=1}^{N} w_n \\log p_n\\Big),\\qquad
    \\mathrm{BP} = \\begin{cases} 1 & c > r \\\\ e^{1 - r/c} & c \\le r \\end{cases}

``p_n`` is the corpus-level *modified* n-gram precision (each hypothesis n-gram count clipped
by its maximum count in any one reference, summed over the corpus before dividing), ``c``
the total hypothesis length, ``r`` the sum over sentences of the reference length closest to
the hypothesis length (ties: the shorter), ``w_n = 1/N``. Scores are reported in [0, 100].

This works on already-tokenized text (qkv's :func:`qkv.tasks.vocab.word_tokenize`), so its
numbers are comparable between qkv variants, not with sacrebleu's detokenized 13a scores.
Smoothing ``"exp"`` is Chen & Cherry (2014) method 3 (also sacrebleu's default): the k-th
n-gram order with zero matches gets precision ``1 / (2^k * total_n)``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["BleuScore", "corpus_bleu", "ngram_counts"]


def ngram_counts(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """Counts of the n-grams of ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


@dataclass(frozen=True)
class BleuScore:
    """A corpus BLEU score with its parts."""

    score: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    hyp_len: int
    ref_len: int
    matches: tuple[int, ...]
    totals: tuple[int, ...]


def corpus_bleu(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[Sequence[str]]],
    *,
    max_n: int = 4,
    smooth: Literal["none", "exp"] = "none",
) -> BleuScore:
    """Corpus BLEU of tokenized ``hypotheses`` against one or more tokenized references each.

    Args:
        hypotheses: H token lists.
        references: H lists of reference token lists (at least one reference per hypothesis).
        max_n: highest n-gram order N.
        smooth: ``"none"`` (BLEU is 0 when some order has no match) or ``"exp"``.

    Raises:
        ValueError: different numbers of hypotheses and reference sets, a hypothesis without
            references, ``max_n < 1`` or an unknown ``smooth``.
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"corpus_bleu: {len(hypotheses)} hypotheses but {len(references)} reference sets"
        )
    if max_n < 1:
        raise ValueError(f"corpus_bleu: max_n must be >= 1, got {max_n}")
    if smooth not in ("none", "exp"):
        raise ValueError(f"corpus_bleu: smooth must be 'none' or 'exp', got {smooth!r}")
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for i, (hyp, refs) in enumerate(zip(hypotheses, references, strict=True)):
        if not refs:
            raise ValueError(f"corpus_bleu: hypothesis {i} has no reference")
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
        for n in range(1, max_n + 1):
            hyp_counts = ngram_counts(hyp, n)
            if not hyp_counts:
                continue
            max_ref: Counter[tuple[str, ...]] = Counter()
            for r in refs:
                for gram, c in ngram_counts(r, n).items():
                    max_ref[gram] = max(max_ref[gram], c)
            matches[n - 1] += sum(min(c, max_ref[g]) for g, c in hyp_counts.items())
            totals[n - 1] += sum(hyp_counts.values())
    precisions = []
    k = 1
    for m, t in zip(matches, totals, strict=True):
        if t == 0:
            precisions.append(0.0)
        elif m == 0 and smooth == "exp":
            k *= 2
            precisions.append(1.0 / (k * t))
        else:
            precisions.append(m / t)
    if hyp_len == 0:
        bp = 0.0
    elif hyp_len > ref_len:
        bp = 1.0
    else:
        bp = math.exp(1.0 - ref_len / hyp_len)
    geo_mean = math.exp(sum(math.log(p) for p in precisions) / max_n) if min(precisions) > 0.0 else 0.0
    score = 100.0 * bp * geo_mean
    return BleuScore(score, tuple(precisions), bp, hyp_len, ref_len, tuple(matches), tuple(totals))
