"""A small multi-perspective CNN with attention-based input interaction (He, Wieting, Gimpel, Rao and Lin
2016, "UMD-TTIC-UW at SemEval-2016 Task 1: Attention-Based Multi-Perspective Convolutional Neural Networks";
the MPCNN of He, Gimpel and Lin 2015, "Multi-Perspective Sentence Similarity Modeling with CNNs").

Shape legend: ``B`` pairs, ``L`` padded length, ``D`` word width, ``D' = 2D`` after the interaction layer,
``K`` holistic filters (block A), ``M`` per-dimension filters (block B), ``P`` poolings, ``C`` classes.

**Attention-based input interaction** (He et al. 2016 §2.1), parameter-free:
:math:`A_{ij} = \\cos(x_{0,i}, x_{1,j})`; :math:`E_{0,i} = \\sum_j A_{ij}`, :math:`E_{1,j} = \\sum_i A_{ij}`;
:math:`\\mathrm{Att}_0 = \\mathrm{softmax}(E_0)`, :math:`\\mathrm{Att}_1 = \\mathrm{softmax}(E_1)` over real
positions; each word becomes :math:`[x_i; \\mathrm{Att}_i\\, x_i]`. ``A`` is
:func:`qkv.functional.pair_attention.pair_attention_matrix` with ``score="cosine"``, i.e.
``attend(x0, x1, x1, score="cosine", return_scores=True).scores`` with padding zeroed.

**Multi-perspective sentence model** (He et al. 2015 §3), what is kept:

* block A, *holistic* filters over whole word vectors: narrow convolutions of window sizes ``ws`` in
  ``holistic_windows`` (default 1, 2, 3; the paper's ``ws = ∞``, pooling the raw input, is dropped),
  tanh, then max, min and mean pooling over positions -> ``G_A[p][ws] (B, K)``;
* block B, *per-dimension* filters (one 1-D filter bank per embedding dimension, a grouped
  convolution): windows ``per_dim_windows`` (default 1, 2), max and min pooling -> ``G_B[p][ws] (B, D', M)``.

**Similarity measurement layer** (§4, Algorithms 1-2), with comU1(x, y) = [cos, L2 distance, |x - y|
elementwise] and comU2(x, y) = [cos, L2 distance]:

* horizontal: for each pooling and each holistic filter, the vectors over window sizes compared by comU2;
* vertical, holistic: for each pooling and each pair of window sizes (ws0 of sentence 0, ws1 of sentence
  1), comU1 of the two ``(K,)`` vectors;
* vertical, per-dimension: for each pooling, window size and filter, comU2 of the two ``(D',)`` vectors.

The features go through ``Linear -> tanh -> Linear`` to the classes (the paper's fully connected layers
and log-softmax). Not kept: ``ws = ∞``, the per-dimension block's comparisons across window sizes, and the
paper's sizes (K = 300, M = 20).
"""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.functional.pair_attention import pair_attention_matrix
from qkv.models.abcnn import PairOutput
from qkv.models.pair_inputs import PairEmbedding, check_pair, keep_mask

__all__ = ["MPCNN", "PerDimensionConv", "attention_reweight", "masked_pool"]

POOLS = ("max", "min", "mean")


def attention_reweight(x0: Tensor, x1: Tensor, keep0: Tensor, keep1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """He et al. 2016's attention-based input interaction: ``x (B, L, D)`` -> ``[x; Att x] (B, L, 2D)`` and ``A``.

    Returns:
        sentence 0 and sentence 1 re-weighted ``(B, L, 2D)`` each, and ``A (B, L, L)``.
    """
    a = pair_attention_matrix(x0, x1, score="cosine", keep0=keep0, keep1=keep1)  # (B, L, L)
    e0 = a.sum(-1).masked_fill(~keep0, float("-inf"))  # (B, L)
    e1 = a.sum(-2).masked_fill(~keep1, float("-inf"))  # (B, L)
    att0, att1 = e0.softmax(-1), e1.softmax(-1)  # (B, L)
    return (torch.cat([x0, att0.unsqueeze(-1) * x0], dim=-1),  # (B, L, 2D)
            torch.cat([x1, att1.unsqueeze(-1) * x1], dim=-1), a)


def masked_pool(x: Tensor, keep: Tensor, how: str) -> Tensor:
    """``max``/``min``/``mean`` of ``x (B, L, ...)`` over positions where ``keep (B, L)`` -> ``(B, ...)``."""
    k = keep.reshape(*keep.shape, *([1] * (x.dim() - 2)))  # (B, L, 1, ...)
    if how == "max":
        return x.masked_fill(~k, float("-inf")).amax(1)
    if how == "min":
        return x.masked_fill(~k, float("inf")).amin(1)
    if how == "mean":
        w = k.to(x.dtype)
        return (x * w).sum(1) / w.sum(1).clamp_min(1.0)
    raise ValueError(f"how must be one of {POOLS}, got {how!r}")


def _com_u2(x: Tensor, y: Tensor) -> Tensor:
    """[cos, L2 distance] over the last dim: ``(..., n)`` x2 -> ``(..., 2)``."""
    cos = F.cosine_similarity(x, y, dim=-1, eps=1e-8)
    dist = (x - y).pow(2).sum(-1).add(1e-12).sqrt()
    return torch.stack([cos, dist], dim=-1)


class PerDimensionConv(nn.Module):
    """Block B's filters: ``M`` 1-D filters of width ``ws`` per input dimension (He et al. 2015 §3.1).

    ``x (B, L, D')`` -> ``(B, L - ws + 1, D', M)``: :math:`y_{l,d,m} = \\sum_k W_{d,m,k}\\, x_{l+k,d} + b_{d,m}`
    (a grouped convolution with one group per dimension, computed as an einsum over windows).
    """

    def __init__(self, dim: int, filters: int, width: int) -> None:
        super().__init__()
        bound = width ** -0.5
        self.weight = nn.Parameter(torch.empty(dim, filters, width).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(dim, filters).uniform_(-bound, bound))
        self.width = width

    def forward(self, x: Tensor) -> Tensor:
        windows = x.unfold(1, self.width, 1)  # (B, L - ws + 1, D', ws)
        return torch.einsum("bldk,dmk->bldm", windows, self.weight) + self.bias


class MPCNN(nn.Module):
    """Attention-based MPCNN sentence-pair classifier (see the module docstring for what is kept).

    Args:
        vocab_size: ``V``.
        num_classes: ``C``.
        embed_dim: ``D``.
        holistic_filters: ``K``.
        per_dim_filters: ``M``.
        holistic_windows: block A's window sizes.
        per_dim_windows: block B's window sizes.
        hidden_dim: width of the fully connected layer.
        attention: use the attention-based input interaction (off: the plain MPCNN of He et al. 2015).
        vectors, trainable_embeddings: as in :class:`~qkv.models.abcnn.ABCNN`.
    """

    def __init__(self, vocab_size: int, *, num_classes: int = 2, embed_dim: int = 50, holistic_filters: int = 32,
                 per_dim_filters: int = 4, holistic_windows: tuple[int, ...] = (1, 2, 3),
                 per_dim_windows: tuple[int, ...] = (1, 2), hidden_dim: int = 64, attention: bool = True,
                 vectors: Tensor | None = None, trainable_embeddings: bool = True) -> None:
        super().__init__()
        if not holistic_windows or not per_dim_windows or min(*holistic_windows, *per_dim_windows) < 1:
            raise ValueError(f"holistic_windows and per_dim_windows must be non-empty positive sizes, got "
                             f"{holistic_windows}, {per_dim_windows}")
        if min(holistic_filters, per_dim_filters, hidden_dim) < 1 or num_classes < 2:
            raise ValueError(f"filter counts and hidden_dim must be >= 1 and num_classes >= 2, got "
                             f"{holistic_filters}, {per_dim_filters}, {hidden_dim}, {num_classes}")
        self.attention = attention
        self.holistic_windows, self.per_dim_windows = tuple(holistic_windows), tuple(per_dim_windows)
        self.embed = PairEmbedding(vocab_size, embed_dim, vectors=vectors, trainable=trainable_embeddings)
        d = 2 * embed_dim if attention else embed_dim
        self.holistic = nn.ModuleList(nn.Conv1d(d, holistic_filters, ws) for ws in self.holistic_windows)
        self.per_dim = nn.ModuleList(PerDimensionConv(d, per_dim_filters, ws) for ws in self.per_dim_windows)
        self.per_dim_filters = per_dim_filters
        nw = len(self.holistic_windows)
        n = (3 * holistic_filters * 2  # horizontal
             + 3 * nw * nw * (2 + holistic_filters)  # vertical, holistic
             + 2 * len(self.per_dim_windows) * per_dim_filters * 2)  # vertical, per-dimension
        self.head = nn.Sequential(nn.Linear(n, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, num_classes))

    def _sentence(self, x: Tensor, lengths: Tensor) -> tuple[dict[tuple[str, int], Tensor],
                                                             dict[tuple[str, int], Tensor]]:
        """Blocks A and B of one sentence ``x (B, L, D')``: ``G_A[pool, ws] (B, K)``, ``G_B[pool, ws] (B, D', M)``."""
        L = x.shape[1]
        xt = einops.rearrange(x, "b l d -> b d l")
        ga, gb = {}, {}
        for ws, conv in zip(self.holistic_windows, self.holistic, strict=True):
            y = torch.tanh(einops.rearrange(conv(xt), "b k l -> b l k"))  # (B, L - ws + 1, K)
            keep = keep_mask((lengths - ws + 1).clamp_min(1), L - ws + 1)  # (B, L - ws + 1)
            for how in POOLS:
                ga[how, ws] = masked_pool(y, keep, how)
        for ws, conv in zip(self.per_dim_windows, self.per_dim, strict=True):
            y = conv(x)  # (B, L - ws + 1, D', M)
            keep = keep_mask((lengths - ws + 1).clamp_min(1), L - ws + 1)
            for how in ("max", "min"):
                gb[how, ws] = masked_pool(torch.tanh(y), keep, how)
        return ga, gb

    def forward(self, tokens0: Tensor, tokens1: Tensor, lengths0: Tensor, lengths1: Tensor) -> PairOutput:
        """``tokens0, tokens1 (B, L)`` ids, ``lengths0, lengths1 (B,)`` -> :class:`~qkv.models.abcnn.PairOutput`.

        ``attention`` holds one dict with ``"input"``: the cosine attention matrix ``(B, L, L)`` (when on).
        """
        check_pair(tokens0, tokens1, lengths0, lengths1, length=None)
        L = tokens0.shape[1]
        if max(*self.holistic_windows, *self.per_dim_windows) > L:
            raise ValueError(f"tokens0/tokens1 length {L} is shorter than the largest window "
                             f"{max(*self.holistic_windows, *self.per_dim_windows)}")
        keep0, keep1 = keep_mask(lengths0, L), keep_mask(lengths1, L)
        x0, x1 = self.embed(tokens0), self.embed(tokens1)  # (B, L, D)
        attention = []
        if self.attention:
            x0, x1, a = attention_reweight(x0, x1, keep0, keep1)  # (B, L, 2D)
            attention.append({"input": a})
        ga0, gb0 = self._sentence(x0, lengths0)
        ga1, gb1 = self._sentence(x1, lengths1)
        # G_A stacked: (B, P, nw, K); G_B stacked: (B, 2, nwB, D', M)
        ga0 = torch.stack([torch.stack([ga0[how, ws] for ws in self.holistic_windows], 1) for how in POOLS], 1)
        ga1 = torch.stack([torch.stack([ga1[how, ws] for ws in self.holistic_windows], 1) for how in POOLS], 1)
        gb0 = torch.stack([torch.stack([gb0[how, ws] for ws in self.per_dim_windows], 1) for how in ("max", "min")], 1)
        gb1 = torch.stack([torch.stack([gb1[how, ws] for ws in self.per_dim_windows], 1) for how in ("max", "min")], 1)
        # horizontal: per pooling and filter, the vectors over window sizes -> (B, P, K, 2)
        horizontal = _com_u2(einops.rearrange(ga0, "b p w k -> b p k w"), einops.rearrange(ga1, "b p w k -> b p k w"))
        # vertical, holistic: every (ws0, ws1) -> comU1 = [cos, L2] (B, P, nw, nw, 2) and |u - v| (B, P, nw, nw, K)
        u, v = ga0.unsqueeze(3), ga1.unsqueeze(2)  # (B, P, nw, 1, K), (B, P, 1, nw, K)
        vertical = _com_u2(u, v)
        absdiff = (u - v).abs()
        # vertical, per-dimension: per pooling, window and filter, the (D',) vectors -> (B, 2, nwB, M, 2)
        per_dim = _com_u2(einops.rearrange(gb0, "b p w d m -> b p w m d"),
                          einops.rearrange(gb1, "b p w d m -> b p w m d"))
        feats = [t.flatten(1) for t in (horizontal, vertical, absdiff, per_dim)]  # each (B, ·)
        return PairOutput(self.head(torch.cat(feats, dim=-1)), attention)
