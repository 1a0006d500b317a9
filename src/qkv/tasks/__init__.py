"""Data for experiments: seeded synthetic generators and real-dataset loaders, plus BLEU."""

from __future__ import annotations

from qkv.tasks.bleu import BleuScore, corpus_bleu
from qkv.tasks.dates import DateExample, alignment_accuracy, generate_dates, render_date
from qkv.tasks.vocab import Vocab, char_tokenize, word_tokenize

__all__ = [
    "BleuScore",
    "DateExample",
    "Vocab",
    "alignment_accuracy",
    "char_tokenize",
    "corpus_bleu",
    "generate_dates",
    "render_date",
    "word_tokenize",
]
