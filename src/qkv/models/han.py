"""Hierarchical attention network (Yang et al. 2016, "Hierarchical Attention Networks for Document Classification").

Shape legend: ``B`` documents, ``N`` sentences (padded), ``T`` words per sentence (padded), ``E`` word
embedding width, ``G`` GRU width per direction (states are ``2G``), ``C`` classes; id 0 is padding.

§2.2 of the paper: a word encoder (bi-GRU over each sentence, eq. 1-4), word attention with a learned word
context vector (eq. 5-7: :class:`qkv.layers.AttentionPooling`) giving one vector per sentence, a
sentence encoder (bi-GRU over the sentence vectors, eq. 8-9), sentence attention with a learned
sentence context vector (eq. 8-10) giving the document vector, and a softmax classifier (eq. 11).
Both pooling reads are :func:`qkv.attend` calls (see :class:`~qkv.layers.AttentionPooling`).
"""

from __future__ import annotations

from dataclasses import dataclass

from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from qkv.functional.checks import check_positive_int
from qkv.functional.masks import key_padding
from qkv.layers.pooling import AttentionPooling

__all__ = ["HAN", "BiGRU", "HANOutput"]


@dataclass(frozen=True)
class HANOutput:
    """``logits (B, C)``; ``word_weights (B, N, T)`` (each sentence's word distribution) and
    ``sentence_weights (B, N)``; ``None`` unless asked for."""

    logits: Tensor
    word_weights: Tensor | None = None
    sentence_weights: Tensor | None = None


class BiGRU(nn.Module):
    """A bidirectional GRU over padded sequences (packed: padding never enters a state), ``(B, L, I) -> (B, L, 2G)``."""

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.gru = nn.GRU(input_dim, hidden_dim, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        lengths = keep.sum(-1).clamp(min=1).cpu()  # an empty row runs one (masked) step
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, L, 2G)
        return out * keep.unsqueeze(-1)


class HAN(nn.Module):
    """Yang et al. 2016's HAN: word GRU + word attention, sentence GRU + sentence attention, classifier.

    Args:
        vocab_size: word ids (0 = padding).
        num_classes: ``C``.
        embed_dim: ``E``.
        hidden_dim: ``G`` (the paper: 50).
        score: the attention score of both pooling layers (``"additive"`` is the paper's eq. 5-6).
    """

    def __init__(self, vocab_size: int, num_classes: int, *, embed_dim: int = 64, hidden_dim: int = 32,
                 score: str = "additive") -> None:
        super().__init__()
        check_positive_int("vocab_size", vocab_size)
        self.num_classes = check_positive_int("num_classes", num_classes)
        embed_dim = check_positive_int("embed_dim", embed_dim)
        hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.word_encoder = BiGRU(embed_dim, hidden_dim)
        self.word_attention = AttentionPooling(2 * hidden_dim, score=score)
        self.sentence_encoder = BiGRU(2 * hidden_dim, hidden_dim)
        self.sentence_attention = AttentionPooling(2 * hidden_dim, score=score)
        self.classifier = nn.Linear(2 * hidden_dim, self.num_classes)

    def forward(self, tokens: Tensor, *, return_weights: bool = False) -> HANOutput:
        """Classify documents ``tokens (B, N, T)`` (int, 0 = padding)."""
        if not isinstance(tokens, Tensor) or tokens.dim() != 3 or tokens.dtype.is_floating_point:
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"tokens must be an integer tensor (B, N, T), got {got}")
        B = tokens.shape[0]
        words = rearrange(tokens, "b n t -> (b n) t")  # (B*N, T)
        word_keep = words != 0  # (B*N, T)
        h = self.word_encoder(self.embed(words), word_keep)  # (B*N, T, 2G)
        w = self.word_attention(h, mask=key_padding(word_keep), return_weights=return_weights)
        sentences = rearrange(w.output, "(b n) 1 d -> b n d", b=B)  # (B, N, 2G)
        sent_keep = rearrange(word_keep.any(-1), "(b n) -> b n", b=B)  # (B, N)
        hs = self.sentence_encoder(sentences, sent_keep)  # (B, N, 2G)
        s = self.sentence_attention(hs, mask=key_padding(sent_keep), return_weights=return_weights)
        logits = self.classifier(s.output[:, 0])  # (B, C)
        if not return_weights:
            return HANOutput(logits)
        word_weights = rearrange(w.weights, "(b n) 1 1 t -> b n t", b=B)  # (B, N, T)
        return HANOutput(logits, word_weights, s.weights[:, 0, 0])  # sentence weights (B, N)

