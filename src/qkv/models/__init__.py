"""Complete reference models built on qkv's layers."""

from __future__ import annotations

from qkv.models.bert import Bert, BertConfig, BertOutput
from qkv.models.gpt2 import GPT2, GPT2Cache, GPT2Config, GPT2LMHead, GPT2Output
from qkv.models.seq2seq import Seq2Seq, Seq2SeqConfig, Seq2SeqOutput
from qkv.models.transformer import (
    DecoderLayerCache,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    TransformerOutput,
)

__all__ = [
    "GPT2",
    "Bert",
    "BertConfig",
    "BertOutput",
    "DecoderLayerCache",
    "GPT2Cache",
    "GPT2Config",
    "GPT2LMHead",
    "GPT2Output",
    "Seq2Seq",
    "Seq2SeqConfig",
    "Seq2SeqOutput",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "TransformerOutput",
]
