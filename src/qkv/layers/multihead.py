"""Multi-head attention: self- and cross-attention with H heads over learned projections.

Shape legend: ``B`` batch, ``L`` queries, ``S`` keys, ``E`` model width (``query_dim``), ``H`` query heads,
``Hkv`` key/value heads (grouped-query attention), ``G = H / Hkv``, ``d = E / H`` head width.

Vaswani et al. 2017 §3.2.2 (seeds 001 §8.3, 002, 003, 004):

.. math:: \\mathrm{MultiHead}(Q, K, V) = \\mathrm{Concat}(\\mathrm{head}_1, \\dots, \\mathrm{head}_H) W^O,
          \\qquad \\mathrm{head}_h = \\mathrm{Attention}(Q W^Q_h, K W^K_h, V W^V_h).

Grouped-query attention (Ainslie et al. 2023): ``Hkv < H`` key/value heads, each shared by
``G`` query heads. Masks follow qkv's convention, **True = may attend**, and weights come back
per head; ``torch.nn.MultiheadAttention``'s inverted masks and head-averaged weights exist only
in the adapters: :meth:`MultiHeadAttention.from_torch` and :mod:`qkv.layers.torch_compat`.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.biases import BiasLike
from qkv.functional.checks import check_dropout, check_flag, check_positive_int
from qkv.functional.masks import MaskLike
from qkv.functional.output import AttentionOutput
from qkv.layers.common import ScoreArg, build_score, check_inputs, with_output

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
    """Multi-head (self- or cross-) attention, batch first.

    Args:
        query_dim: model width ``E`` (queries and output).
        num_heads: number of query heads ``H``; must divide ``E``.
        key_dim: width of the key input (default ``E``).
        value_dim: width of the value input (default ``E``).
        num_kv_heads: key/value heads for grouped-query attention (default ``H``; 1 = multi-query).
        dropout: dropout on the attention weights (training mode only).
        proj_bias: learn biases in the input and output projections.
        score: the per-head score (default ``"scaled_dot"``); any name or callable of :func:`qkv.attend`.
    """

    def __init__(
        self,
        query_dim: int,
        num_heads: int,
        *,
        key_dim: int | None = None,
        value_dim: int | None = None,
        num_kv_heads: int | None = None,
        dropout: float = 0.0,
        proj_bias: bool = True,
        score: ScoreArg = "scaled_dot",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        E = check_positive_int("query_dim", query_dim)
        H = check_positive_int("num_heads", num_heads)
        if E % H:
            raise ValueError(f"num_heads ({H}) must divide query_dim ({E})")
        Hkv = check_positive_int("num_kv_heads", H if num_kv_heads is None else num_kv_heads)
        if H % Hkv:
            raise ValueError(f"num_kv_heads must be a positive divisor of num_heads ({H}), got {Hkv!r}")
        self.query_dim, self.num_heads, self.num_kv_heads = E, H, Hkv
        self.head_dim = E // H
        self.key_dim = check_positive_int("key_dim", E if key_dim is None else key_dim)
        self.value_dim = check_positive_int("value_dim", E if value_dim is None else value_dim)
        self.dropout = check_dropout(dropout)
        check_flag("proj_bias", proj_bias)
        kv_width = Hkv * self.head_dim
        factory = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(E, E, bias=proj_bias, **factory)
        self.k_proj = nn.Linear(self.key_dim, kv_width, bias=proj_bias, **factory)
        self.v_proj = nn.Linear(self.value_dim, kv_width, bias=proj_bias, **factory)
        self.out_proj = nn.Linear(E, E, bias=proj_bias, **factory)
        self.score = build_score(score, query_dim=self.head_dim, key_dim=self.head_dim)
        if isinstance(self.score, nn.Module) and (device is not None or dtype is not None):
            self.score.to(device=device, dtype=dtype)
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)
        if self.out_proj.bias is not None:
            nn.init.zeros_(self.out_proj.bias)

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
        """Attend from ``query`` over ``key``/``value`` (self-attention when they are omitted).

        Args:
            query: ``(B, L, E)``.
            key: ``(B, S, key_dim)``; defaults to ``query``.
            value: ``(B, S, value_dim)``; defaults to ``key``.
            mask: as in :func:`qkv.attend`, True = may attend, broadcast to ``(B, H, L, S)``: e.g.
                ``qkv.masks.key_padding(keep) & qkv.masks.causal()``.
            bias: additive float scores or a lazy bias (:mod:`qkv.positional`), broadcast to ``(B, H, L, S)``.
            return_weights: also return the per-head weights ``(B, H, L, S)`` (before dropout).

        Returns:
            :class:`AttentionOutput` with ``output (B, L, E)`` and every other field of :func:`qkv.attend`.
        """
        query, key, value = check_inputs(
            query, key, value, query_dim=self.query_dim, key_dim=self.key_dim, value_dim=self.value_dim
        )
        q = rearrange(self.q_proj(query), "b l (h d) -> b h l d", h=self.num_heads)  # (B, H, L, d)
        k = rearrange(self.k_proj(key), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, d)
        v = rearrange(self.v_proj(value), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, d)
        if self.num_kv_heads != self.num_heads:
            g = self.num_heads // self.num_kv_heads
            k = repeat(k, "b hk s d -> b (hk g) s d", g=g)  # (B, H, S, d)
            v = repeat(v, "b hk s d -> b (hk g) s d", g=g)  # (B, H, S, d)
        out = attend(
            q, k, v, score=self.score, mask=mask, bias=bias,
            dropout=self.dropout if self.training else 0.0, return_weights=return_weights,
        )
        return with_output(out, self.out_proj(rearrange(out.output, "b h l d -> b l (h d)")))  # (B, L, E)

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """An exact equivalent of a ``torch.nn.MultiheadAttention`` (weights copied).

        The result is batch first whatever ``module.batch_first`` is; it takes qkv's masks
        (True = may attend) and returns per-head weights — convert torch-style masks and average
        the heads with :mod:`qkv.layers.torch_compat`. ``add_bias_kv`` and ``add_zero_attn`` are not
        supported.
        """
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"module must be a torch.nn.MultiheadAttention, got {type(module).__name__}")
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("from_torch: add_bias_kv and add_zero_attn are not supported")
        E = module.embed_dim
        has_bias = module.in_proj_bias is not None
        ref = module.out_proj.weight
        new = cls(
            E, module.num_heads, key_dim=module.kdim, value_dim=module.vdim, dropout=module.dropout,
            proj_bias=has_bias, device=ref.device, dtype=ref.dtype,
        )
        with torch.no_grad():
            if module._qkv_same_embed_dim:
                wq, wk, wv = module.in_proj_weight.chunk(3)
            else:
                wq, wk, wv = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
            for proj, w in ((new.q_proj, wq), (new.k_proj, wk), (new.v_proj, wv)):
                proj.weight.copy_(w)
            if has_bias:
                for proj, b in zip((new.q_proj, new.k_proj, new.v_proj), module.in_proj_bias.chunk(3), strict=True):
                    proj.bias.copy_(b)
                new.out_proj.bias.copy_(module.out_proj.bias)
            new.out_proj.weight.copy_(module.out_proj.weight)
        return new.train(module.training)

    def extra_repr(self) -> str:
        return (
            f"query_dim={self.query_dim}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}, "
            f"key_dim={self.key_dim}, value_dim={self.value_dim}, dropout={self.dropout}"
        )
