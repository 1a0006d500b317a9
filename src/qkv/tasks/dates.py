"""Synthetic date normalisation: ``"21 Nov 2026"`` -> ``"2026-11-21"`` (character level).

A translation task whose alignment is known: every output character comes from a definite
span of the input (year digits from the year, month digits from the month name or number,
day digits from the day), so a model's attention can be *checked*, not only looked at:
:func:`alignment_accuracy` counts how often the most-attended source character lies in the
gold span. The output order (year, month, day) differs from most input orders, so the
alignment is non-monotonic — which is what global attention handles and Luong's local-m
(monotonic window centre ``p_t = t``) does not.

Everything is generated from a seed (``random.Random(seed)``), so a Config plus seed fixes
the data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

import torch

__all__ = ["FORMATS", "DateExample", "alignment_accuracy", "generate_dates", "render_date"]

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

#: Input formats; each field is a tuple (kind, text-producing key).
FORMATS = (
    "{d} {mon} {Y}",          # 21 Nov 2026
    "{dd} {mon} {Y}",         # 21 Nov 2026 / 01 Nov 2026
    "{d} {month} {Y}",        # 21 November 2026
    "{month} {d}, {Y}",       # November 21, 2026
    "{mon} {d}, {Y}",         # Nov 21, 2026
    "{dd}/{mm}/{Y}",          # 21/11/2026
    "{d}.{m}.{Y}",            # 21.11.2026
    "{wd}, {d} {mon} {Y}",    # Sat, 21 Nov 2026
)


@dataclass(frozen=True)
class DateExample:
    """One pair; ``alignment[t]`` is the set of source positions that determine target char ``t``."""

    source: str
    target: str
    alignment: tuple[frozenset[int], ...]


def render_date(day: date, fmt: str) -> DateExample:
    """Render ``day`` in input format ``fmt`` (one of :data:`FORMATS`) with its gold alignment."""
    fields = {
        "d": (str(day.day), "day"), "dd": (f"{day.day:02d}", "day"), "m": (str(day.month), "month"),
        "mm": (f"{day.month:02d}", "month"), "mon": (_MONTHS[day.month - 1][:3], "month"),
        "month": (_MONTHS[day.month - 1], "month"), "Y": (f"{day.year:04d}", "year"),
        "wd": (_DAYS[day.weekday()][:3], "weekday"),
    }
    source, spans = "", {"day": [], "month": [], "year": []}
    i = 0
    while i < len(fmt):
        if fmt[i] == "{":
            j = fmt.index("}", i)
            text, kind = fields[fmt[i + 1 : j]]
            if kind in spans:
                spans[kind] = list(range(len(source), len(source) + len(text)))
            source += text
            i = j + 1
        else:
            source += fmt[i]
            i += 1
    target = f"{day.year:04d}-{day.month:02d}-{day.day:02d}"
    year, month, dayspan = spans["year"], spans["month"], spans["day"]

    def digit_source(span: list[int], k: int, width: int) -> frozenset[int]:
        # digit k (0-based) of a zero-padded field of `width` digits, read from a source span that
        # may be shorter (day "1" -> "01"): the padding zero is determined by the whole span.
        if len(span) == width:
            return frozenset([span[k]])
        return frozenset(span)

    align: list[frozenset[int]] = [digit_source(year, k, 4) for k in range(4)]
    align.append(frozenset())  # '-'
    numeric_month = source[month[0]].isdigit()
    align += [digit_source(month, k, 2) if numeric_month else frozenset(month) for k in range(2)]
    align.append(frozenset())  # '-'
    align += [digit_source(dayspan, k, 2) for k in range(2)]
    return DateExample(source, target, tuple(align))


def generate_dates(n: int, *, seed: int, start: date = date(1950, 1, 1), end: date = date(2049, 12, 31),
                   formats: tuple[str, ...] = FORMATS) -> list[DateExample]:
    """``n`` random dates in ``[start, end]``, each in a random format, drawn from ``random.Random(seed)``."""
    if n < 0:
        raise ValueError(f"generate_dates: n must be >= 0, got {n}")
    if end < start:
        raise ValueError(f"generate_dates: end ({end}) is before start ({start})")
    rng = random.Random(seed)
    span = (end - start).days
    return [render_date(start + timedelta(days=rng.randint(0, span)), rng.choice(formats)) for _ in range(n)]


def alignment_accuracy(weights: torch.Tensor, examples: list[DateExample]) -> float:
    """Fraction of aligned target characters whose most-attended source character is in the gold set.

    Args:
        weights: ``(B, T, S)`` attention weights; row t is the distribution while emitting
            target character t (teacher-forced, so t indexes ``example.target``).
        examples: the B examples.
    """
    if weights.dim() != 3 or weights.shape[0] != len(examples):
        raise ValueError(
            f"alignment_accuracy: weights must be (B, T, S) with B={len(examples)}, got {tuple(weights.shape)}"
        )
    hits = total = 0
    top = weights.argmax(dim=-1)  # (B, T)
    for b, ex in enumerate(examples):
        for t, gold in enumerate(ex.alignment):
            if gold and t < top.shape[1]:
                total += 1
                hits += int(int(top[b, t]) in gold)
    return hits / total if total else 0.0
