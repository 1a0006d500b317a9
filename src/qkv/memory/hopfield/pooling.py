"""``HopfieldPooling``: learned state patterns pooling a set (Ramsauer et al. 2020, §3 "HopfieldPooling").

Shape legend: ``B`` batch, ``S`` instances of the set (stored patterns), ``Q`` learned state patterns
(pooling queries), ``Dk``/``Dv`` widths of the set's keys and values, ``H`` heads, ``E`` output width.

Ramsauer et al. 2020 eq. 11: :math:`Z = \\operatorname{softmax}(\\beta\\, Q K^\\top) V` with
:math:`K = Y W_K`, :math:`V = Y W_V` from the set :math:`Y` and a *learned* state-pattern matrix
:math:`Q` — one update of a modern Hopfield network whose probe is learned: each of the ``Q`` rows
retrieves (pools) what it was trained to look for. Used for multiple-instance learning, the weights
say which instances of a bag the decision rests on (the ``hopfield-mil`` experiment).

Calling convention: the layer contract with the ``query`` argument taken by the learned patterns,
``forward(key, value=None, *, mask=None, bias=None, return_weights=False)``; ``mask`` and ``bias``
mean what they mean in :func:`qkv.attend`, broadcast to ``(B, H, Q, S)``; weights per head.
"""

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor, nn

from qkv.functional.biases import BiasLike
from qkv.functional.checks import check_positive_int
from qkv.functional.masks import MaskLike
from qkv.functional.output import AttentionOutput
from qkv.layers.common import check_input
from qkv.memory.hopfield.association import Hopfield

__all__ = ["HopfieldPooling"]


class HopfieldPooling(nn.Module):
    """Pool a set with ``num_queries`` learned state patterns (Ramsauer et al. eq. 11).

    Args:
        key_dim: width ``Dk`` of the set (the stored patterns).
        value_dim: width ``Dv`` of the values (default ``Dk``).
        num_queries: learned state patterns ``Q``.
        query_dim: width of the learned state patterns (default ``Dk``); they pass through the
            query projection like any state pattern.
        **options: keyword options of :class:`Hopfield` (``hidden_dim``, ``output_dim``, ``num_heads``,
            ``beta``, ``learn_beta``, ``projections``, ``proj_bias``, ``dropout``).
    """

    def __init__(self, key_dim: int, *, value_dim: int | None = None, num_queries: int = 1,
                 query_dim: int | None = None, **options: object) -> None:
        super().__init__()
        key_dim = check_positive_int("key_dim", key_dim)
        self.num_queries = check_positive_int("num_queries", num_queries)
        query_dim = check_positive_int("query_dim", key_dim if query_dim is None else query_dim)
        self.hopfield = Hopfield(query_dim, key_dim=key_dim, value_dim=value_dim, **options)  # type: ignore[arg-type]
        self.num_heads = self.hopfield.num_heads
        self.query = nn.Parameter(torch.randn(self.num_queries, query_dim) / query_dim**0.5)  # (Q, Dq)

    def forward(
        self,
        key: Tensor,
        value: Tensor | None = None,
        *,
        mask: MaskLike | None = None,
        bias: BiasLike | None = None,
        return_weights: bool = False,
    ) -> AttentionOutput:
        """Pool the set ``key`` (and ``value``) into ``Q`` vectors.

        Args:
            key: ``(B, S, Dk)`` the set (stored patterns).
            value: ``(B, S, Dv)``; defaults to ``key``.
            mask: broadcast to ``(B, H, Q, S)`` (True = may attend); padding of the set is
                :func:`qkv.masks.key_padding` / :func:`qkv.masks.padding`.
            bias: broadcast to ``(B, H, Q, S)``.
            return_weights: also return the weights ``(B, H, Q, S)``.

        Returns:
            :class:`qkv.AttentionOutput` with ``output (B, Q, E)``.
        """
        key = check_input("key", key, dims=(3,))
        query = repeat(self.query, "q d -> b q d", b=key.shape[0]).to(key.dtype)  # (B, Q, Dq)
        return self.hopfield(query, key, value, mask=mask, bias=bias, return_weights=return_weights)

    def extra_repr(self) -> str:
        return f"num_queries={self.num_queries}"
