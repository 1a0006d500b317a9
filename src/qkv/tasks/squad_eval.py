"""The official SQuAD v1.1 metrics: exact match and token F1 (Rajpurkar et al. 2016, ``evaluate-v1.1.py``).

Both compare *normalised* strings: lower-cased, punctuation (``string.punctuation``) removed, the articles
``a``/``an``/``the`` removed as words, whitespace collapsed. Exact match is 1 when the normalised prediction
equals a normalised gold answer; F1 is the harmonic mean of precision and recall over the multiset
(bag) of normalised tokens shared with a gold answer (0 when none is shared). Each question scores the
maximum over its gold answers; :func:`squad_scores` averages over questions, in percent as the official script.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

__all__ = ["exact_match", "f1", "max_over_gold", "normalize_answer", "squad_scores"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (the official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token-bag F1 of the normalised strings (0 when they share no token)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def max_over_gold(metric: Callable[[str, str], float], prediction: str, golds: Iterable[str]) -> float:
    """The best score of ``prediction`` against any of ``golds`` (a ``ValueError`` if there is none)."""
    scores = [metric(prediction, g) for g in golds]
    if not scores:
        raise ValueError("max_over_gold: golds is empty (every question needs at least one gold answer)")
    return max(scores)


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"exact_match": ..., "f1": ...}`` in percent over aligned predictions and gold-answer lists."""
    if len(predictions) != len(golds) or not predictions:
        raise ValueError(f"squad_scores: need as many predictions as gold lists (and at least one), got "
                         f"{len(predictions)} predictions and {len(golds)} gold lists")
    em = sum(max_over_gold(exact_match, p, g) for p, g in zip(predictions, golds, strict=True))
    f = sum(max_over_gold(f1, p, g) for p, g in zip(predictions, golds, strict=True))
    return {"exact_match": 100.0 * em / len(predictions), "f1": 100.0 * f / len(predictions)}
