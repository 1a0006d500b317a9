"""``AttentionPooling``: learned, task-specific queries pooling a sequence into ``Q`` vectors.

Shape legend: ``B`` batch, ``S`` positions (encoder states), ``Q`` learned queries, ``Dq`` query width,
``Dk``/``Dv`` key and value widths; weights are ``(B, 1, Q, S)`` (one head).

Yang et al. 2016, "Hierarchical Attention Networks for Document Classification", eq. 5-7 (and 8-10 at
the sentence level): :math:`u_i = \\tanh(W h_i + b)`, :math:`\\alpha_i = \\mathrm{softmax}_i(u_i^\\top u_w)`,
:math:`s = \\sum_i \\alpha_i h_i`, with a learned "word context vector" :math:`u_w`. With the
``"additive"`` score :math:`v^\\top \\tanh(W k + U q)` and a learned ``q`` this is exactly eq. 5-7
(:math:`v` plays :math:`u_w`, :math:`U q` the bias :math:`b`). ``num_queries > 1`` gives several pooled
views, as in Lin et al. 2017 ("A structured self-attentive sentence embedding", :math:`A =
\\mathrm{softmax}(W_{s2} \\tanh(W_{s1} H^\\top))`, one row per query). Any qkv score (a name or a
callable ``(q, k) -> scores``) and any normaliser (a name, a ``Normalizer``, or a module ``(scores,
mask) -> weights`` such as :class:`qkv.layers.structured.SegmentationCRF`) can be used.

The read is one call of :func:`qkv.attend`: ``attend(u, key, value, score=self.score, mask=mask,
bias=bias, normalize=self.normalize)`` with ``u`` the learned queries ``(1, 1, Q, Dq)``.

Calling convention: the layer contract with the ``query`` argument taken by the learned queries,
``forward(key, value=None, *, mask=None, bias=None, return_weights=False)``; ``mask`` and ``bias`` mean
what they mean in :func:`qkv.attend`, broadcast to ``(B, 1, Q, S)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.biases import BiasLike
from qkv.functional.checks import check_dropout, check_positive_int
from qkv.functional.masks import MaskLike
from qkv.functional.normalize import NormalizeArg
from qkv.functional.normalize import resolve as resolve_normalizer
from qkv.functional.output import AttentionOutput
from qkv.layers.common import ScoreArg, build_score, check_input, with_output

__all__ = ["AttentionPooling"]


class AttentionPooling(nn.Module):
    """Pool ``(B, S, Dk)`` states with ``num_queries`` learned queries (Yang et al. 2016 eq. 5-7).

    Args:
        key_dim: width ``Dk`` of the pooled states (the keys).
        num_queries: learned queries ``Q`` (Lin et al. 2017's ``r``).
        query_dim: width of the learned queries (default ``key_dim``; must equal it for dot scores).
        score: ``"additive"`` (default: Yang's eq. 5-6), ``"dot"``, ``"scaled_dot"``, ``"bilinear"``,
            ``"cosine"``, or a callable/module ``(q, k) -> scores``.
        hidden_dim: hidden width of the additive score (default ``key_dim``).
        normalize: as in :func:`qkv.attend`, or an ``nn.Module`` ``(scores, mask) -> weights`` (its
            parameters are learned with the layer).
        dropout: dropout on the weights, in training mode only.
        generator: seeds the learned queries' initialisation (default: the global generator).
    """

    def __init__(
        self,
        key_dim: int,
        *,
        num_queries: int = 1,
        query_dim: int | None = None,
        score: ScoreArg = "additive",
        hidden_dim: int | None = None,
        normalize: NormalizeArg | nn.Module = "softmax",
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.key_dim = check_positive_int("key_dim", key_dim)
        self.num_queries = check_positive_int("num_queries", num_queries)
        self.query_dim = check_positive_int("query_dim", key_dim if query_dim is None else query_dim)
        self.score = build_score(score, query_dim=self.query_dim, key_dim=self.key_dim, hidden_dim=hidden_dim)
        self.normalize = normalize if isinstance(normalize, nn.Module) else resolve_normalizer(normalize)
        self.dropout = check_dropout(dropout)
        init = torch.randn(self.num_queries, self.query_dim, generator=generator) / self.query_dim**0.5
        self.query = nn.Parameter(init)  # (Q, Dq)

    def forward(
        self,
        key: Tensor,
        value: Tensor | None = None,
        *,
        mask: MaskLike | None = None,
        bias: BiasLike | None = None,
        return_weights: bool = False,
    ) -> AttentionOutput:
        """Pool ``key`` (reading ``value``) into ``Q`` vectors.

        Args:
            key: ``(B, S, Dk)`` the states to pool.
            value: ``(B, S, Dv)``; defaults to ``key``.
            mask: as in :func:`qkv.attend`, broadcast to ``(B, 1, Q, S)`` (True = may attend); padding is
                :func:`qkv.masks.key_padding` / :func:`qkv.masks.padding`.
            bias: as in :func:`qkv.attend`, broadcast to ``(B, 1, Q, S)``.
            return_weights: also return the weights ``(B, 1, Q, S)``.

        Returns:
            :class:`qkv.AttentionOutput` with ``output (B, Q, Dv)``.
        """
        key = check_input("key", key, dims=(3,), width=self.key_dim)
        value = check_input("value" if value is not None else "value (defaulted to key)",
                            key if value is None else value, dims=(3,))
        if value.shape[:2] != key.shape[:2]:
            raise ValueError(f"key (B, S, Dk) and value (B, S, Dv) must agree on B and S: got key "
                             f"{tuple(key.shape)}, value {tuple(value.shape)}")
        query = self.query.to(key.dtype)[None, None]  # (1, 1, Q, Dq)
        out = attend(
            query, key.unsqueeze(1), value.unsqueeze(1),  # (B, 1, S, D): one head
            score=self.score, mask=mask, bias=bias, normalize=self.normalize,
            dropout=self.dropout if self.training else 0.0, return_weights=return_weights,
        )
        return with_output(out, out.output.squeeze(1))  # (B, Q, Dv)

    def extra_repr(self) -> str:
        return f"key_dim={self.key_dim}, num_queries={self.num_queries}, query_dim={self.query_dim}"
