"""BCNN and ABCNN-1/2/3 (Yin, Schütze, Xiang and Zhou 2016, "ABCNN: Attention-Based Convolutional Neural
Network for Modeling Sentence Pairs", TACL).

Shape legend: ``B`` pairs, ``L`` padded sentence length (the paper's ``s``, one for both sentences), ``w``
filter width, ``Lc = L + w - 1`` wide-convolution columns, ``D`` input width of a layer, ``E`` its output
width, ``C`` classes. The paper writes a sentence as a ``d × s`` feature map with one column per word; this
module keeps columns as rows, ``(B, L, D)``.

* **BCNN** (§3): per layer a *wide* convolution (zero padding ``w - 1`` on both sides, so ``Lc = s + w - 1``
  columns) with tanh, then *w-ap* (average over windows of ``w`` columns, back to ``s``). The final
  representation is the *all-ap* (average over all columns) of the last convolution; a logistic
  regression (softmax for ``C > 2``) reads both sentences' final all-ap plus, per layer including the
  input, their cosine and :math:`1/(1 + \\lVert\\cdot\\rVert)` similarities (the paper forwards all-ap
  similarities of every layer to the LR).
* **ABCNN-1** (§4.1, eq. 1-2): before a convolution, the attention matrix of the layer's inputs,
  :math:`A_{ij} = \\text{match-score}(F_0[:, i], F_1[:, j])`, :math:`\\text{match-score}(x, y) = 1/(1 + |x - y|)`;
  attention feature maps :math:`F_{0,a} = W_0 A^\\top` and :math:`F_{1,a} = W_1 A` (``W_0, W_1`` are
  ``D × s``) are stacked with the representation as a second input channel. A 2-channel convolution is a
  convolution over the concatenated features ``[F; F_a]``, which is how it is computed.
* **ABCNN-2** (§4.2, eq. 3-5): the attention matrix of the convolution outputs (``Lc × Lc``); the row sums
  :math:`a_{0,j} = \\sum A[j, :]` and column sums :math:`a_{1,j} = \\sum A[:, j]` weight the w-ap pooling,
  :math:`F^p_{i,r}[:, j] = \\sum_{k=j}^{j+w-1} a_{i,k} F^c_{i,r}[:, k]`.
* **ABCNN-3** (§4.3): both.

Both attention matrices are :func:`qkv.functional.pair_attention.pair_attention_matrix` with the score
:class:`qkv.functional.match_scores.EuclideanMatch`, i.e. ``attend(F0, F1, F1, score=EuclideanMatch(),
return_scores=True).scores`` with padding rows and columns zeroed. Padding: sentences are zero-padded to
``L``; columns outside a sentence's real extent (``length`` words, ``length + w - 1`` convolution columns)
are zeroed after each step and all-ap averages over real columns only, so a pair is computed as if unpadded
except for ABCNN-1's position-indexed ``W`` (as in the paper, where ``s`` is fixed).
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.functional.match_scores import EuclideanMatch
from qkv.functional.pair_attention import pair_attention_matrix
from qkv.models.pair_inputs import PairEmbedding, check_pair, keep_mask, masked_mean, similarity_features

__all__ = ["ABCNN", "ABCNN_VARIANTS", "ABCNNLayer", "PairOutput", "attention_features", "attention_pool",
           "conv_word_view", "w_ap"]

#: The variants, by which attention they use: (attention on the input, attention-weighted pooling).
ABCNN_VARIANTS = {"bcnn": (False, False), "abcnn1": (True, False), "abcnn2": (False, True), "abcnn3": (True, True)}


@dataclass
class PairOutput:
    """A sentence-pair model's result.

    Attributes:
        logits: ``(B, C)``.
        attention: per layer, the attention matrices it formed by name (``"input"`` ``(B, L, L)``,
            ``"conv"`` ``(B, Lc, Lc)``); empty for BCNN.
    """

    logits: Tensor
    attention: list[dict[str, Tensor]]


def w_ap(x: Tensor, width: int) -> Tensor:
    """Windowed average pooling (BCNN §3): ``x (B, Lc, E)`` -> ``(B, Lc - width + 1, E)``, mean of ``width`` columns."""
    y = F.avg_pool1d(einops.rearrange(x, "b l e -> b e l"), kernel_size=width, stride=1)  # (B, E, Lc - w + 1)
    return einops.rearrange(y, "b e l -> b l e")


def attention_pool(x: Tensor, weights: Tensor, width: int) -> Tensor:
    """ABCNN-2's attention-weighted w-ap (Yin et al. 2016, eq. 5): :math:`\\sum_{k=j}^{j+w-1} a_k x_k`.

    Args:
        x: convolution outputs ``(B, Lc, E)``.
        weights: attention weights ``(B, Lc)`` (row or column sums of the attention matrix).
        width: ``w``.

    Returns:
        ``(B, Lc - w + 1, E)``.
    """
    if weights.shape != x.shape[:2]:
        raise ValueError(f"weights must be (B, Lc) = {tuple(x.shape[:2])} for x {tuple(x.shape)}, "
                         f"got {tuple(weights.shape)}")
    return w_ap(x * weights.unsqueeze(-1), width) * width  # a window sum, not a mean (eq. 5)


def attention_features(attention: Tensor, w0: Tensor, w1: Tensor) -> tuple[Tensor, Tensor]:
    """ABCNN-1's attention feature maps (eq. 2): :math:`F_{0,a} = W_0 A^\\top`, :math:`F_{1,a} = W_1 A`.

    Args:
        attention: ``A (B, L0, L1)``.
        w0: ``W_0 (D, L1)``.
        w1: ``W_1 (D, L0)``.

    Returns:
        ``F_{0,a}`` as rows ``(B, L0, D)`` and ``F_{1,a}`` ``(B, L1, D)``.
    """
    if w0.shape[1] != attention.shape[2] or w1.shape[1] != attention.shape[1] or w0.shape[0] != w1.shape[0]:
        raise ValueError(f"w0 must be (D, L1) and w1 (D, L0) for attention {tuple(attention.shape)}, got "
                         f"w0 {tuple(w0.shape)} and w1 {tuple(w1.shape)}")
    f0a = torch.einsum("bij,dj->bid", attention, w0)  # (B, L0, D): column i of W0 Aᵀ
    f1a = torch.einsum("bij,di->bjd", attention, w1)  # (B, L1, D): column j of W1 A
    return f0a, f1a


def conv_word_view(attention: Tensor, width: int, length: int) -> Tensor:
    """The ``(B, L, L)`` block of a convolution-level attention matrix ``(B, Lc, Lc)`` centred on the words.

    Wide-convolution column ``c`` covers words ``c - w + 1 .. c``; the column centred on word ``i`` is
    ``i + (w - 1) // 2``, so row/column ``i`` of the result belongs to word ``i`` (for alignment scoring).
    """
    off = (width - 1) // 2
    return attention[:, off: off + length, off: off + length]


class ABCNNLayer(nn.Module):
    """One (A)BCNN layer: [ABCNN-1 attention features] -> wide conv + tanh -> [attention-weighted] w-ap.

    Args:
        in_dim: ``D``.
        out_dim: ``E`` (the number of filters).
        width: filter width ``w`` (>= 1).
        length: ``L`` (ABCNN-1's ``W_0, W_1`` have one column per position).
        attention_input: ABCNN-1's attention on the input.
        attention_pooling: ABCNN-2's attention-weighted pooling.
    """

    def __init__(self, in_dim: int, out_dim: int, *, width: int, length: int, attention_input: bool,
                 attention_pooling: bool) -> None:
        super().__init__()
        if width < 1 or length < 1 or in_dim < 1 or out_dim < 1:
            raise ValueError(f"in_dim, out_dim, width and length must be >= 1, got {in_dim}, {out_dim}, "
                             f"{width}, {length}")
        self.width, self.length = width, length
        self.attention_input, self.attention_pooling = attention_input, attention_pooling
        self.score = EuclideanMatch()
        channels = 2 if attention_input else 1
        self.conv = nn.Conv1d(channels * in_dim, out_dim, width, padding=width - 1)  # wide: Lc = L + w - 1
        if attention_input:
            self.w0 = nn.Parameter(torch.empty(in_dim, length))
            self.w1 = nn.Parameter(torch.empty(in_dim, length))
            nn.init.normal_(self.w0, std=0.1 / length)  # F_a starts small next to F (not given in the paper)
            nn.init.normal_(self.w1, std=0.1 / length)

    def _conv(self, x: Tensor, keep_c: Tensor) -> Tensor:
        y = self.conv(einops.rearrange(x, "b l d -> b d l"))  # (B, E, Lc)
        y = torch.tanh(einops.rearrange(y, "b e l -> b l e"))  # (B, Lc, E)
        return y * keep_c.unsqueeze(-1).to(y.dtype)

    def forward(self, x0: Tensor, x1: Tensor, keep0: Tensor,
                keep1: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """``x0, x1 (B, L, D)``, ``keep0, keep1 (B, L)`` -> pooled ``(B, L, E)`` x2, convolutions ``(B, Lc, E)`` x2,
        and the attention matrices by name."""
        attn: dict[str, Tensor] = {}
        if self.attention_input:
            a = pair_attention_matrix(x0, x1, score=self.score, keep0=keep0, keep1=keep1)  # (B, L, L)
            attn["input"] = a
            f0a, f1a = attention_features(a, self.w0, self.w1)
            x0 = torch.cat([x0, f0a * keep0.unsqueeze(-1).to(x0.dtype)], dim=-1)  # (B, L, 2D)
            x1 = torch.cat([x1, f1a * keep1.unsqueeze(-1).to(x1.dtype)], dim=-1)  # (B, L, 2D)
        Lc = x0.shape[1] + self.width - 1
        keep0c = keep_mask(keep0.sum(1) + self.width - 1, Lc)  # (B, Lc)
        keep1c = keep_mask(keep1.sum(1) + self.width - 1, Lc)  # (B, Lc)
        c0, c1 = self._conv(x0, keep0c), self._conv(x1, keep1c)  # (B, Lc, E)
        if self.attention_pooling:
            ac = pair_attention_matrix(c0, c1, score=self.score, keep0=keep0c, keep1=keep1c)  # (B, Lc, Lc)
            attn["conv"] = ac
            p0 = attention_pool(c0, ac.sum(-1), self.width)  # row sums weight sentence 0's columns
            p1 = attention_pool(c1, ac.sum(-2), self.width)  # column sums weight sentence 1's
        else:
            p0, p1 = w_ap(c0, self.width), w_ap(c1, self.width)  # (B, L, E)
        p0 = p0 * keep0.unsqueeze(-1).to(p0.dtype)
        p1 = p1 * keep1.unsqueeze(-1).to(p1.dtype)
        return p0, p1, c0, c1, attn


class ABCNN(nn.Module):
    """BCNN / ABCNN-1 / ABCNN-2 / ABCNN-3 sentence-pair classifier (Yin et al. 2016, §3-4).

    Args:
        vocab_size: ``V``.
        num_classes: ``C`` (2: logistic regression as a 2-way softmax).
        variant: ``"bcnn"``, ``"abcnn1"``, ``"abcnn2"`` or ``"abcnn3"``.
        length: ``L``, the padded length of both sentences.
        embed_dim: word-vector width.
        hidden_dim: filters per convolution layer.
        width: filter width ``w``.
        num_layers: convolution layers.
        vectors: optional ``(V, embed_dim)`` initial word vectors.
        trainable_embeddings: whether the word vectors are updated.
        pair_features: also give the classifier :math:`|r_0 - r_1|` and :math:`r_0 \\odot r_1` of the final
            all-ap (an addition to the paper's LR input; off reproduces it).
    """

    def __init__(self, vocab_size: int, *, num_classes: int = 2, variant: str = "abcnn3", length: int,
                 embed_dim: int = 50, hidden_dim: int = 50, width: int = 3, num_layers: int = 1,
                 vectors: Tensor | None = None, trainable_embeddings: bool = True, pair_features: bool = False) -> None:
        super().__init__()
        if variant not in ABCNN_VARIANTS:
            raise ValueError(f"variant must be one of {sorted(ABCNN_VARIANTS)}, got {variant!r}")
        if num_layers < 1 or num_classes < 2:
            raise ValueError(f"num_layers must be >= 1 and num_classes >= 2, got {num_layers}, {num_classes}")
        self.variant, self.length, self.width = variant, length, width
        self.pair_features = pair_features
        self.embed = PairEmbedding(vocab_size, embed_dim, vectors=vectors, trainable=trainable_embeddings)
        att_in, att_pool = ABCNN_VARIANTS[variant]
        self.layers = nn.ModuleList(
            ABCNNLayer(embed_dim if i == 0 else hidden_dim, hidden_dim, width=width, length=length,
                       attention_input=att_in, attention_pooling=att_pool) for i in range(num_layers))
        n_features = 2 * hidden_dim + 2 * (num_layers + 1) + (2 * hidden_dim if pair_features else 0)
        self.classifier = nn.Linear(n_features, num_classes)

    def forward(self, tokens0: Tensor, tokens1: Tensor, lengths0: Tensor, lengths1: Tensor) -> PairOutput:
        """``tokens0, tokens1 (B, L)`` ids (0 = padding), ``lengths0, lengths1 (B,)`` -> :class:`PairOutput`."""
        check_pair(tokens0, tokens1, lengths0, lengths1, length=self.length)
        L = tokens0.shape[1]
        keep0, keep1 = keep_mask(lengths0, L), keep_mask(lengths1, L)  # (B, L)
        x0, x1 = self.embed(tokens0), self.embed(tokens1)  # (B, L, D)
        r0, r1 = masked_mean(x0, keep0), masked_mean(x1, keep1)  # the input's all-ap (B, D)
        sims = [similarity_features(r0, r1)]
        attention = []
        for layer in self.layers:
            x0, x1, c0, c1, attn = layer(x0, x1, keep0, keep1)
            attention.append(attn)
            Lc = c0.shape[1]
            r0 = masked_mean(c0, keep_mask(lengths0 + self.width - 1, Lc))  # all-ap (B, E)
            r1 = masked_mean(c1, keep_mask(lengths1 + self.width - 1, Lc))
            sims.append(similarity_features(r0, r1))
        feats = [r0, r1, *sims]
        if self.pair_features:
            feats += [(r0 - r1).abs(), r0 * r1]
        return PairOutput(self.classifier(torch.cat(feats, dim=-1)), attention)
