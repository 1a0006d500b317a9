"""Complete reference models built on qkv's layers."""

from __future__ import annotations

from qkv.models.seq2seq import Seq2Seq, Seq2SeqConfig, Seq2SeqOutput

__all__ = ["Seq2Seq", "Seq2SeqConfig", "Seq2SeqOutput"]
