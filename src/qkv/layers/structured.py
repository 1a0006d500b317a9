"""Structured (segmentation) attention: a linear-chain CRF's marginals as the attention weights.

Shape legend: ``B`` batch, ``L`` queries, ``S`` keys, ``Dq``/``Dk``/``Dv`` widths; weights
``(B, 1, L, S)`` are the marginals :math:`p(z_j = 1 \\mid q_i, x)` (they need not sum to 1).

Kim, Denton, Hoang and Rush 2017, "Structured Attention Networks", §3.2 (segmentation attention):
binary :math:`z_j` ("attend to key j"), unary potentials :math:`\\theta_j(1) = s(q, k_j)` from any
score, learned 2x2 pairwise potentials :math:`\\theta(z_{j-1}, z_j)`, forward-backward marginals
(:mod:`qkv.functional.crf`), context :math:`c = \\sum_j p(z_j = 1)\\, v_j` (eq. 7). Neighbouring keys are
selected together when the pairwise table rewards it, so contiguous segments (a phrase) can be
attended as a unit.

The read is one call of :func:`qkv.attend`: ``attend(q, k, v, score=self.score, mask=mask, bias=bias,
normalize=SegmentationMarginals(self.crf.transition, renormalize=...))``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.biases import BiasLike
from qkv.functional.checks import check_flag, check_positive_int
from qkv.functional.crf import SegmentationMarginals
from qkv.functional.masks import MaskLike
from qkv.functional.output import AttentionOutput
from qkv.layers.common import ScoreArg, build_score, check_inputs, with_output

__all__ = ["SegmentationCRF", "StructuredAttention"]


class SegmentationCRF(nn.Module):
    """A normaliser module ``(scores, mask) -> marginals`` owning the learned 2x2 pairwise potentials.

    Usable as ``normalize=`` of :class:`qkv.layers.AttentionPooling` (structured attention pooling).

    Args:
        renormalize: divide the marginals by their sum (weights that form a distribution).
    """

    def __init__(self, *, renormalize: bool = False) -> None:
        super().__init__()
        self.renormalize = check_flag("renormalize", renormalize)
        self.transition = nn.Parameter(torch.zeros(2, 2))  # (z_prev, z_i)

    def normalizer(self) -> SegmentationMarginals:
        """The functional normaliser with the current potentials (for :func:`qkv.attend`)."""
        return SegmentationMarginals(self.transition, renormalize=self.renormalize)

    def forward(self, scores: Tensor, mask: Tensor | None = None) -> Tensor:
        """Marginals ``(..., L, S)`` of the chains whose unary potentials are ``scores``."""
        return self.normalizer()(scores, mask)

    def extra_repr(self) -> str:
        return f"renormalize={self.renormalize}"


class StructuredAttention(nn.Module):
    """Segmentation attention (Kim et al. 2017 §3.2): a CRF over "attend or not" per key, one head.

    Args:
        query_dim: width ``Dq`` of the queries.
        key_dim: width ``Dk`` of the keys (default ``query_dim``).
        score: the unary potential: ``"bilinear"`` (default, as in the paper), ``"additive"``, ``"dot"``,
            ``"scaled_dot"``, ``"cosine"``, or a callable/module ``(q, k) -> scores``.
        hidden_dim: hidden width of the additive score.
        renormalize: divide the marginals by their sum.
    """

    def __init__(self, query_dim: int, *, key_dim: int | None = None, score: ScoreArg = "bilinear",
                 hidden_dim: int | None = None, renormalize: bool = False) -> None:
        super().__init__()
        self.query_dim = check_positive_int("query_dim", query_dim)
        self.key_dim = check_positive_int("key_dim", query_dim if key_dim is None else key_dim)
        self.score = build_score(score, query_dim=self.query_dim, key_dim=self.key_dim, hidden_dim=hidden_dim)
        self.crf = SegmentationCRF(renormalize=renormalize)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        mask: MaskLike | None = None,
        bias: BiasLike | None = None,
        return_weights: bool = False,
    ) -> AttentionOutput:
        """Attend from ``query`` over ``key``/``value`` with CRF marginals.

        Args:
            query: ``(B, L, Dq)``.
            key: ``(B, S, Dk)``; defaults to ``query``.
            value: ``(B, S, Dv)``; defaults to ``key``.
            mask: as in :func:`qkv.attend`, broadcast to ``(B, 1, L, S)``; a masked key leaves the chain.
            bias: added to the unary potentials, broadcast to ``(B, 1, L, S)`` (``-inf`` removes a key).
            return_weights: also return the marginals ``(B, 1, L, S)``.

        Returns:
            :class:`AttentionOutput` with ``output (B, L, Dv)``.
        """
        query, key, value = check_inputs(query, key, value, query_dim=self.query_dim, key_dim=self.key_dim)
        out = attend(
            query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1),  # (B, 1, L|S, D): one head
            score=self.score, mask=mask, bias=bias, normalize=self.crf.normalizer(), return_weights=return_weights,
        )
        return with_output(out, out.output.squeeze(1))  # (B, L, Dv)

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}"
