"""Single-head key-value attention with any score: the building block of seq2seq attention.

Shape legend: ``B`` batch, ``L`` queries (decoder steps), ``S`` keys (encoder states),
``Dq``/``Dk``/``Dv`` query, key and value widths.

Seed 001 §8.2 (key-value attention :math:`\\mathrm{att}((K, V), q) = \\sum_n \\alpha_n v_n`) and
Bahdanau et al. 2015 / Luong et al. 2015 (seed 004): a decoder state queries the encoder
states. There are no input projections here — the parametric scores carry the parameters.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.output import AttentionOutput
from qkv.layers._common import ScoreArg, build_score, check_input
from qkv.masks import MaskLike

__all__ = ["Attention"]


class Attention(nn.Module):
    """Key-value attention :math:`o = \\sum_j \\mathrm{normalize}(s(k_j, q))_j\\, v_j`.

    Args:
        query_dim: width ``Dq`` of the queries.
        key_dim: width ``Dk`` of the keys (default ``query_dim``).
        score: ``"additive"`` (Bahdanau; also ``"concat"``/``"mlp"``), ``"dot"``, ``"scaled_dot"``,
            ``"bilinear"``/``"general"``, ``"cosine"``, or a callable/module ``(q, k) -> scores``.
        hidden_dim: hidden width of the additive score (default ``key_dim``).
        normalize: as in :func:`qkv.attend`.
        dropout: dropout on the weights, in training mode only.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        *,
        score: ScoreArg = "additive",
        hidden_dim: int | None = None,
        normalize: str | Callable[[Tensor, Tensor | None], Tensor] = "softmax",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        key_dim = query_dim if key_dim is None else key_dim
        self.query_dim, self.key_dim = query_dim, key_dim
        self.score = build_score(score, query_dim=query_dim, key_dim=key_dim, hidden_dim=hidden_dim)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.normalize = normalize
        self.dropout = dropout

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor | None = None,
        *,
        mask: MaskLike | None = None,
        return_weights: bool = False,
    ) -> AttentionOutput:
        """Attend from ``query`` over ``key``/``value``.

        Args:
            query: ``(B, L, Dq)``, or ``(B, Dq)`` for one decoder step.
            key: ``(B, S, Dk)``.
            value: ``(B, S, Dv)``; defaults to ``key``.
            mask: True = may attend: a bool ``(B, S)`` key mask, a bool ``(B, L, S)`` tensor (dims of
                size 1 broadcast), or a lazy :class:`qkv.masks.Mask` (e.g. :func:`qkv.masks.padding`).
            return_weights: also return the weights ``(B, L, S)`` (``(B, S)`` for one step).

        Returns:
            :class:`AttentionOutput` with ``output (B, L, Dv)`` (``(B, Dv)`` for one step).
        """
        step = check_input("query", query, dims=(2, 3), width=self.query_dim).dim() == 2
        key = check_input("key", key, dims=(3,), width=self.key_dim)
        value = key if value is None else check_input("value", value, dims=(3,))
        q = query.unsqueeze(1) if step else query  # (B, L, Dq)
        if isinstance(mask, Tensor):
            if mask.dim() not in (2, 3):
                raise ValueError(f"mask must be (B, S) or (B, L, S), got shape {tuple(mask.shape)}")
            # (B, 1, 1, S) key mask or (B, 1, L, S): add the head axis of the functional layout
            mask = mask[:, None, None, :] if mask.dim() == 2 else mask.unsqueeze(1)
        out = attend(
            q.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1),  # (B, 1, L, D): one head
            score=self.score, mask=mask, normalize=self.normalize,
            dropout=self.dropout if self.training else 0.0, return_weights=return_weights,
        )
        output, weights = out.output.squeeze(1), out.weights  # (B, L, Dv)
        if weights is not None:
            weights = weights.squeeze(1)  # (B, L, S)
        if step:
            output = output.squeeze(1)  # (B, Dv)
            weights = None if weights is None else weights.squeeze(1)  # (B, S)
        return AttentionOutput(output=output, weights=weights, log_prob=_squeeze(out.log_prob, step))

    def extra_repr(self) -> str:
        score = self.score if isinstance(self.score, str) else type(self.score).__name__
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, score={score}, normalize={self.normalize}"


def _squeeze(log_prob: Tensor | None, step: bool) -> Tensor | None:
    if log_prob is None:
        return None
    log_prob = log_prob.squeeze(1)  # (B, L)
    return log_prob.squeeze(1) if step else log_prob

