"""What the sentence-pair models (ABCNN, MPCNN) share: embedding a padded pair, masks, pooled similarities.

Shape legend: ``B`` pairs, ``L`` padded length (one for both sentences), ``V`` vocabulary, ``D`` width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PairEmbedding", "check_pair", "keep_mask", "masked_mean", "similarity_features"]


def check_pair(tokens0: Tensor, tokens1: Tensor, lengths0: Tensor, lengths1: Tensor, *, length: int | None) -> None:
    """Raise ``ValueError`` naming the argument unless the pair is ``(B, L)`` ids with ``(B,)`` lengths in [1, L].

    ``length`` (when given) is the ``L`` the model was built for (ABCNN-1's weights have one column per position).
    """
    if tokens0.dim() != 2 or tokens1.dim() != 2 or tokens0.shape != tokens1.shape:
        raise ValueError(f"tokens0 and tokens1 must be (B, L) of one shape, got {tuple(tokens0.shape)} and "
                         f"{tuple(tokens1.shape)}")
    if length is not None and tokens0.shape[1] != length:
        raise ValueError(f"tokens0/tokens1 must have length L = {length} (the model's `length`), got "
                         f"{tuple(tokens0.shape)}")
    B, L = tokens0.shape
    for name, n in (("lengths0", lengths0), ("lengths1", lengths1)):
        if tuple(n.shape) != (B,):
            raise ValueError(f"{name} must be (B,) = ({B},), got {tuple(n.shape)}")
        if bool((n < 1).any()) or bool((n > L).any()):
            raise ValueError(f"{name} must be in [1, L = {L}], got min {int(n.min())}, max {int(n.max())}")


def keep_mask(lengths: Tensor, length: int) -> Tensor:
    """``(B, length)`` bool, True at positions ``< lengths``."""
    return torch.arange(length, device=lengths.device) < lengths.unsqueeze(1)


def masked_mean(x: Tensor, keep: Tensor) -> Tensor:
    """Mean of ``x (B, L, D)`` over the positions where ``keep (B, L)`` is True -> ``(B, D)`` (ABCNN's all-ap)."""
    w = keep.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


def similarity_features(r0: Tensor, r1: Tensor) -> Tensor:
    """``(B, 2)``: cosine and :math:`1/(1 + \\lVert r_0 - r_1 \\rVert)` of two pooled representations ``(B, D)``."""
    cos = F.cosine_similarity(r0, r1, dim=-1, eps=1e-8)  # (B,)
    dist = (r0 - r1).pow(2).sum(-1).add(1e-12).sqrt()  # (B,)
    return torch.stack([cos, 1.0 / (1.0 + dist)], dim=-1)


class PairEmbedding(nn.Module):
    """Word vectors for both sentences (shared), ``<pad>`` (id 0) embedded as zeros.

    Args:
        vocab_size: ``V``.
        dim: ``D``.
        vectors: optional ``(V, D)`` initial vectors (pretrained-like:
            :func:`~qkv.tasks.sentence_pairs.clustered_vectors`).
        trainable: whether the vectors are updated (ABCNN keeps word2vec fixed in some settings).
    """

    def __init__(self, vocab_size: int, dim: int, *, vectors: Tensor | None = None, trainable: bool = True) -> None:
        super().__init__()
        if vocab_size < 1 or dim < 1:
            raise ValueError(f"vocab_size and dim must be >= 1, got {vocab_size}, {dim}")
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        if vectors is not None:
            if tuple(vectors.shape) != (vocab_size, dim):
                raise ValueError(f"vectors must be (vocab_size, dim) = ({vocab_size}, {dim}), got "
                                 f"{tuple(vectors.shape)}")
            with torch.no_grad():
                self.embed.weight.copy_(vectors)
                self.embed.weight[0].zero_()
        self.embed.weight.requires_grad_(trainable)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.embed(tokens)  # (B, L, D)
