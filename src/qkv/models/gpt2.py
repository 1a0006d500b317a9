"""A decoder-only language model in GPT-2's layout, loadable from Hugging Face ``transformers``.

Shape legend: ``B`` batch, ``L`` new positions (tokens given to a call), ``S`` keys (cached plus new
positions), ``E`` model width, ``H`` heads, ``F`` feed-forward width, ``N`` layers, ``V`` vocabulary,
``P`` the maximum number of positions.

GPT (Radford et al. 2018, §3.1, eq. 2) with GPT-2's changes (Radford et al. 2019, §2.3):

.. math:: h_0 = U W_e + W_p, \\qquad h_l = \\mathrm{block}(h_{l-1}) \\; (l = 1..N), \\qquad
          P(u) = \\mathrm{softmax}(\\mathrm{LN}(h_N)\\, W_e^\\top),

``W_e`` the token embedding (also the output layer: the LM head is tied to it), ``W_p`` learned
absolute positions (:class:`qkv.positional.LearnedPositions`), and each block pre-LN
(:class:`~qkv.models.transformer.TransformerEncoderLayer` with ``norm_first=True``): masked
multi-head self-attention and a ``4 E`` feed-forward network with GELU's tanh approximation
(GPT-2's ``gelu_new``), LayerNorm epsilon ``1e-5``, then a final LayerNorm after the stack.
GPT-2 initialises the residual projections with ``std = 0.02 / sqrt(2 N)`` (§2.3).

Every layer's read is ``qkv.attend(q, k, v, score="scaled_dot", mask=causal() & key_padding(keep))``
per head (:class:`qkv.MultiHeadAttention`); ``return_weights=True`` gives the ``N`` per-head weight
tensors ``(B, H, L, S)``, Hugging Face's ``output_attentions``.

**Generation.** :meth:`GPT2LMHead.step` is the ``step(tokens, cache) -> (logits, cache)`` of
:mod:`qkv.models.decoding`, with a :class:`GPT2Cache` (one key/value cache per layer and the padding
mask seen so far), so ``greedy(model.step, prompt, max_new_tokens=n)``, ``sample`` and
``beam_search`` work as they are; :meth:`GPT2LMHead.generate` wraps them. Left-padded prompts take
an ``attention_mask``; positions then count real tokens only (as ``transformers``' ``generate``).

**Loading.** :meth:`GPT2.from_hf` / :meth:`GPT2LMHead.from_hf` copy a ``transformers``
``GPT2Model`` or ``GPT2LMHeadModel``: its ``Conv1D`` weights are stored transposed (``x W + b``) and
``c_attn`` packs the query, key and value maps along the output dimension.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.functional.checks import check_dropout, check_flag, check_positive_int
from qkv.functional.masks import causal, key_padding
from qkv.functional.scores import Dot
from qkv.layers.cache import KVCache
from qkv.models.decoding import BeamSearchOutput, GenerationOutput, beam_search, greedy, sample
from qkv.models.feedforward import check_activation
from qkv.models.hf_compat import (
    activation_from_hf,
    check_hf_model,
    conv1d_weight,
    copy_layer_norm,
    copy_linear,
)
from qkv.models.transformer import TransformerEncoder, TransformerEncoderLayer, TransformerOutput
from qkv.positional.learned import LearnedPositions

__all__ = ["GPT2", "GPT2Cache", "GPT2Config", "GPT2LMHead", "GPT2Output"]

STRATEGIES = ("greedy", "sample", "beam")


@dataclass(frozen=True)
class GPT2Config:
    """GPT-2's hyper-parameters (defaults: GPT-2 small, 124M parameters).

    Attributes:
        vocab_size: ``V`` (50257).
        max_positions: ``P`` (1024), the learned positions.
        dim: ``E`` (768).
        num_layers: ``N`` (12).
        num_heads: ``H`` (12).
        ff_dim: ``F`` (default ``4 E``).
        activation: the feed-forward activation (``"gelu_tanh"``, GPT-2's ``gelu_new``).
        norm_eps: LayerNorm's epsilon (1e-5).
        dropout: on each sub-layer's output before the residual sum (``resid_pdrop``).
        embedding_dropout: on the summed embeddings (``embd_pdrop``).
        attention_dropout: on the attention weights (``attn_pdrop``).
        scale_attention: scores divided by ``sqrt(E / H)`` (``scale_attn_weights``).
        scale_by_inverse_layer: scores of layer ``n`` (from 0) further divided by ``n + 1``
            (``scale_attn_by_inverse_layer_idx``).
        tie_embeddings: the LM head is the token embedding (``tie_word_embeddings``).
        init_std: the initial weights' standard deviation (``initializer_range``).
    """

    vocab_size: int = 50257
    max_positions: int = 1024
    dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ff_dim: int | None = None
    activation: str = "gelu_tanh"
    norm_eps: float = 1e-5
    dropout: float = 0.1
    embedding_dropout: float = 0.1
    attention_dropout: float = 0.1
    scale_attention: bool = True
    scale_by_inverse_layer: bool = False
    tie_embeddings: bool = True
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_positions", "dim", "num_layers", "num_heads"):
            check_positive_int(name, getattr(self, name))
        if self.ff_dim is not None:
            check_positive_int("ff_dim", self.ff_dim)
        if self.dim % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide dim ({self.dim})")
        check_activation(self.activation)
        for name in ("dropout", "embedding_dropout", "attention_dropout"):
            check_dropout(getattr(self, name), name=name)
        for name in ("scale_attention", "scale_by_inverse_layer", "tie_embeddings"):
            check_flag(name, getattr(self, name))
        for name in ("norm_eps", "init_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")

    @classmethod
    def from_hf(cls, config: object) -> GPT2Config:
        """The same hyper-parameters as a ``transformers.GPT2Config``."""
        if getattr(config, "add_cross_attention", False):
            raise ValueError("from_hf: GPT-2 with cross-attention (add_cross_attention=True) is not supported")
        return cls(
            vocab_size=config.vocab_size, max_positions=config.n_positions, dim=config.n_embd,
            num_layers=config.n_layer, num_heads=config.n_head, ff_dim=config.n_inner,
            activation=activation_from_hf(config.activation_function), norm_eps=float(config.layer_norm_epsilon),
            dropout=float(config.resid_pdrop), embedding_dropout=float(config.embd_pdrop),
            attention_dropout=float(config.attn_pdrop), scale_attention=bool(config.scale_attn_weights),
            scale_by_inverse_layer=bool(config.scale_attn_by_inverse_layer_idx),
            tie_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
            init_std=float(getattr(config, "initializer_range", 0.02)),
        )


@dataclass(frozen=True)
class GPT2Cache:
    """What incremental decoding keeps: one :class:`~qkv.layers.cache.KVCache` per layer and the padding mask.

    Attributes:
        layers: ``N`` caches of keys and values ``(B, H, S, d)``.
        keep: ``(B, S')``, True = a real token, for the positions seen so far (``S' = position``), or
            declared ahead for the next call's tokens too (``S' = position + L``, a padded prompt);
            ``None``: no padding.
    """

    layers: tuple[KVCache, ...]
    keep: Tensor | None = None

    @property
    def position(self) -> int:
        """How many positions the model has seen."""
        return self.layers[0].position

    def reorder(self, index: Tensor) -> GPT2Cache:
        """Rows ``index`` of the batch (beam search)."""
        keep = None if self.keep is None else self.keep.index_select(0, index)
        return GPT2Cache(tuple(c.reorder(index) for c in self.layers), keep)


@dataclass(frozen=True)
class GPT2Output:
    """What :class:`GPT2LMHead` returns.

    Attributes:
        logits: ``(B, L, V)``, the next-token logits of every position.
        hidden: ``(B, L, E)``, the final hidden states (after the last LayerNorm).
        weights: (``return_weights``) per layer, the self-attention weights ``(B, H, L, S)``.
        hidden_states: (``return_hidden``) ``N + 1`` tensors ``(B, L, E)``: the input of each layer, then
            ``hidden`` (Hugging Face's ``hidden_states``).
        state: the updated :class:`GPT2Cache` when a cache was given.
    """

    logits: Tensor
    hidden: Tensor
    weights: list[Tensor] | None = None
    hidden_states: list[Tensor] | None = None
    state: GPT2Cache | None = None


def _check_tokens(name: str, tokens: object, vocab_size: int) -> Tensor:
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point \
            or tokens.dtype == torch.bool or tokens.shape[1] < 1:
        got = (tokens.dtype, tuple(tokens.shape)) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"{name} must be an integer tensor (B, L) with L >= 1, got {got}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(f"{name} must lie in 0..{vocab_size - 1}, got values {int(tokens.min())}..{int(tokens.max())}")
    return tokens


def _check_keep(attention_mask: object, B: int, S: int) -> Tensor | None:
    """``attention_mask (B, S)`` (bool, or 0/1 as in ``transformers``) as a bool ``keep``, True = a real token."""
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, Tensor) or tuple(attention_mask.shape) != (B, S):
        got = tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must be (B, S) = ({B}, {S}) (every key: cached and new), got {got}")
    return attention_mask if attention_mask.dtype == torch.bool else attention_mask != 0


def _layer_score(config: GPT2Config, layer: int) -> object:
    if not config.scale_by_inverse_layer:
        return "scaled_dot" if config.scale_attention else "dot"
    scale = (config.dim // config.num_heads) ** -0.5 if config.scale_attention else 1.0
    return Dot(scale=scale / (layer + 1))


class GPT2(nn.Module):
    """GPT-2's embeddings and pre-LN Transformer stack: token ids to the final hidden states.

    Args:
        config: a :class:`GPT2Config` (default GPT-2 small).
    """

    def __init__(self, config: GPT2Config | None = None) -> None:
        super().__init__()
        config = GPT2Config() if config is None else config
        if not isinstance(config, GPT2Config):
            raise TypeError(f"config must be a GPT2Config, got {type(config).__name__}")
        self.config = c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.dim)  # W_e (wte)
        self.positions = LearnedPositions(c.max_positions, c.dim, init_std=c.init_std)  # W_p (wpe)
        self.embedding_dropout = nn.Dropout(c.embedding_dropout)
        layers = []
        for n in range(c.num_layers):
            layer = TransformerEncoderLayer(
                c.dim, c.num_heads, ff_dim=c.ff_dim, dropout=c.dropout, attention_dropout=c.attention_dropout,
                activation=c.activation, norm_first=True, norm_eps=c.norm_eps, score=_layer_score(c, n),
            )
            layer.ff.dropout = nn.Dropout(0.0)  # GPT-2 drops the MLP's output only, not its hidden layer
            layers.append(layer)
        self.body = TransformerEncoder(layers, norm=True)  # pre-LN blocks and the final LayerNorm (ln_f)
        self.reset_parameters()

    @property
    def layers(self) -> nn.ModuleList:
        return self.body.layers

    def reset_parameters(self) -> None:
        """GPT-2's initialisation: ``N(0, 0.02²)`` weights, residual projections ``N(0, (0.02 / sqrt(2N))²)``."""
        std = self.config.init_std
        residual_std = std / math.sqrt(2 * self.config.num_layers)  # Radford et al. 2019, §2.3
        nn.init.normal_(self.token_embedding.weight, std=std)
        self.positions.reset_parameters()
        for layer in self.layers:
            attn, ff = layer.self_attn, layer.ff
            for lin, s in ((attn.q_proj, std), (attn.k_proj, std), (attn.v_proj, std), (ff.linear1, std),
                           (attn.out_proj, residual_std), (ff.linear2, residual_std)):
                nn.init.normal_(lin.weight, std=s)
                nn.init.zeros_(lin.bias)
            layer.norm1.reset_parameters()
            layer.norm2.reset_parameters()
        self.body.norm.reset_parameters()

    def empty_cache(self, *, attention_mask: Tensor | None = None) -> GPT2Cache:
        """A cache for incremental decoding; ``attention_mask (B, T0)`` declares the coming prompt's padding."""
        keep = None
        if attention_mask is not None:
            if not isinstance(attention_mask, Tensor) or attention_mask.dim() != 2:
                m = attention_mask
                got = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
                raise ValueError(f"attention_mask must be (B, T0), got {got}")
            keep = _check_keep(attention_mask, *attention_mask.shape)
        return GPT2Cache(self.body.empty_cache(), keep)

    def forward(
        self,
        tokens: Tensor,
        *,
        attention_mask: Tensor | None = None,
        positions: Tensor | None = None,
        token_types: Tensor | None = None,
        return_weights: bool = False,
        return_hidden: bool = False,
        cache: GPT2Cache | None = None,
    ) -> TransformerOutput:
        """``tokens (B, L) -> output (B, L, E)``, the final hidden states.

        Args:
            tokens: token ids ``(B, L)``; with a cache, only the positions not seen yet.
            attention_mask: ``(B, S)``, True (or 1) = a real token, 0 = padding, over every key (the cached
                positions and the ``L`` new ones, as ``transformers``). Without it a cache's own mask is
                extended with the new tokens. When a mask is known and ``positions`` is not given, a token's
                position is the number of real tokens before it (left padding is skipped), as in
                ``transformers``' ``generate``; without one positions are ``offset..offset+L-1``.
            positions: ``(B|1, L)`` explicit position ids (``position_ids``).
            token_types: ``(B, L)`` ids whose token embeddings are added too (``token_type_ids``).
            return_weights: ``weights``: per layer ``(B, H, L, S)``.
            return_hidden: ``hidden_states``: ``N + 1`` tensors ``(B, L, E)``.
            cache: a :class:`GPT2Cache` (:meth:`empty_cache`); the updated one comes back in ``.state``.
        """
        V = self.config.vocab_size
        tokens = _check_tokens("tokens", tokens, V)
        if cache is not None and not isinstance(cache, GPT2Cache):
            raise TypeError(f"cache must be a GPT2Cache (see empty_cache()) or None, got {type(cache).__name__}")
        B, L = tokens.shape
        past = 0 if cache is None else cache.position
        keep = _check_keep(attention_mask, B, past + L)
        if keep is None and cache is not None and cache.keep is not None:
            seen = cache.keep.shape[1]
            if cache.keep.shape[0] != B or seen not in (past, past + L):
                raise ValueError(f"cache: its mask {tuple(cache.keep.shape)} fits neither the {past} cached positions "
                                 f"nor those plus the {L} new ones (batch {B})")
            keep = cache.keep if seen == past + L else torch.cat((cache.keep, cache.keep.new_ones(B, L)), dim=1)
        if positions is None and keep is not None:
            positions = (keep.long().cumsum(-1) - 1).masked_fill(~keep, 0)[:, -L:]  # (B, L)
        x = self.token_embedding(tokens)  # (B, L, E)
        if token_types is not None:
            x = x + self.token_embedding(_check_tokens("token_types", token_types, V))
        x = self.positions(x, offset=past) if positions is None else self.positions(x, positions=positions)
        if self.training and self.embedding_dropout.p > 0:
            x = self.embedding_dropout(x)
        # one query at the end of its keys may see all of them: causal() forbids nothing then (a decoding step)
        mask = None if L == 1 else causal()
        if keep is not None:
            mask = key_padding(keep) if mask is None else mask & key_padding(keep)
        out = self.body(x, mask=mask, return_weights=return_weights, return_hidden=return_hidden,
                        cache=None if cache is None else cache.layers)
        return dataclasses.replace(out, state=None if cache is None else GPT2Cache(out.state, keep))

    @torch.no_grad()
    def load_hf(self, model: nn.Module) -> GPT2:
        """Copy the weights of a ``transformers`` ``GPT2Model`` (or its ``.transformer``) of the same shape."""
        check_hf_model(model, ("GPT2Model",))
        self.token_embedding.weight.copy_(model.wte.weight)
        self.positions.weight.copy_(model.wpe.weight)
        E = self.config.dim
        for ours, block in zip(self.layers, model.h, strict=True):
            attn, ff = ours.self_attn, ours.ff
            w = conv1d_weight(block.attn.c_attn)  # (3E, E): the query, key and value maps stacked
            b = block.attn.c_attn.bias  # (3E,)
            for i, proj in enumerate((attn.q_proj, attn.k_proj, attn.v_proj)):
                copy_linear(proj, w[i * E : (i + 1) * E], b[i * E : (i + 1) * E])
            copy_linear(attn.out_proj, conv1d_weight(block.attn.c_proj), block.attn.c_proj.bias)
            copy_linear(ff.linear1, conv1d_weight(block.mlp.c_fc), block.mlp.c_fc.bias)
            copy_linear(ff.linear2, conv1d_weight(block.mlp.c_proj), block.mlp.c_proj.bias)
            copy_layer_norm(ours.norm1, block.ln_1)
            copy_layer_norm(ours.norm2, block.ln_2)
        copy_layer_norm(self.body.norm, model.ln_f)
        return self

    @classmethod
    def from_hf(cls, model: nn.Module) -> GPT2:
        """The equivalent of a ``transformers`` ``GPT2Model`` (or the body of a ``GPT2LMHeadModel``), weights copied."""
        name = check_hf_model(model, ("GPT2Model", "GPT2LMHeadModel"))
        base = model.transformer if name == "GPT2LMHeadModel" else model
        ref = base.wte.weight
        new = cls(GPT2Config.from_hf(model.config)).to(device=ref.device, dtype=ref.dtype)
        return new.load_hf(base).train(model.training)

    def extra_repr(self) -> str:
        c = self.config
        return f"vocab_size={c.vocab_size}, dim={c.dim}, num_layers={c.num_layers}, num_heads={c.num_heads}"


class GPT2LMHead(nn.Module):
    """GPT-2 with its language-model head: ``logits = hidden W_e^T`` (tied to the token embedding).

    Args:
        config: a :class:`GPT2Config`; ``tie_embeddings=False`` gives the head its own ``(V, E)`` weight.
    """

    def __init__(self, config: GPT2Config | None = None) -> None:
        super().__init__()
        self.transformer = GPT2(config)
        c = self.config
        self.lm_head = None if c.tie_embeddings else nn.Linear(c.dim, c.vocab_size, bias=False)
        if self.lm_head is not None:
            nn.init.normal_(self.lm_head.weight, std=c.init_std)

    @property
    def config(self) -> GPT2Config:
        return self.transformer.config

    @property
    def head_weight(self) -> Tensor:
        """The output layer ``(V, E)``: the token embedding when tied."""
        return self.transformer.token_embedding.weight if self.lm_head is None else self.lm_head.weight

    def empty_cache(self, *, attention_mask: Tensor | None = None) -> GPT2Cache:
        """See :meth:`GPT2.empty_cache`."""
        return self.transformer.empty_cache(attention_mask=attention_mask)

    def forward(
        self,
        tokens: Tensor,
        *,
        attention_mask: Tensor | None = None,
        positions: Tensor | None = None,
        token_types: Tensor | None = None,
        return_weights: bool = False,
        return_hidden: bool = False,
        cache: GPT2Cache | None = None,
    ) -> GPT2Output:
        """``tokens (B, L) -> logits (B, L, V)``; the arguments are :meth:`GPT2.forward`'s."""
        out = self.transformer(
            tokens, attention_mask=attention_mask, positions=positions, token_types=token_types,
            return_weights=return_weights, return_hidden=return_hidden, cache=cache,
        )
        logits = F.linear(out.output, self.head_weight)  # (B, L, V)
        return GPT2Output(logits=logits, hidden=out.output, weights=out.weights, hidden_states=out.hidden_states,
                          state=out.state)

    def step(self, tokens: Tensor, cache: GPT2Cache | None) -> tuple[Tensor, GPT2Cache]:
        """:mod:`qkv.models.decoding`'s ``step(tokens (B, T), cache) -> (logits (B, T, V), cache)``."""
        out = self(tokens, cache=self.empty_cache() if cache is None else cache)
        return out.logits, out.state

    def generate(
        self,
        prompt: Tensor,
        *,
        max_new_tokens: int,
        attention_mask: Tensor | None = None,
        strategy: str = "greedy",
        eos_id: int | None = None,
        pad_id: int | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        beam_width: int = 4,
        alpha: float = 0.0,
    ) -> GenerationOutput | BeamSearchOutput:
        """Generate with the key/value cache, without gradients (call ``.eval()`` first to turn dropout off).

        Args:
            prompt: ``(B, T0)`` token ids (left-padded when rows differ in length).
            max_new_tokens: at most this many new tokens.
            attention_mask: ``(B, T0)``, 1 = a real prompt token, 0 = padding.
            strategy: ``"greedy"`` (:func:`~qkv.models.decoding.greedy`), ``"sample"`` (``temperature``,
                ``top_k``, ``top_p``, ``generator``) or ``"beam"`` (``beam_width``, ``alpha``).
            eos_id, pad_id: as in :mod:`qkv.models.decoding`.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        cache = self.empty_cache(attention_mask=attention_mask)
        common = {"max_new_tokens": max_new_tokens, "eos_id": eos_id, "pad_id": pad_id, "cache": cache}
        with torch.no_grad():
            if strategy == "greedy":
                return greedy(self.step, prompt, **common)
            if strategy == "sample":
                return sample(self.step, prompt, temperature=temperature, top_k=top_k, top_p=top_p,
                              generator=generator, **common)
            return beam_search(self.step, prompt, beam_width=beam_width, alpha=alpha, **common)

    @classmethod
    def from_hf(cls, model: nn.Module) -> GPT2LMHead:
        """The equivalent of a ``transformers`` ``GPT2LMHeadModel`` (or a ``GPT2Model`` with a tied head)."""
        name = check_hf_model(model, ("GPT2Model", "GPT2LMHeadModel"))
        base = model.transformer if name == "GPT2LMHeadModel" else model
        ref = base.wte.weight
        config = GPT2Config.from_hf(model.config)
        tied = name == "GPT2Model" or model.lm_head.weight.data_ptr() == base.wte.weight.data_ptr()
        config = dataclasses.replace(config, tie_embeddings=tied)
        new = cls(config).to(device=ref.device, dtype=ref.dtype)
        new.transformer.load_hf(base)
        if new.lm_head is not None:
            with torch.no_grad():
                new.lm_head.weight.copy_(model.lm_head.weight)
        return new.train(model.training)
