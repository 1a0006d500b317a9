"""Context-query attention (BiDAF, Seo et al. 2017, §2.4; QANet, Yu et al. 2018, §2.2 "Context-Query Attention").

Shape legend: ``B`` batch, ``n`` context words, ``m`` question (query) words, ``D`` width.

With the encoded context :math:`C \\in \\mathbb{R}^{n \\times D}` and question :math:`Q \\in \\mathbb{R}^{m \\times D}`:

* similarity :math:`S_{ij} = f(q_j, c_i)`, the trilinear :math:`W_0[q, c, q \\odot c]`
  (:class:`qkv.layers.trilinear.Trilinear`, a dot-kind score), ``S (B, n, m)``;
* :math:`\\bar S` = softmax of each row of S (over the question words, padding masked);
  context-to-query attention :math:`A = \\bar S Q` ``(B, n, D)`` (the paper's :math:`\\bar S Q^\\top` with its
  column-vector convention);
* :math:`\\bar{\\bar S}` = softmax of each column of S (over the context words, padding masked);
  query-to-context attention :math:`B = \\bar S \\bar{\\bar S}^\\top C` ``(B, n, D)`` (DCN's form, QANet's choice);
* output :math:`[c; a; c \\odot a; c \\odot b]` ``(B, n, 4D)``.

**Which calls of** :func:`qkv.attend` **they are.** Both reads are attention reads:

1. ``X = attend(Q, C, C, score=trilinear.swapped(), mask=q_keep[:, :, None] & c_keep[:, None, :]).output``
   ``(B, m, D)`` is :math:`\\bar{\\bar S}^\\top C`: each question word reads the context with the column
   softmax (the swapped score is :math:`S^\\top`, same parameters);
2. ``attend(C, Q, [Q; X], score=trilinear, mask=c_keep[:, :, None] & q_keep[:, None, :], return_weights=True)``
   reads :math:`[\\bar S Q;\\ \\bar S X] = [A; B]` with weights :math:`\\bar S`. Its first ``D`` output columns
   are exactly ``attend(C, Q, Q, score=trilinear, mask=...).output`` (tested).

Padded context positions are masked rows: they get zero weights, and the layer's output is zero there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qkv import kernels
from qkv.functional.attention import attend
from qkv.functional.checks import check_positive_int, check_tensor
from qkv.layers.common import check_keep
from qkv.layers.trilinear import Trilinear

__all__ = ["ContextQueryAttention", "ContextQueryOutput"]


@dataclass
class ContextQueryOutput:
    """What :class:`ContextQueryAttention` returns.

    Attributes:
        output: :math:`[c; a; c \\odot a; c \\odot b]` ``(B, n, 4 D)``.
        c2q: :math:`A = \\bar S Q` ``(B, n, D)``.
        q2c: :math:`B = \\bar S \\bar{\\bar S}^\\top C` ``(B, n, D)``.
        row_weights: :math:`\\bar S` ``(B, n, m)`` (softmax over question words), when asked for.
        column_weights: :math:`\\bar{\\bar S}` ``(B, n, m)`` (softmax over context words), when asked for.
        similarity: :math:`S` ``(B, n, m)`` before masking, when asked for.
    """

    output: Tensor
    c2q: Tensor
    q2c: Tensor
    row_weights: Tensor | None = None
    column_weights: Tensor | None = None
    similarity: Tensor | None = None


class ContextQueryAttention(nn.Module):
    """QANet's context-query attention layer (§2.2) with a learned trilinear similarity.

    Args:
        dim: ``D``, the width of the encoded context and question.
        backend: the :func:`qkv.attend` backend (``"auto"``; weights are always returned by ``"naive"``).

    Call: ``cqa(context (B, n, D), question (B, m, D), *, context_keep=None (B, n) bool,
    question_keep=None (B, m) bool, return_weights=False) -> ContextQueryOutput``.
    """

    def __init__(self, dim: int, *, backend: str = "auto") -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.score = Trilinear(self.dim)
        if backend != "auto" and backend not in kernels.BACKENDS:
            raise ValueError(f"backend must be one of {['auto', *kernels.BACKENDS]}, got {backend!r}")
        self.backend = backend

    def masks(self, context: Tensor, question: Tensor, context_keep: Tensor | None,
              question_keep: Tensor | None) -> tuple[Tensor, Tensor]:
        """The masks of the two reads: rows ``(B, n, m)`` (context reads question) and columns ``(B, m, n)``."""
        (B, n, _), m = context.shape, question.shape[1]
        ck = torch.ones(B, n, dtype=torch.bool, device=context.device) if context_keep is None else context_keep
        qk = torch.ones(B, m, dtype=torch.bool, device=context.device) if question_keep is None else question_keep
        return ck[:, :, None] & qk[:, None, :], qk[:, :, None] & ck[:, None, :]  # (B, n, m), (B, m, n)

    def forward(self, context: Tensor, question: Tensor, *, context_keep: Tensor | None = None,
                question_keep: Tensor | None = None, return_weights: bool = False) -> ContextQueryOutput:
        check_tensor("context", context, min_dim=3)
        check_tensor("question", question, min_dim=3)
        if context.dim() != 3 or question.dim() != 3 or context.shape[0] != question.shape[0] \
                or context.shape[-1] != self.dim or question.shape[-1] != self.dim:
            raise ValueError(f"context and question must be (B, n, D) and (B, m, D) with D = dim = {self.dim}, "
                             f"got context {tuple(context.shape)} and question {tuple(question.shape)}")
        context_keep = check_keep("context_keep", context_keep, context)
        question_keep = check_keep("question_keep", question_keep, question)
        rows, cols = self.masks(context, question, context_keep, question_keep)
        backend = "naive" if return_weights else self.backend
        # 1. each question word reads the context with the column softmax: X = S̿ᵀ C
        x = attend(question, context, context, score=self.score.swapped(), mask=cols, backend=backend,
                   return_weights=return_weights)
        # 2. each context word reads [Q; X] with the row softmax S̄: [A; B] = S̄ [Q; X]
        values = torch.cat((question, x.output), dim=-1)  # (B, m, 2 D)
        read = attend(context, question, values, score=self.score, mask=rows, backend=backend,
                      return_weights=return_weights, return_scores=return_weights)
        a, b = read.output.split(self.dim, dim=-1)  # (B, n, D) each
        out = torch.cat((context, a, context * a, context * b), dim=-1)  # (B, n, 4 D)
        if context_keep is not None:
            out = out * context_keep[..., None]  # padded context positions come out zero
        if not return_weights:
            return ContextQueryOutput(out, a, b)
        assert x.weights is not None
        return ContextQueryOutput(out, a, b, row_weights=read.weights, column_weights=x.weights.transpose(-1, -2),
                                  similarity=read.scores)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
