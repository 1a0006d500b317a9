"""Single-head key-value attention with any score: the building block of seq2seq attention.

Shape legend: ``B`` batch, ``L`` queries (decoder steps), ``S`` keys (encoder states),
``Dq``/``Dk``/``Dv`` query, key and value widths.

Seed 001 §8.2 (key-value attention :math:`\\mathrm{att}((K, V), q) = \\sum_n \\alpha_n v_n`) and
Bahdanau et al. 2015 / Luong et al. 2015 (seed 004): a decoder state queries the encoder
states. There are no input projections here — the parametric scores carry the parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.biases import BiasLike
from qkv.functional.checks import check_dropout, check_positive_int
from qkv.functional.masks import MaskLike
from qkv.functional.normalize import NormalizeArg
from qkv.functional.normalize import resolve as resolve_normalizer
from qkv.functional.output import AttentionOutput
from qkv.layers.common import ScoreArg, build_score, check_inputs, with_output

__all__ = ["Attention"]


class Attention(nn.Module):
    """Key-value attention :math:`o = \\sum_j \\mathrm{normalize}(s(k_j, q))_j\\, v_j`, one head.

    Args:
        query_dim: width ``Dq`` of the queries.
        key_dim: width ``Dk`` of the keys (default ``query_dim``).
        score: ``"additive"`` (Bahdanau; also ``"concat"``/``"mlp"``), ``"dot"``, ``"scaled_dot"``,
            ``"bilinear"``/``"general"``, ``"cosine"``, or a callable/module ``(q, k) -> scores``.
        hidden_dim: hidden width of the additive score (default ``key_dim``).
        normalize: as in :func:`qkv.attend` (a name, a Normalizer or a callable).
        dropout: dropout on the weights, in training mode only.
    """

    def __init__(
        self,
        query_dim: int,
        *,
        key_dim: int | None = None,
        score: ScoreArg = "additive",
        hidden_dim: int | None = None,
        normalize: NormalizeArg = "softmax",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.query_dim = check_positive_int("query_dim", query_dim)
        self.key_dim = check_positive_int("key_dim", query_dim if key_dim is None else key_dim)
        self.score = build_score(score, query_dim=self.query_dim, key_dim=self.key_dim, hidden_dim=hidden_dim)
        self.normalize = resolve_normalizer(normalize)
        self.dropout = check_dropout(dropout)

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
        """Attend from ``query`` over ``key``/``value``.

        Args:
            query: ``(B, L, Dq)``.
            key: ``(B, S, Dk)``; defaults to ``query``.
            value: ``(B, S, Dv)``; defaults to ``key``.
            mask: as in :func:`qkv.attend`, broadcast to ``(B, 1, L, S)`` (True = may attend); key
                padding is :func:`qkv.masks.key_padding` or :func:`qkv.masks.padding`.
            bias: as in :func:`qkv.attend`, broadcast to ``(B, 1, L, S)``.
            return_weights: also return the weights ``(B, 1, L, S)``.

        Returns:
            :class:`AttentionOutput` with ``output (B, L, Dv)``; ``weights``/``scores`` ``(B, 1, L, S)``
            and ``log_prob (B, 1, L)`` as in :func:`qkv.attend`.
        """
        query, key, value = check_inputs(query, key, value, query_dim=self.query_dim, key_dim=self.key_dim)
        out = attend(
            query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1),  # (B, 1, L|S, D): one head
            score=self.score, mask=mask, bias=bias, normalize=self.normalize,
            dropout=self.dropout if self.training else 0.0, return_weights=return_weights,
        )
        return with_output(out, out.output.squeeze(1))  # (B, L, Dv)

    def extra_repr(self) -> str:
        score = self.score if isinstance(self.score, str) else type(self.score).__name__
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, score={score}, normalize={self.normalize}"
