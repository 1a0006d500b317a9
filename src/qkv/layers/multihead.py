"""Multi-head attention: self- and cross-attention with H heads over learned projections.

Shape legend: ``B`` batch, ``L`` queries, ``S`` keys, ``E`` model width (``query_dim``), ``H`` query heads,
``Hkv`` key/value heads (grouped-query attention), ``G = H / Hkv``, ``d = E / H`` head width.

Vaswani et al. 2017 §3.2.2 (seeds 001 §8.3, 002, 003, 004):

.. math:: \\mathrm{MultiHead}(Q, K, V) = \\mathrm{Concat}(\\mathrm{head}_1, \\dots, \\mathrm{head}_H) W^O,
          \\qquad \\mathrm{head}_h = \\mathrm{Attention}(Q W^Q_h, K W^K_h, V W^V_h).

Grouped-query attention (Ainslie et al. 2023): ``Hkv < H`` key/value heads, each shared by
``G`` query heads. Positions: ``rotary=`` rotates the projected queries and keys (RoPE,
:class:`qkv.positional.Rotary`); ``position_bias=`` adds a lazy bias (ALiBi, T5) to every call.
Incremental decoding: ``layer(x_new, cache=KVCache())`` attends over the cached keys plus the new
ones and returns the updated cache in ``.state`` (:mod:`qkv.layers.cache`).

Masks follow qkv's convention, **True = may attend**, and weights come back
per head; ``torch.nn.MultiheadAttention``'s inverted masks and head-averaged weights exist only
in the adapters: :meth:`MultiHeadAttention.from_torch` and :mod:`qkv.layers.torch_compat`.
"""

from __future__ import annotations

import dataclasses

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.biases import Bias, BiasLike
from qkv.functional.checks import check_dropout, check_flag, check_positive_int
from qkv.functional.masks import Mask, MaskLike
from qkv.functional.masks import window as window_mask
from qkv.functional.output import AttentionOutput
from qkv.kernels import ring
from qkv.layers.cache import CrossAttentionCache, KVCache
from qkv.layers.common import ScoreArg, build_score, check_inputs, with_output
from qkv.positional.rotary import Rotary

__all__ = ["MultiHeadAttention"]


def _unless_all_allowed(mask: MaskLike, S: int, device: torch.device) -> MaskLike | None:
    """``None`` when a one-query mask allows every key (a decoding step under ``causal()``), else ``mask``.

    Dropping a mask that forbids nothing is exact, and it spares :func:`qkv.attend` the mask's checks and
    its materialisation on each generated token. A lazy mask answers :meth:`~qkv.functional.masks.Mask.allows_all`
    without building a tensor (causal, windows and their intersections); other masks that vary along neither
    batch nor heads are evaluated on the one row; the rest are kept as they are.
    """
    if isinstance(mask, Tensor):
        # only a bool tensor of a shape that fits one row may be dropped: anything else goes on to attend's checks
        fits = mask.dtype == torch.bool and mask.dim() <= 4 and all(
            n == 1 for n in mask.shape[:-1]) and mask.shape[-1:] in ((), (1,), (S,))
        return None if fits and bool(mask.all()) else mask
    if isinstance(mask, Mask):
        if mask.allows_all(1, S):
            return None
        if mask.depends() == (False, False):
            return None if bool(mask.tile(0, 1, 0, S, L=1, S=S, device=device).all()) else mask
    return mask


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
        rotary: a :class:`qkv.positional.Rotary` applied to the projected queries and keys of each head
            (RoPE; its ``dim`` <= the head width ``E / H``). Positions count from the cache's ``position``.
        position_bias: a bias added to every call's scores: a lazy :class:`~qkv.functional.biases.Bias`
            (e.g. ``qkv.positional.alibi(H)``) or an ``nn.Module`` whose call returns one and which owns its
            parameters (``qkv.positional.T5RelativeBias(H)``).
        window: truncated (windowed) self-attention: every call also applies ``qkv.masks.window(window)``
            (query ``i`` sees keys ``|j - i| <= window``, bottom-right aligned, so cached decoding works),
            intersected with the call's ``mask`` (seed 003: self-attention over long speech frame sequences
            attends to a neighbourhood). ``None`` (default): no window.
        sequence_parallel: sequence parallelism by ring attention (:mod:`qkv.kernels.ring`): ``True`` uses
            the enclosing ``qkv.kernels.ring.sequence_parallel()`` block at call time, or pass a
            :class:`~qkv.kernels.ring.SequenceParallel`. Inputs are then this rank's shards of the
            sequence; masks, biases, windows and RoPE use global positions. No cache, weights or
            attention dropout. ``None`` (default): ordinary attention.
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
        rotary: Rotary | None = None,
        position_bias: Bias | nn.Module | None = None,
        window: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        sequence_parallel: bool | ring.SequenceParallel | None = None,
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
        if rotary is not None and not isinstance(rotary, Rotary):
            raise TypeError(f"rotary must be a qkv.positional.Rotary or None, got {type(rotary).__name__}")
        if rotary is not None and rotary.dim > self.head_dim:
            raise ValueError(f"rotary.dim ({rotary.dim}) must not exceed the head width query_dim / num_heads "
                             f"= {self.head_dim}")
        self.rotary = rotary
        if position_bias is not None and not isinstance(position_bias, (Bias, nn.Module)):
            raise TypeError(
                "position_bias must be a qkv Bias (e.g. qkv.positional.alibi(H)) or an nn.Module returning one "
                f"(qkv.positional.T5RelativeBias), got {type(position_bias).__name__}"
            )
        self.position_bias = position_bias
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 0):
            raise ValueError(f"window must be None or an int >= 0, got {window!r}")
        self.window = window
        if not (sequence_parallel is None or isinstance(sequence_parallel, (bool, ring.SequenceParallel))):
            raise TypeError("sequence_parallel must be None, a bool or a qkv.kernels.ring.SequenceParallel, got "
                            f"{type(sequence_parallel).__name__}")
        self.sequence_parallel = sequence_parallel or None
        self._init_projections()

    def reset_parameters(self) -> None:
        """Re-initialise: Xavier-uniform input projections, ``nn.Linear``'s default output projection, zero biases."""
        self.out_proj.reset_parameters()
        self._init_projections()
        if isinstance(self.score, nn.Module) and hasattr(self.score, "reset_parameters"):
            self.score.reset_parameters()
        if isinstance(self.position_bias, nn.Module) and hasattr(self.position_bias, "reset_parameters"):
            self.position_bias.reset_parameters()

    def _init_projections(self) -> None:
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
        cache: KVCache | CrossAttentionCache | None = None,
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
            cache: incremental decoding. A :class:`~qkv.layers.cache.KVCache` (self-attention): the new
                keys/values (from ``key``/``value``, by default ``query``) are appended to the cached ones and
                the queries, the last ``L`` positions, attend over all ``S`` of them — pass ``mask=causal()``
                as without a cache (it is bottom-right aligned); a tensor mask must cover the ``S`` keys. A
                windowed cache adds its window mask. A :class:`~qkv.layers.cache.CrossAttentionCache`:
                ``key``/``value`` are projected on the first call only and reused afterwards.

        Returns:
            :class:`AttentionOutput` with ``output (B, L, E)`` and every other field of :func:`qkv.attend`;
            ``state`` is the updated cache when ``cache`` is given.
        """
        if cache is not None and not isinstance(cache, (KVCache, CrossAttentionCache)):
            raise TypeError(f"cache must be a KVCache, a CrossAttentionCache or None, got {type(cache).__name__}")
        reuse = isinstance(cache, CrossAttentionCache) and cache.key is not None
        if reuse:  # the memory was projected on an earlier call
            query = check_inputs(query, None, None, query_dim=self.query_dim, key_dim=self.query_dim)[0]
        else:
            query, key, value = check_inputs(
                query, key, value, query_dim=self.query_dim, key_dim=self.key_dim, value_dim=self.value_dim
            )
        offset = cache.position if isinstance(cache, KVCache) else 0
        sp = self._sharding(cache, return_weights)
        q = rearrange(self.q_proj(query), "b l (h d) -> b h l d", h=self.num_heads)  # (B, H, L, d)
        if self.rotary is not None:
            q = self.rotary(q, offset=offset) if sp is None else self.rotary(q, positions=sp.positions(
                q.shape[-2], device=q.device))
        state = cache
        if reuse:
            k, v = cache.key, cache.value  # (B, Hkv, S, d)
            if k.shape[0] != q.shape[0]:
                raise ValueError(f"cache: the cached memory has batch {k.shape[0]}, query has {q.shape[0]}")
        else:
            k = rearrange(self.k_proj(key), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, d)
            v = rearrange(self.v_proj(value), "b s (h d) -> b h s d", h=self.num_kv_heads)  # (B, Hkv, S, d)
            if self.rotary is not None:
                k = self.rotary(k, offset=offset) if sp is None else self.rotary(k, positions=sp.positions(
                    k.shape[-2], device=k.device))
            if isinstance(cache, KVCache):
                if self.window is not None and cache.window is not None and cache.window < self.window + 1:
                    raise ValueError(
                        f"cache: a KVCache(window={cache.window}) drops keys that window={self.window} attends to; "
                        f"a causal layer with window={self.window} needs KVCache(window={self.window + 1}) or more"
                    )
                k, v, state = cache.update(k, v)  # (B, Hkv, S_cached + S, d)
                window = cache.mask()
                if window is not None:
                    mask = window if mask is None else window & mask
            elif isinstance(cache, CrossAttentionCache):
                state = CrossAttentionCache(k, v)
        if self.window is not None:
            band = window_mask(self.window)
            mask = band if mask is None else band & mask
        if mask is not None and q.shape[-2] == 1 and sp is None:
            mask = _unless_all_allowed(mask, k.shape[-2], q.device)
        if self.position_bias is not None:
            pb = self.position_bias() if isinstance(self.position_bias, nn.Module) else self.position_bias
            bias = pb if bias is None else pb + bias
        if self.num_kv_heads != self.num_heads:
            g = self.num_heads // self.num_kv_heads
            k = repeat(k, "b hk s d -> b (hk g) s d", g=g)  # (B, H, S, d)
            v = repeat(v, "b hk s d -> b (hk g) s d", g=g)  # (B, H, S, d)
        out = attend(
            q, k, v, score=self.score, mask=mask, bias=bias,
            dropout=self.dropout if self.training else 0.0, return_weights=return_weights,
            **({} if sp is None else {"backend": "ring", "group": sp}),
        )
        output = self.out_proj(rearrange(out.output, "b h l d -> b l (h d)"))  # (B, L, E)
        if cache is None:
            return with_output(out, output)
        return dataclasses.replace(out, output=output, state=state)  # one copy of the fields per decoding step

    def _sharding(self, cache, return_weights: bool) -> ring.SequenceParallel | None:
        """The sequence-parallel sharding of this call, or ``None``."""
        if self.sequence_parallel is None:
            return None
        if cache is not None or return_weights:
            raise ValueError("sequence_parallel: ring attention takes no cache and returns no weights")
        if isinstance(self.sequence_parallel, ring.SequenceParallel):
            return self.sequence_parallel
        sp = ring.current()
        if sp is None:
            raise ValueError("sequence_parallel=True needs an enclosing qkv.kernels.ring.sequence_parallel() block")
        return sp

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
            + ("" if self.position_bias is None or isinstance(self.position_bias, nn.Module)
               else f", position_bias={self.position_bias!r}")
        )
