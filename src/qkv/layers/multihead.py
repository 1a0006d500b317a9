"""Multi-head attention: self- and cross-attention with H heads over learned projections.

Shape legend: ``B`` batch, ``L`` queries, ``S`` keys, ``E`` model width, ``H`` query heads,
``Hkv`` key/value heads (grouped-query attention), ``G = H / Hkv``, ``d = E / H`` head width.

Vaswani et al. 2017 §3.2.2 (seeds 001 §8.3, 002, 003, 004):

.. math:: \\mathrm{MultiHead}(Q, K, V) = \\mathrm{Concat}(\\mathrm{head}_1, \\dots, \\mathrm{head}_H) W^O,
          \\qquad \\mathrm{head}_h = \\mathrm{Attention}(Q W^Q_h, K W^K_h, V W^V_h).

Grouped-query attention (Ainslie et al. 2023): ``Hkv < H`` key/value heads, each shared by
``G`` query heads. Masks follow qkv's convention, **True = may attend** — the opposite of
``torch.nn.MultiheadAttention``; :meth:`MultiHeadAttention.from_torch` copies weights only.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from qkv import masks as M
from qkv.biases import Bias
from qkv.functional.attention import attend
from qkv.functional.output import AttentionOutput
from qkv.layers._common import ScoreArg, build_score, check_input

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
    """Multi-head (self- or cross-) attention, batch first.

    Args:
        embed_dim: model width ``E`` (queries and output).
        num_heads: number of query heads ``H``; must divide ``E``.
        kdim: width of the key input (default ``E``).
        vdim: width of the value input (default ``E``).
        num_kv_heads: key/value heads for grouped-query attention (default ``H``; 1 = multi-query).
        dropout: dropout on the attention weights (training mode only).
        bias: learn biases in the input and output projections.
        score: the per-head score (default ``"scaled_dot"``); any name or callable of :func:`qkv.attend`.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        kdim: int | None = None,
        vdim: int | None = None,
        num_kv_heads: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        score: ScoreArg = "scaled_dot",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, val in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if embed_dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide embed_dim ({embed_dim})")
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        kv_ok = isinstance(num_kv_heads, int) and not isinstance(num_kv_heads, bool) and num_kv_heads > 0
        if not kv_ok or num_heads % num_kv_heads:
            raise ValueError(
                f"num_kv_heads must be a positive divisor of num_heads ({num_heads}), got {num_kv_heads!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.dropout = dropout
        kv_width = num_kv_heads * self.head_dim
        factory = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(self.kdim, kv_width, bias=bias, **factory)
        self.v_proj = nn.Linear(self.vdim, kv_width, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
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
        key_mask: Tensor | None = None,
        attn_mask: M.MaskLike | None = None,
        causal: bool = False,
        bias: Tensor | Bias | None = None,
        need_weights: bool = False,
        average_weights: bool = True,
    ) -> AttentionOutput:
        """Attend from ``query`` over ``key``/``value`` (self-attention when they are omitted).

        Args:
            query: ``(B, L, E)``.
            key: ``(B, S, kdim)``; defaults to ``query``.
            value: ``(B, S, vdim)``; defaults to ``key``.
            key_mask: ``(B, S)`` bool, True = a real key (not padding).
            attn_mask: bool, True = may attend, broadcastable to ``(L, S)``, ``(B, L, S)`` or
                ``(B, H, L, S)``; or a lazy :class:`qkv.masks.Mask`.
            causal: forbid attending to later positions (top-left aligned).
            bias: additive float scores broadcastable to ``(B, H, L, S)``, or a lazy :mod:`qkv.biases`
                bias (ALiBi, relative positions).
            need_weights: also return the attention weights.
            average_weights: return weights averaged over heads ``(B, L, S)`` instead of ``(B, H, L, S)``.

        Returns:
            :class:`AttentionOutput` with ``output (B, L, E)`` and, if asked, ``weights``. Weights are
            taken before dropout.
        """
        query = check_input("query", query, dims=(3,), width=self.embed_dim)
        key = query if key is None else check_input("key", key, dims=(3,), width=self.kdim)
        value = key if value is None else check_input("value", value, dims=(3,), width=self.vdim)
        B, L, _ = query.shape
        S = key.shape[1]
        if key.shape[0] != B or value.shape[:2] != key.shape[:2]:
            raise ValueError(
                f"query (B, L, E), key (B, S, kdim) and value (B, S, vdim) must agree on B and S: got "
                f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
            )
        q = rearrange(self.q_proj(query), "b l (h d) -> b h l d", h=self.num_heads)  # (B, H, L, d)
        k = rearrange(self.k_proj(key), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, d)
        v = rearrange(self.v_proj(value), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, d)
        if self.num_kv_heads != self.num_heads:
            g = self.num_heads // self.num_kv_heads
            k = repeat(k, "b hk s d -> b (hk g) s d", g=g)  # (B, H, S, d)
            v = repeat(v, "b hk s d -> b (hk g) s d", g=g)  # (B, H, S, d)

        out = attend(
            q, k, v,
            score=self.score, mask=self._mask(key_mask, attn_mask, causal, B, L, S), bias=bias,
            dropout=self.dropout if self.training else 0.0, return_weights=need_weights,
        )
        output = self.out_proj(rearrange(out.output, "b h l d -> b l (h d)"))  # (B, L, E)
        weights = out.weights
        if weights is not None and average_weights:
            weights = weights.mean(dim=1)  # (B, L, S)
        return AttentionOutput(output=output, weights=weights)

    @staticmethod
    def _mask(key_mask: Tensor | None, attn_mask: M.MaskLike | None, causal: bool, B: int, L: int, S: int):
        parts: list[M.MaskLike] = []
        if key_mask is not None:
            if not isinstance(key_mask, Tensor) or key_mask.dtype != torch.bool or key_mask.shape != (B, S):
                got = (key_mask.dtype, tuple(key_mask.shape)) if isinstance(key_mask, Tensor) else type(key_mask)
                raise ValueError(f"key_mask must be a bool tensor of shape (B, S) = ({B}, {S}), got {got}")
            parts.append(key_mask[:, None, None, :])  # (B, 1, 1, S)
        if attn_mask is not None:
            if isinstance(attn_mask, Tensor) and attn_mask.dim() == 3:
                attn_mask = attn_mask.unsqueeze(1)  # (B, 1, L, S)
            parts.append(attn_mask)
        if causal:
            parts.append(M.causal())
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else M.and_(*parts)

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """An exact equivalent of a ``torch.nn.MultiheadAttention`` (weights copied).

        The result is batch first whatever ``module.batch_first`` is, and its masks are
        True = may attend (torch's ``key_padding_mask``/``attn_mask`` are True = ignore).
        ``add_bias_kv`` and ``add_zero_attn`` are not supported.
        """
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"module must be a torch.nn.MultiheadAttention, got {type(module).__name__}")
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("from_torch: add_bias_kv and add_zero_attn are not supported")
        E = module.embed_dim
        has_bias = module.in_proj_bias is not None
        ref = module.out_proj.weight
        new = cls(
            E, module.num_heads, kdim=module.kdim, vdim=module.vdim, dropout=module.dropout, bias=has_bias,
            device=ref.device, dtype=ref.dtype,
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
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}, "
            f"kdim={self.kdim}, vdim={self.vdim}, dropout={self.dropout}"
        )
