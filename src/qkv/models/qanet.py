"""QANet (Yu et al. 2018, "QANet: Combining Local Convolution with Global Self-Attention for Reading
Comprehension", §2.2, Fig. 1; seed 000): encoder blocks, context-query attention and the span pointer.

Shape legend: ``B`` batch, ``n`` context words, ``m`` question words, ``L`` positions of a block's input
(``n`` or ``m``), ``V`` vocabulary, ``E`` word-embedding width, ``D`` model width, ``H`` heads.

**Encoder block** (Fig. 1, right; :class:`EncoderBlock`): a sinusoidal positional encoding is added
(:func:`qkv.positional.sinusoidal.sinusoidal`), then ``num_convs`` residual blocks
[layernorm → depthwise separable convolution], one [layernorm → self-attention] and one
[layernorm → feed-forward]. Every sublayer is :math:`x + f(\\mathrm{layernorm}(x))` under stochastic depth
(:class:`qkv.layers.stochastic_depth.StochasticDepth`): sublayer :math:`l` of the :math:`L` sublayers of a stack
survives training with :math:`p_l = 1 - (l/L)(1 - p_L)`, :math:`p_L = 0.9`. The self-attention is
:class:`qkv.MultiHeadAttention` with the key-padding mask, i.e. ``attend(q_h, k_h, v_h,
mask=key_padding(keep))`` per head.

**The model** (Fig. 1, left; :class:`QANet`): word embeddings (learned here; the paper adds GloVe vectors,
character embeddings and a highway network) projected to ``D``; one embedding encoder block shared between
context and question (4 convolutions, kernel 7); context-query attention
(:class:`qkv.layers.context_query.ContextQueryAttention`, trilinear similarity, two ``attend`` reads);
a ``1 x 1`` projection of :math:`[c; a; c \\odot a; c \\odot b]` back to ``D``; the model encoder, a stack
of ``model_blocks`` blocks (2 convolutions, kernel 5) applied three times **with shared weights**, giving
:math:`M_0, M_1, M_2`; and the output layer :math:`p^1 = \\mathrm{softmax}(W_1[M_0; M_1])`,
:math:`p^2 = \\mathrm{softmax}(W_2[M_0; M_2])` (:class:`qkv.layers.span_pointer.SpanPointer`). The paper's
sizes: ``D`` = 128, 8 heads, 7 model blocks, dropout 0.1 between layers (0.1 on words, 0.05 on characters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qkv.functional.checks import check_dropout, check_positive_int, check_tensor
from qkv.functional.masks import key_padding
from qkv.layers.common import check_keep
from qkv.layers.context_query import ContextQueryAttention, ContextQueryOutput
from qkv.layers.depthwise_conv import DepthwiseSeparableConv1d
from qkv.layers.multihead import MultiHeadAttention
from qkv.layers.span_pointer import SpanLogits, SpanPointer
from qkv.layers.stochastic_depth import StochasticDepth, survival_probability
from qkv.models.feedforward import FeedForward
from qkv.positional.sinusoidal import sinusoidal

__all__ = ["EncoderBlock", "EncoderStack", "QANet", "QANetOutput"]


class EncoderBlock(nn.Module):
    """One QANet encoder block: positions, ``num_convs`` convolutions, self-attention, feed-forward (Fig. 1).

    Args:
        dim: ``D``.
        num_convs: depthwise separable convolutions (4 in the embedding encoder, 2 in the model encoder).
        kernel_size: their width (7, resp. 5).
        num_heads: self-attention heads (8 in the paper); must divide ``dim``.
        ff_dim: hidden width of the feed-forward sublayer (default ``dim``: the paper's FFN keeps ``D``).
        dropout: dropout on each sublayer's output (and on the attention weights).
        survivals: the stochastic-depth survival probability of each of the ``num_convs + 2`` sublayers
            (default: all 1, no layer dropout); :class:`EncoderStack` sets them from :math:`p_L`.
        scale_kept: divide a kept sublayer by its survival probability in training
            (:class:`~qkv.layers.stochastic_depth.StochasticDepth`'s ``scale``).

    Call: ``block(x (B, L, D), *, keep=None (B, L) bool) -> (B, L, D)``; padded positions come out zero.
    """

    def __init__(self, dim: int, *, num_convs: int = 4, kernel_size: int = 7, num_heads: int = 1,
                 ff_dim: int | None = None, dropout: float = 0.0, survivals: tuple[float, ...] | None = None,
                 scale_kept: bool = True) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.num_convs = check_positive_int("num_convs", num_convs)
        if survivals is None:
            survivals = (1.0,) * (self.num_convs + 2)
        if len(survivals) != self.num_convs + 2:
            raise ValueError(f"survivals must give num_convs + 2 = {self.num_convs + 2} probabilities (one per "
                             f"sublayer), got {len(survivals)}: {survivals!r}")
        self.convs = nn.ModuleList(DepthwiseSeparableConv1d(dim, kernel_size=kernel_size)
                                   for _ in range(self.num_convs))
        self.conv_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(self.num_convs))
        self.attn_norm = nn.LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, num_heads, dropout=dropout)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, check_positive_int("ff_dim", dim if ff_dim is None else ff_dim))
        self.drop = nn.Dropout(check_dropout(dropout))
        self.depth = nn.ModuleList(StochasticDepth(p, scale=scale_kept) for p in survivals)

    def forward(self, x: Tensor, *, keep: Tensor | None = None) -> Tensor:
        check_tensor("x", x, min_dim=3)
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (B, L, dim={self.dim}), got {tuple(x.shape)}")
        keep = check_keep("keep", keep, x)
        x = x + sinusoidal(x.shape[1], self.dim, dtype=x.dtype, device=x.device)  # (B, L, D) + (L, D)
        if keep is not None:
            x = x * keep[..., None]
        mask = None if keep is None else key_padding(keep)  # (B, 1, 1, L)
        for i, (norm, conv) in enumerate(zip(self.conv_norms, self.convs, strict=True)):
            x = self.depth[i](x, lambda h, norm=norm, conv=conv: self.drop(conv(norm(h), keep=keep)))
        x = self.depth[-2](x, lambda h: self.drop(self.attention(self.attn_norm(h), mask=mask).output))
        x = self.depth[-1](x, lambda h: self.drop(self.ff(self.ff_norm(h))))
        return x if keep is None else x * keep[..., None]


class EncoderStack(nn.Module):
    """``num_blocks`` encoder blocks in a row; stochastic depth counts the sublayers over the whole stack.

    Sublayer :math:`l` (1-based, over all ``num_blocks * (num_convs + 2)`` sublayers) survives with
    :math:`p_l = 1 - (l/L)(1 - p_L)` (:func:`~qkv.layers.stochastic_depth.survival_probability`).

    Args:
        dim, num_convs, kernel_size, num_heads, ff_dim, dropout, scale_kept: as :class:`EncoderBlock`.
        num_blocks: blocks in the stack (1 for the embedding encoder, 7 for the model encoder).
        p_last: :math:`p_L` (1: no layer dropout).
    """

    def __init__(self, dim: int, num_blocks: int, *, num_convs: int = 2, kernel_size: int = 5, num_heads: int = 1,
                 ff_dim: int | None = None, dropout: float = 0.0, p_last: float = 0.9,
                 scale_kept: bool = True) -> None:
        super().__init__()
        nb = check_positive_int("num_blocks", num_blocks)
        per = check_positive_int("num_convs", num_convs) + 2
        total = nb * per
        self.survivals = tuple(survival_probability(l, total, p_last=p_last) for l in range(1, total + 1))
        self.blocks = nn.ModuleList(
            EncoderBlock(dim, num_convs=num_convs, kernel_size=kernel_size, num_heads=num_heads, ff_dim=ff_dim,
                         dropout=dropout, survivals=self.survivals[b * per:(b + 1) * per], scale_kept=scale_kept)
            for b in range(nb))

    def forward(self, x: Tensor, *, keep: Tensor | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x, keep=keep)
        return x


@dataclass
class QANetOutput:
    """Span log-probabilities and, when asked for, the context-query attention (weights included)."""

    logits: SpanLogits
    attention: ContextQueryOutput | None = None


class QANet(nn.Module):
    """A (small) QANet reader over word ids (Fig. 1).

    Args:
        vocab_size: ``V`` (id 0 is padding).
        dim: ``D`` (128 in the paper).
        embed_dim: ``E``, the word-embedding width (300-d GloVe in the paper).
        num_heads: self-attention heads of every block (8 in the paper).
        embed_convs, embed_kernel: the embedding encoder block's convolutions (4, kernel 7).
        model_blocks, model_convs, model_kernel: the model encoder stack (7 blocks, 2 convolutions, kernel 5).
        dropout: between layers (0.1 in the paper).
        p_last: stochastic depth's :math:`p_L` (0.9).

    Call: ``qanet(context (B, n) long, question (B, m) long, *, context_keep=None, question_keep=None,
    return_attention=False) -> QANetOutput``; the ``keep`` masks default to ``ids != 0``.
    """

    def __init__(self, vocab_size: int, *, dim: int = 128, embed_dim: int | None = None, num_heads: int = 8,
                 embed_convs: int = 4, embed_kernel: int = 7, model_blocks: int = 7, model_convs: int = 2,
                 model_kernel: int = 5, dropout: float = 0.1, p_last: float = 0.9) -> None:
        super().__init__()
        V = check_positive_int("vocab_size", vocab_size)
        D = check_positive_int("dim", dim)
        E = check_positive_int("embed_dim", D if embed_dim is None else embed_dim)
        self.embedding = nn.Embedding(V, E, padding_idx=0)
        self.project = nn.Linear(E, D)
        self.drop = nn.Dropout(check_dropout(dropout))
        self.embed_encoder = EncoderStack(D, 1, num_convs=embed_convs, kernel_size=embed_kernel,
                                          num_heads=num_heads, dropout=dropout, p_last=p_last)
        self.cq = ContextQueryAttention(D)
        self.resize = nn.Linear(4 * D, D)
        self.model_encoder = EncoderStack(D, model_blocks, num_convs=model_convs, kernel_size=model_kernel,
                                          num_heads=num_heads, dropout=dropout, p_last=p_last)
        self.pointer = SpanPointer(D)

    def embed(self, ids: Tensor, keep: Tensor) -> Tensor:
        """Embed, project and encode ``ids (B, L)`` with the shared embedding encoder: ``(B, L, D)``."""
        x = self.drop(self.project(self.drop(self.embedding(ids))))  # (B, L, D)
        return self.embed_encoder(x, keep=keep)

    def forward(self, context: Tensor, question: Tensor, *, context_keep: Tensor | None = None,
                question_keep: Tensor | None = None, return_attention: bool = False) -> QANetOutput:
        for name, t in (("context", context), ("question", question)):
            if not isinstance(t, Tensor) or t.dtype != torch.long or t.dim() != 2:
                got = (t.dtype, tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{name} must be a (B, L) long tensor of word ids, got {got}")
        if context.shape[0] != question.shape[0]:
            raise ValueError(f"context and question must share the batch size, got context {tuple(context.shape)} "
                             f"and question {tuple(question.shape)}")
        ck = context != 0 if context_keep is None else check_keep("context_keep", context_keep, context)
        qk = question != 0 if question_keep is None else check_keep("question_keep", question_keep, question)
        c, q = self.embed(context, ck), self.embed(question, qk)  # (B, n, D), (B, m, D)
        att = self.cq(c, q, context_keep=ck, question_keep=qk, return_weights=return_attention)
        x = self.drop(self.resize(att.output)) * ck[..., None]  # (B, n, D)
        m0 = self.model_encoder(x, keep=ck)
        m1 = self.model_encoder(m0, keep=ck)  # the same stack: weights shared across the three passes
        m2 = self.model_encoder(m1, keep=ck)
        return QANetOutput(self.pointer(m0, m1, m2, keep=ck), att if return_attention else None)
