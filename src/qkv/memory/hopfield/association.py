"""``Hopfield``: the modern Hopfield layer associating two sets (Ramsauer et al. 2020, §3 "Hopfield").

Shape legend: ``B`` batch, ``L`` state patterns (queries, "R"), ``S`` stored patterns (keys, "Y"),
``Dq``/``Dk``/``Dv`` input widths of the state patterns, stored patterns and pattern projections,
``H`` heads, ``d`` head width of the association space, ``dv`` head width of the values, ``E`` output width.

Ramsauer et al. 2020 eq. 10 (the layer "Hopfield"): with :math:`Q = R W_Q`, :math:`K = Y W_K`,
:math:`V = Y W_V` (here ``value`` may differ from ``key``: the pattern projections),

.. math:: Z = \\operatorname{softmax}(\\beta\\, Q K^\\top)\\, V,

one update of the modern Hopfield network (:func:`qkv.memory.hopfield.modern.update`, eq. 3) in the
projected space, with the state patterns as queries and the stored patterns as keys. Per head it is one
call of :func:`qkv.attend` with the dot score scaled by :math:`\\beta` (``score="dot", scale=beta``); a
learnable :math:`\\beta` multiplies the queries instead (the same scores, differentiable in :math:`\\beta`).

``projections=False`` removes every projection: the layer is then a pure associative memory,
``Hopfield(D, projections=False, beta=8.0)(probes, stored).output`` is eq. 3 applied to ``probes``
with ``stored`` as :math:`X` — store these patterns, retrieve from this probe, nothing to train.
There ``beta`` must be given (unless learned) and ``num_heads`` is 1: the transformer's default
:math:`\\beta = 1/\\sqrt{d}` (kept with projections) gives metastable averages of similar patterns
rather than the patterns (see :mod:`qkv.memory.hopfield.modern`, metastable states).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.biases import BiasLike
from qkv.functional.checks import check_dropout, check_flag, check_positive_int
from qkv.functional.masks import MaskLike
from qkv.functional.output import AttentionOutput
from qkv.layers.common import check_inputs, with_output
from qkv.memory.hopfield.modern import check_beta

__all__ = ["Hopfield"]


class Hopfield(nn.Module):
    """Modern Hopfield association :math:`Z = \\operatorname{softmax}(\\beta Q K^\\top) V` (Ramsauer et al. eq. 10).

    Args:
        query_dim: width ``Dq`` of the state patterns (``query``).
        key_dim: width ``Dk`` of the stored patterns (``key``; default ``Dq``).
        value_dim: width ``Dv`` of the pattern projections (``value``; default ``Dk``).
        hidden_dim: width ``H * d`` of the association space (default ``Dq``).
        output_dim: width ``E`` of the output (default ``Dq``).
        num_heads: heads ``H``; must divide ``hidden_dim``; 1 without projections.
        beta: the inverse temperature :math:`\\beta > 0` (default ``1/sqrt(d)`` with projections; required
            without them unless ``learn_beta``, where ``1/sqrt(D)`` is only the starting value).
        learn_beta: make :math:`\\beta` a parameter (learned as its logarithm, so it stays positive).
        projections: learn :math:`W_Q, W_K, W_V` and an output projection; ``False`` = a pure
            associative memory (requires ``Dq == Dk``; the output is the values' width).
        proj_bias: biases in the projections.
        dropout: dropout on the association weights (training mode only).
    """

    def __init__(
        self,
        query_dim: int,
        *,
        key_dim: int | None = None,
        value_dim: int | None = None,
        hidden_dim: int | None = None,
        output_dim: int | None = None,
        num_heads: int = 1,
        beta: float | None = None,
        learn_beta: bool = False,
        projections: bool = True,
        proj_bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.query_dim = check_positive_int("query_dim", query_dim)
        self.key_dim = check_positive_int("key_dim", self.query_dim if key_dim is None else key_dim)
        self.value_dim = check_positive_int("value_dim", self.key_dim if value_dim is None else value_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.projections = check_flag("projections", projections)
        check_flag("proj_bias", proj_bias)
        check_flag("learn_beta", learn_beta)
        self.dropout = check_dropout(dropout)
        if self.projections:
            self.hidden_dim = check_positive_int("hidden_dim", self.query_dim if hidden_dim is None else hidden_dim)
            self.output_dim = check_positive_int("output_dim", self.query_dim if output_dim is None else output_dim)
            if self.hidden_dim % self.num_heads:
                raise ValueError(f"num_heads ({self.num_heads}) must divide hidden_dim ({self.hidden_dim})")
            self.q_proj = nn.Linear(self.query_dim, self.hidden_dim, bias=proj_bias)
            self.k_proj = nn.Linear(self.key_dim, self.hidden_dim, bias=proj_bias)
            self.v_proj = nn.Linear(self.value_dim, self.hidden_dim, bias=proj_bias)
            self.out_proj = nn.Linear(self.hidden_dim, self.output_dim, bias=proj_bias)
        else:
            if self.key_dim != self.query_dim:
                raise ValueError(
                    f"projections=False needs key_dim == query_dim (the stored patterns live in the state space), "
                    f"got query_dim={self.query_dim}, key_dim={self.key_dim}"
                )
            for name, given in (("hidden_dim", hidden_dim), ("output_dim", output_dim)):
                if given is not None:
                    raise ValueError(f"{name} needs projections=True, got {name}={given!r}")
            if self.num_heads != 1:  # heads would split the patterns' components: not eq. 3 any more
                raise ValueError(f"num_heads must be 1 when projections=False (a pure associative memory "
                                 f"retrieves whole patterns), got num_heads={self.num_heads}")
            if beta is None and not learn_beta:
                raise ValueError(
                    "beta must be given when projections=False (a pure associative memory): the transformer's "
                    "1/sqrt(D) gives metastable averages of similar patterns; choose beta * separation >> log N "
                    "(see qkv.memory.hopfield.modern)"
                )
            self.hidden_dim, self.output_dim = self.query_dim, self.value_dim
        self.head_dim = self.hidden_dim // self.num_heads
        b = 1.0 / math.sqrt(self.head_dim) if beta is None else check_beta(beta)
        if learn_beta:
            self.log_beta = nn.Parameter(torch.tensor(math.log(b)))
            self.fixed_beta: float | None = None
        else:
            self.log_beta = None
            self.fixed_beta = b

    @property
    def beta(self) -> Tensor | float:
        """The current :math:`\\beta` (a tensor when learned)."""
        return self.fixed_beta if self.log_beta is None else self.log_beta.exp()

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
        """Associate each state pattern in ``query`` with the stored patterns in ``key``.

        Args:
            query: ``(B, L, Dq)`` state patterns.
            key: ``(B, S, Dk)`` stored patterns; defaults to ``query`` (self-association).
            value: ``(B, S, Dv)`` pattern projections; defaults to ``key``.
            mask: as in :func:`qkv.attend`, broadcast to ``(B, H, L, S)`` (True = may attend).
            bias: as in :func:`qkv.attend`, broadcast to ``(B, H, L, S)``.
            return_weights: also return the association weights ``(B, H, L, S)``.

        Returns:
            :class:`qkv.AttentionOutput` with ``output (B, L, E)`` (``(B, L, Dv)`` without projections).
        """
        query, key, value = check_inputs(query, key, value, query_dim=self.query_dim, key_dim=self.key_dim,
                                         value_dim=self.value_dim)
        q, k, v = (self.q_proj(query), self.k_proj(key), self.v_proj(value)) if self.projections else (
            query, key, value)
        H = self.num_heads
        q = rearrange(q, "b l (h d) -> b h l d", h=H)  # (B, H, L, d)
        k = rearrange(k, "b s (h d) -> b h s d", h=H)  # (B, H, S, d)
        v = rearrange(v, "b s (h e) -> b h s e", h=H)  # (B, H, S, dv)
        if self.log_beta is None:
            score, scale = "dot", self.fixed_beta
        else:  # beta * (q . k) == (beta * q) . k: the same scores, with a gradient reaching beta
            q, score, scale = q * self.log_beta.exp().to(q.dtype), "dot", None
        out = attend(q, k, v, score=score, scale=scale, mask=mask, bias=bias,
                     dropout=self.dropout if self.training else 0.0, return_weights=return_weights)
        z = rearrange(out.output, "b h l e -> b l (h e)")  # (B, L, H * dv)
        return with_output(out, self.out_proj(z) if self.projections else z)

    def extra_repr(self) -> str:
        beta = "learned" if self.log_beta is not None else f"{self.fixed_beta:.4g}"
        return (f"query_dim={self.query_dim}, key_dim={self.key_dim}, value_dim={self.value_dim}, "
                f"num_heads={self.num_heads}, beta={beta}, projections={self.projections}")
