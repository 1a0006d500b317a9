"""A flat text classifier: embed, encode (bi-GRU), pool the words into one vector, classify.

Shape legend: ``B`` documents, ``W`` words (padded; id 0 is padding), ``E`` embedding width, ``G`` GRU
width per direction, ``C`` classes; the pooling weights are ``(B, W)`` (for feature-wise attention, the
mean over features of its ``D`` distributions).

The pooling is the variable of the ``text-attention`` experiment:

* ``"mean"``: the masked mean of the states (no attention; the baseline);
* ``"additive"``/``"scaled_dot"``/...: :class:`qkv.layers.AttentionPooling` with that score (Yang et al.
  2016 eq. 5-7 for ``"additive"``);
* ``"multidim"``: :class:`qkv.layers.MultiDimensionalAttention` (Shen et al. 2018);
* ``"structured"``: :class:`qkv.layers.AttentionPooling` whose normaliser is a linear-chain CRF
  (:class:`qkv.layers.structured.SegmentationCRF`; Kim et al. 2017 §3.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from qkv.functional.checks import check_positive_int
from qkv.functional.masks import key_padding
from qkv.layers.multidimensional import MultiDimensionalAttention
from qkv.layers.pooling import AttentionPooling
from qkv.layers.structured import SegmentationCRF
from qkv.models.han import BiGRU

__all__ = ["POOLINGS", "PooledClassifier", "PooledOutput"]

POOLINGS = ("mean", "additive", "scaled_dot", "dot", "bilinear", "cosine", "multidim", "structured")


@dataclass(frozen=True)
class PooledOutput:
    """``logits (B, C)`` and, when asked for, the pooling ``weights (B, W)``."""

    logits: Tensor
    weights: Tensor | None = None


class PooledClassifier(nn.Module):
    """Embedding, bi-GRU, a pooling over words, a linear classifier.

    Args:
        vocab_size: word ids (0 = padding).
        num_classes: ``C``.
        pooling: one of :data:`POOLINGS`.
        embed_dim: ``E``.
        hidden_dim: ``G``.
        renormalize: for ``"structured"``, divide the CRF marginals by their sum.
    """

    def __init__(self, vocab_size: int, num_classes: int, *, pooling: str = "additive", embed_dim: int = 64,
                 hidden_dim: int = 32, renormalize: bool = False) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        check_positive_int("vocab_size", vocab_size)
        self.pooling = pooling
        width = 2 * check_positive_int("hidden_dim", hidden_dim)
        self.embed = nn.Embedding(vocab_size, check_positive_int("embed_dim", embed_dim), padding_idx=0)
        self.encoder = BiGRU(embed_dim, hidden_dim)
        if pooling == "multidim":
            self.pool: nn.Module | None = MultiDimensionalAttention(width)
        elif pooling == "structured":
            self.pool = AttentionPooling(width, score="additive", normalize=SegmentationCRF(renormalize=renormalize))
        elif pooling == "mean":
            self.pool = None
        else:
            self.pool = AttentionPooling(width, score=pooling)
        self.classifier = nn.Linear(width, check_positive_int("num_classes", num_classes))

    def forward(self, tokens: Tensor, *, return_weights: bool = False) -> PooledOutput:
        """Classify ``tokens (B, W)`` (int, 0 = padding)."""
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point:
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"tokens must be an integer tensor (B, W), got {got}")
        keep = tokens != 0  # (B, W)
        h = self.encoder(self.embed(tokens), keep)  # (B, W, 2G)
        if self.pool is None:
            n = keep.sum(-1, keepdim=True).clamp(min=1)  # (B, 1)
            pooled = h.sum(1) / n  # (B, 2G)
            weights = keep / n if return_weights else None  # (B, W)
        else:
            out = self.pool(h, mask=key_padding(keep), return_weights=return_weights)
            pooled = out.output[:, 0]  # (B, 2G)
            weights = out.weights.mean(1)[:, 0] if return_weights else None  # (B, W): mean over features/heads
        return PooledOutput(self.classifier(pooled), weights)
