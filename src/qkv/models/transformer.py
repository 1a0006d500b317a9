"""The Transformer (Vaswani et al. 2017, §3.1): encoder and decoder layers, their stacks, and the whole model.

Shape legend: ``B`` batch, ``L`` target (query) positions, ``S`` source/memory positions (keys),
``E`` model width, ``H`` heads, ``F`` feed-forward width, ``N`` layers.

An **encoder layer** is self-attention then a position-wise feed-forward network, each wrapped in
a residual connection and layer normalisation (§3.1). A **decoder layer** adds cross-attention
over the encoder's output (the *memory*) between the two; its self-attention is masked (pass
``mask=qkv.masks.causal()``). ``norm_first`` chooses where the normalisation sits:

* post-LN (the paper, ``norm_first=False``): :math:`x \\leftarrow \\mathrm{LN}(x + \\mathrm{Sublayer}(x))`;
* pre-LN (GPT-2, Xiong et al. 2020, ``norm_first=True``): :math:`x \\leftarrow x + \\mathrm{Sublayer}(\\mathrm{LN}(x))`,
  with a final LayerNorm after the stack.

Every attention is a :class:`qkv.MultiHeadAttention`, so any score, grouped-query heads
(``num_kv_heads``), RoPE (``rotary``), position biases and qkv's masks (True = may attend, lazy
masks welcome) work in every layer, and every layer can return its per-head weights:
``return_weights=True`` gives a :class:`TransformerOutput` whose ``weights[n]`` is layer ``n``'s
self-attention ``(B, H, L, S)`` (and ``cross_weights[n]`` the decoder's cross-attention
``(B, H, L, S_mem)``). A decoder-only language model (GPT) is a :class:`TransformerEncoder`
called with a causal mask.

**Incremental decoding.** ``cache=stack.empty_cache()`` (a tuple with one
:class:`~qkv.layers.cache.KVCache` per layer, or a :class:`DecoderLayerCache` for decoder layers)
makes a call process only the new positions; the updated cache comes back in ``.state``.

``from_torch`` builds the equivalent of ``torch.nn.TransformerEncoderLayer``,
``TransformerDecoderLayer``, ``TransformerEncoder``, ``TransformerDecoder`` and
``torch.nn.Transformer`` with their weights copied. qkv's modules are batch first whatever the
torch module's ``batch_first``; torch's inverted masks convert with
:func:`qkv.layers.torch_compat.from_torch_masks`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.functional.biases import Bias, BiasLike
from qkv.functional.checks import check_dropout, check_flag, check_positive_int
from qkv.functional.masks import MaskLike
from qkv.kernels.ring import SequenceParallel
from qkv.layers.cache import CrossAttentionCache, KVCache
from qkv.layers.common import ScoreArg, check_input
from qkv.layers.multihead import MultiHeadAttention
from qkv.models.feedforward import FeedForward
from qkv.models.hf_compat import copy_linear
from qkv.positional.rotary import Rotary

__all__ = [
    "DecoderLayerCache",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "TransformerOutput",
]


@dataclass(frozen=True)
class TransformerOutput:
    """What a Transformer layer, stack or model returns.

    Attributes:
        output: ``(B, L, E)``.
        weights: per layer, the self-attention weights ``(B, H, L, S)`` (when ``return_weights``); a
            single layer returns a list of one.
        cross_weights: per decoder layer, the cross-attention weights ``(B, H, L, S_mem)``.
        hidden_states: (stacks, ``return_hidden``) the input of each layer and, last, the stack's output
            (after the final norm): ``N + 1`` tensors ``(B, L, E)``, as Hugging Face counts them.
        state: the updated cache when ``cache`` was given.
        encoder: (:class:`Transformer`) the encoder's own output.
    """

    output: Tensor
    weights: list[Tensor] | None = None
    cross_weights: list[Tensor] | None = None
    hidden_states: list[Tensor] | None = None
    state: object | None = None
    encoder: TransformerOutput | None = None


@dataclass(frozen=True)
class DecoderLayerCache:
    """A decoder layer's cache: its self-attention keys and values and the memory's projected keys and values."""

    self_attn: KVCache = dataclasses.field(default_factory=KVCache)
    cross_attn: CrossAttentionCache = dataclasses.field(default_factory=CrossAttentionCache)

    @property
    def position(self) -> int:
        return self.self_attn.position

    def reorder(self, index: Tensor) -> DecoderLayerCache:
        return DecoderLayerCache(self.self_attn.reorder(index), self.cross_attn.reorder(index))


def _layer_norm(dim: int, eps: float, bias: bool, factory: dict) -> nn.LayerNorm:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"norm_eps must be a number > 0, got {eps!r}")
    return nn.LayerNorm(dim, eps=float(eps), bias=bias, **factory)


def _torch_activation(module: nn.Module) -> str:
    """The name of a torch Transformer layer's activation (``relu``/``gelu``; GELU modules with tanh too)."""
    act = module.activation
    if isinstance(act, nn.GELU):
        return "gelu_tanh" if act.approximate == "tanh" else "gelu"
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu:
        return "gelu"
    raise ValueError(f"from_torch: activation {act!r} is not supported (relu or gelu)")


class _Block(nn.Module):
    """What encoder and decoder layers share: options, the self-attention, the feed-forward network."""

    def __init__(self, dim, num_heads, *, ff_dim, dropout, attention_dropout, activation, norm_first, norm_eps,
                 num_kv_heads, score, bias, rotary, position_bias, window, device, dtype,
                 sequence_parallel=None) -> None:
        super().__init__()
        E = check_positive_int("dim", dim)
        self.dim = E
        self.norm_first = check_flag("norm_first", norm_first)
        check_flag("bias", bias)
        p = check_dropout(dropout)
        pa = p if attention_dropout is None else check_dropout(attention_dropout, name="attention_dropout")
        ff = 4 * E if ff_dim is None else check_positive_int("ff_dim", ff_dim)
        factory = {"device": device, "dtype": dtype}
        self.self_attn = MultiHeadAttention(
            E, num_heads, num_kv_heads=num_kv_heads, dropout=pa, proj_bias=bias, score=score, rotary=rotary,
            position_bias=position_bias, window=window, sequence_parallel=sequence_parallel, **factory,
        )
        self.ff = FeedForward(E, ff, activation=activation, dropout=p, bias=bias, **factory)
        self.norm1 = _layer_norm(E, norm_eps, bias, factory)
        self.dropout1 = nn.Dropout(p)

    @property
    def num_heads(self) -> int:
        return self.self_attn.num_heads

    def reset_parameters(self) -> None:
        for m in self.children():  # each child re-initialises its own parameters its own way
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def _drop(self, dropout: nn.Dropout, x: Tensor) -> Tensor:
        return dropout(x) if self.training and dropout.p > 0 else x  # no module call per token when decoding

    def _self_attention(self, x, mask, bias, return_weights, cache):
        y = self.norm1(x) if self.norm_first else x
        a = self.self_attn(y, mask=mask, bias=bias, return_weights=return_weights, cache=cache)
        x = x + self._drop(self.dropout1, a.output)
        return (x if self.norm_first else self.norm1(x)), a

    def _feed_forward(self, x, norm: nn.LayerNorm, dropout: nn.Dropout) -> Tensor:
        if self.norm_first:
            return x + self._drop(dropout, self.ff(norm(x)))
        return norm(x + self._drop(dropout, self.ff(x)))

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}"


_LAYER_ARGS = """
    Args:
        dim: model width ``E``.
        num_heads: ``H``; divides ``E``.
        ff_dim: the feed-forward width ``F`` (default ``4 E``; torch's default is 2048).
        dropout: after each sub-layer (before the residual sum) and inside the feed-forward network.
        attention_dropout: on the attention weights (default ``dropout``, as in torch).
        activation: ``"relu"``, ``"gelu"``, ``"gelu_tanh"`` or ``"swiglu"``
            (:class:`~qkv.models.feedforward.FeedForward`).
        norm_first: pre-LN (True) or the paper's post-LN (False).
        norm_eps: LayerNorm's epsilon.
        num_kv_heads: grouped-query attention (default ``H``).
        score: the attention score, any name or module :func:`qkv.attend` takes (default scaled dot).
        bias: biases in the linear maps and LayerNorms.
        rotary: RoPE for the self-attention (:class:`qkv.positional.Rotary`).
        position_bias: a position bias for the self-attention (a lazy Bias, or a module returning one).
        window: truncated (windowed) self-attention, query ``i`` seeing keys ``|j - i| <= window``
            (:class:`qkv.MultiHeadAttention`'s ``window``; cached decoding needs ``empty_cache(window=window + 1)``
            or more). ``None`` (default): no window.
        sequence_parallel: ring attention over sequence shards (:class:`qkv.MultiHeadAttention`'s option):
            ``True`` (the enclosing ``qkv.kernels.ring.sequence_parallel()`` block) or a ``SequenceParallel``.
"""


class TransformerEncoderLayer(_Block):
    __doc__ = """Self-attention and a feed-forward network, each with a residual connection and LayerNorm (§3.1).
""" + _LAYER_ARGS

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        activation: str = "relu",
        norm_first: bool = False,
        norm_eps: float = 1e-5,
        num_kv_heads: int | None = None,
        score: ScoreArg = "scaled_dot",
        bias: bool = True,
        rotary: Rotary | None = None,
        position_bias: Bias | nn.Module | None = None,
        window: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        sequence_parallel: bool | SequenceParallel | None = None,
    ) -> None:
        super().__init__(
            dim, num_heads, ff_dim=ff_dim, dropout=dropout, attention_dropout=attention_dropout,
            activation=activation, norm_first=norm_first, norm_eps=norm_eps, num_kv_heads=num_kv_heads,
            score=score, bias=bias, rotary=rotary, position_bias=position_bias, window=window, device=device,
            dtype=dtype, sequence_parallel=sequence_parallel,
        )
        self.norm2 = _layer_norm(self.dim, norm_eps, bias, {"device": device, "dtype": dtype})
        self.dropout2 = nn.Dropout(self.dropout1.p)

    def forward(
        self,
        x: Tensor,
        *,
        mask: MaskLike | None = None,
        bias: BiasLike | None = None,
        return_weights: bool = False,
        cache: KVCache | None = None,
    ) -> TransformerOutput:
        """``x (B, L, E) -> (B, L, E)``.

        Args:
            mask: the self-attention mask, True = may attend, broadcast to ``(B, H, L, S)``:
                ``qkv.masks.key_padding(keep)``, ``qkv.masks.causal()`` (decoder-only models), ...
            bias: an additive bias for the self-attention (e.g. a shared T5 bias).
            return_weights: ``weights = [(B, H, L, S)]``.
            cache: a :class:`~qkv.layers.cache.KVCache`: ``x`` holds only the new positions.
        """
        check_input("x", x, dims=(3,), width=self.dim)
        x, a = self._self_attention(x, mask, bias, return_weights, cache)
        x = self._feed_forward(x, self.norm2, self.dropout2)
        return TransformerOutput(output=x, weights=[a.weights] if return_weights else None,
                                 state=a.state if cache is not None else None)

    @classmethod
    def from_torch(cls, module: nn.TransformerEncoderLayer) -> TransformerEncoderLayer:
        """An exact, batch-first equivalent of ``torch.nn.TransformerEncoderLayer`` (weights copied)."""
        if not isinstance(module, nn.TransformerEncoderLayer):
            raise TypeError(f"module must be a torch.nn.TransformerEncoderLayer, got {type(module).__name__}")
        ref = module.linear1.weight
        new = cls(
            module.linear1.in_features, module.self_attn.num_heads, ff_dim=module.linear1.out_features,
            dropout=module.dropout.p, attention_dropout=module.self_attn.dropout,
            activation=_torch_activation(module), norm_first=module.norm_first, norm_eps=module.norm1.eps,
            bias=module.linear1.bias is not None, device=ref.device, dtype=ref.dtype,
        )
        with torch.no_grad():
            new.self_attn = MultiHeadAttention.from_torch(module.self_attn)
            copy_linear(new.ff.linear1, module.linear1.weight, module.linear1.bias)
            copy_linear(new.ff.linear2, module.linear2.weight, module.linear2.bias)
            new.norm1.load_state_dict(module.norm1.state_dict())
            new.norm2.load_state_dict(module.norm2.state_dict())
        return new.train(module.training)


class TransformerDecoderLayer(_Block):
    __doc__ = """Masked self-attention, cross-attention over the memory, and a feed-forward network (§3.1).
""" + _LAYER_ARGS + """        memory_dim: the memory's width (default ``E``).
"""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        activation: str = "relu",
        norm_first: bool = False,
        norm_eps: float = 1e-5,
        num_kv_heads: int | None = None,
        score: ScoreArg = "scaled_dot",
        bias: bool = True,
        rotary: Rotary | None = None,
        position_bias: Bias | nn.Module | None = None,
        window: int | None = None,
        memory_dim: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        sequence_parallel: bool | SequenceParallel | None = None,
    ) -> None:
        super().__init__(
            dim, num_heads, ff_dim=ff_dim, dropout=dropout, attention_dropout=attention_dropout,
            activation=activation, norm_first=norm_first, norm_eps=norm_eps, num_kv_heads=num_kv_heads,
            score=score, bias=bias, rotary=rotary, position_bias=position_bias, window=window, device=device,
            dtype=dtype, sequence_parallel=sequence_parallel,
        )
        factory = {"device": device, "dtype": dtype}
        self.memory_dim = self.dim if memory_dim is None else check_positive_int("memory_dim", memory_dim)
        self.cross_attn = MultiHeadAttention(
            self.dim, num_heads, key_dim=self.memory_dim, value_dim=self.memory_dim, num_kv_heads=num_kv_heads,
            dropout=self.self_attn.dropout, proj_bias=bias, score=score, sequence_parallel=sequence_parallel,
            **factory,
        )
        self.norm2 = _layer_norm(self.dim, norm_eps, bias, factory)
        self.norm3 = _layer_norm(self.dim, norm_eps, bias, factory)
        self.dropout2 = nn.Dropout(self.dropout1.p)
        self.dropout3 = nn.Dropout(self.dropout1.p)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask: MaskLike | None = None,
        bias: BiasLike | None = None,
        memory_mask: MaskLike | None = None,
        memory_bias: BiasLike | None = None,
        return_weights: bool = False,
        cache: DecoderLayerCache | None = None,
    ) -> TransformerOutput:
        """``x (B, L, E)``, ``memory (B, S, memory_dim) -> (B, L, E)``.

        Args:
            mask: the self-attention mask (``qkv.masks.causal()`` for a decoder, and target padding).
            memory_mask: the cross-attention mask ``(B, H, L, S)``-broadcastable (source padding:
                ``qkv.masks.key_padding(src_keep)``).
            cache: a :class:`DecoderLayerCache`: ``x`` holds only the new positions; ``memory`` is projected
                on the first call and may be omitted afterwards.
        """
        check_input("x", x, dims=(3,), width=self.dim)
        if cache is not None and not isinstance(cache, DecoderLayerCache):
            raise TypeError(f"cache must be a DecoderLayerCache or None, got {type(cache).__name__}")
        if memory is None and (cache is None or cache.cross_attn.key is None):
            raise ValueError("memory (B, S, memory_dim) is required (it may be omitted only once a cache holds it)")
        x, a = self._self_attention(x, mask, bias, return_weights, None if cache is None else cache.self_attn)
        y = self.norm2(x) if self.norm_first else x
        c = self.cross_attn(y, memory, mask=memory_mask, bias=memory_bias, return_weights=return_weights,
                            cache=None if cache is None else cache.cross_attn)
        x = x + self._drop(self.dropout2, c.output)
        if not self.norm_first:
            x = self.norm2(x)
        x = self._feed_forward(x, self.norm3, self.dropout3)
        state = None if cache is None else DecoderLayerCache(a.state, c.state)
        return TransformerOutput(output=x, weights=[a.weights] if return_weights else None,
                                 cross_weights=[c.weights] if return_weights else None, state=state)

    @classmethod
    def from_torch(cls, module: nn.TransformerDecoderLayer) -> TransformerDecoderLayer:
        """An exact, batch-first equivalent of ``torch.nn.TransformerDecoderLayer`` (weights copied)."""
        if not isinstance(module, nn.TransformerDecoderLayer):
            raise TypeError(f"module must be a torch.nn.TransformerDecoderLayer, got {type(module).__name__}")
        ref = module.linear1.weight
        new = cls(
            module.linear1.in_features, module.self_attn.num_heads, ff_dim=module.linear1.out_features,
            dropout=module.dropout.p, attention_dropout=module.self_attn.dropout,
            activation=_torch_activation(module), norm_first=module.norm_first, norm_eps=module.norm1.eps,
            bias=module.linear1.bias is not None, memory_dim=module.multihead_attn.kdim,
            device=ref.device, dtype=ref.dtype,
        )
        with torch.no_grad():
            new.self_attn = MultiHeadAttention.from_torch(module.self_attn)
            new.cross_attn = MultiHeadAttention.from_torch(module.multihead_attn)
            copy_linear(new.ff.linear1, module.linear1.weight, module.linear1.bias)
            copy_linear(new.ff.linear2, module.linear2.weight, module.linear2.bias)
            for name in ("norm1", "norm2", "norm3"):
                getattr(new, name).load_state_dict(getattr(module, name).state_dict())
        return new.train(module.training)


def _clone_layers(layer, num_layers, layer_type) -> list:
    if isinstance(layer, layer_type):
        n = check_positive_int("num_layers", num_layers)
        layers = [layer]
        for _ in range(n - 1):
            clone = copy.deepcopy(layer)
            clone.reset_parameters()  # independent initial weights (torch's deep copies are identical)
            layers.append(clone)
        return layers
    if num_layers is not None:
        raise ValueError(f"num_layers is for cloning one layer; got a sequence of layers and num_layers={num_layers}")
    layers = list(layer) if isinstance(layer, Sequence | nn.ModuleList) else None
    if not layers or not all(isinstance(m, layer_type) for m in layers):
        raise TypeError(f"layers must be a {layer_type.__name__} (with num_layers) or a non-empty sequence of them, "
                        f"got {type(layer).__name__}")
    return layers


def _final_norm(norm, layers) -> nn.Module | None:
    if norm is None:
        norm = layers[0].norm_first
    if norm is True:
        ref = layers[0].norm1
        return nn.LayerNorm(ref.normalized_shape, eps=ref.eps, bias=ref.bias is not None,
                            device=ref.weight.device, dtype=ref.weight.dtype)
    if norm is False:
        return None
    if not isinstance(norm, nn.Module):
        raise TypeError(f"norm must be an nn.Module, True, False or None, got {type(norm).__name__}")
    return norm


def _check_cache(cache, n: int, kind: type) -> tuple:
    if not isinstance(cache, (tuple, list)) or len(cache) != n or not all(isinstance(c, kind) for c in cache):
        raise TypeError(f"cache must be a tuple of {n} {kind.__name__}s (see empty_cache()), got {cache!r:.80}")
    return tuple(cache)


_STACK_ARGS = """
    Args:
        layers: one layer, cloned ``num_layers`` times (each clone re-initialised), or a sequence of layers.
        num_layers: ``N``, when ``layers`` is one layer.
        norm: the final normalisation: a module, ``True`` (a LayerNorm like the layers'), ``False`` (none), or
            ``None`` (default: a LayerNorm when the layers are pre-LN, as pre-LN stacks need).
"""


class TransformerEncoder(nn.Module):
    __doc__ = """A stack of :class:`TransformerEncoderLayer` (§3.1), with an optional final norm.
""" + _STACK_ARGS

    def __init__(
        self,
        layers: TransformerEncoderLayer | Sequence[TransformerEncoderLayer],
        num_layers: int | None = None,
        *,
        norm: nn.Module | bool | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_clone_layers(layers, num_layers, TransformerEncoderLayer))
        self.norm = _final_norm(norm, self.layers)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def empty_cache(self, *, window: int | None = None) -> tuple[KVCache, ...]:
        """A cache for incremental decoding: one :class:`~qkv.layers.cache.KVCache` per layer (``window``: sliding)."""
        return tuple(KVCache(window=window) for _ in self.layers)

    def forward(
        self,
        x: Tensor,
        *,
        mask: MaskLike | None = None,
        bias: BiasLike | None = None,
        return_weights: bool = False,
        return_hidden: bool = False,
        cache: Sequence[KVCache] | None = None,
    ) -> TransformerOutput:
        """``x (B, L, E) -> (B, L, E)``; ``mask`` and ``bias`` go to every layer's self-attention."""
        caches = (None,) * len(self.layers) if cache is None else _check_cache(cache, len(self.layers), KVCache)
        weights, hidden, states = [], [], []
        for layer, c in zip(self.layers, caches, strict=True):
            hidden.append(x)
            out = layer(x, mask=mask, bias=bias, return_weights=return_weights, cache=c)
            x = out.output
            states.append(out.state)
            if return_weights:
                weights.extend(out.weights)
        if self.norm is not None:
            x = self.norm(x)
        hidden.append(x)
        return TransformerOutput(
            output=x, weights=weights if return_weights else None, hidden_states=hidden if return_hidden else None,
            state=tuple(states) if cache is not None else None,
        )

    @classmethod
    def from_torch(cls, module: nn.TransformerEncoder) -> TransformerEncoder:
        """An exact, batch-first equivalent of ``torch.nn.TransformerEncoder`` (weights copied)."""
        if not isinstance(module, nn.TransformerEncoder):
            raise TypeError(f"module must be a torch.nn.TransformerEncoder, got {type(module).__name__}")
        layers = [TransformerEncoderLayer.from_torch(m) for m in module.layers]
        return cls(layers, norm=False if module.norm is None else copy.deepcopy(module.norm))


class TransformerDecoder(nn.Module):
    __doc__ = """A stack of :class:`TransformerDecoderLayer` (§3.1), with an optional final norm.
""" + _STACK_ARGS

    def __init__(
        self,
        layers: TransformerDecoderLayer | Sequence[TransformerDecoderLayer],
        num_layers: int | None = None,
        *,
        norm: nn.Module | bool | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_clone_layers(layers, num_layers, TransformerDecoderLayer))
        self.norm = _final_norm(norm, self.layers)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def empty_cache(self, *, window: int | None = None) -> tuple[DecoderLayerCache, ...]:
        """A cache for incremental decoding: one :class:`DecoderLayerCache` per layer (``window``: sliding)."""
        return tuple(DecoderLayerCache(KVCache(window=window)) for _ in self.layers)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask: MaskLike | None = None,
        bias: BiasLike | None = None,
        memory_mask: MaskLike | None = None,
        memory_bias: BiasLike | None = None,
        return_weights: bool = False,
        return_hidden: bool = False,
        cache: Sequence[DecoderLayerCache] | None = None,
    ) -> TransformerOutput:
        """``x (B, L, E)``, ``memory (B, S, E) -> (B, L, E)``; masks and biases go to every layer."""
        caches = (None,) * len(self.layers) if cache is None else _check_cache(cache, len(self.layers),
                                                                                 DecoderLayerCache)
        weights, cross, hidden, states = [], [], [], []
        for layer, c in zip(self.layers, caches, strict=True):
            hidden.append(x)
            out = layer(x, memory, mask=mask, bias=bias, memory_mask=memory_mask, memory_bias=memory_bias,
                        return_weights=return_weights, cache=c)
            x = out.output
            states.append(out.state)
            if return_weights:
                weights.extend(out.weights)
                cross.extend(out.cross_weights)
        if self.norm is not None:
            x = self.norm(x)
        hidden.append(x)
        return TransformerOutput(
            output=x, weights=weights if return_weights else None, cross_weights=cross if return_weights else None,
            hidden_states=hidden if return_hidden else None, state=tuple(states) if cache is not None else None,
        )

    @classmethod
    def from_torch(cls, module: nn.TransformerDecoder) -> TransformerDecoder:
        """An exact, batch-first equivalent of ``torch.nn.TransformerDecoder`` (weights copied)."""
        if not isinstance(module, nn.TransformerDecoder):
            raise TypeError(f"module must be a torch.nn.TransformerDecoder, got {type(module).__name__}")
        layers = [TransformerDecoderLayer.from_torch(m) for m in module.layers]
        return cls(layers, norm=False if module.norm is None else copy.deepcopy(module.norm))


class Transformer(nn.Module):
    """The encoder-decoder Transformer (Vaswani et al. 2017, Fig. 1) without embeddings or output projection.

    The same layout as ``torch.nn.Transformer`` (a final LayerNorm after each stack, whatever
    ``norm_first``); the layer options are :class:`TransformerEncoderLayer`'s. Embeddings, positions
    and the output projection belong to the model around it.

    Args:
        dim: ``E`` (512 in the paper).
        num_heads: ``H`` (8).
        num_encoder_layers, num_decoder_layers: ``N`` (6 each).
        ff_dim: ``F`` (2048; default ``4 E``).
        rotary, position_bias, window: for the self-attention of every encoder and decoder layer (a module
            ``position_bias`` is copied, so the encoder and the decoder learn their own).
    """

    def __init__(
        self,
        dim: int = 512,
        num_heads: int = 8,
        *,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        activation: str = "relu",
        norm_first: bool = False,
        norm_eps: float = 1e-5,
        num_kv_heads: int | None = None,
        score: ScoreArg = "scaled_dot",
        bias: bool = True,
        rotary: Rotary | None = None,
        position_bias: Bias | nn.Module | None = None,
        window: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        options = dict(
            ff_dim=ff_dim, dropout=dropout, attention_dropout=attention_dropout, activation=activation,
            norm_first=norm_first, norm_eps=norm_eps, num_kv_heads=num_kv_heads, score=score, bias=bias,
            rotary=rotary, window=window, device=device, dtype=dtype,
        )
        dec_bias = copy.deepcopy(position_bias) if isinstance(position_bias, nn.Module) else position_bias
        self.encoder = TransformerEncoder(
            TransformerEncoderLayer(dim, num_heads, position_bias=position_bias, **options), num_encoder_layers,
            norm=True,
        )
        self.decoder = TransformerDecoder(
            TransformerDecoderLayer(dim, num_heads, position_bias=dec_bias, **options), num_decoder_layers,
            norm=True,
        )

    def encode(self, src: Tensor, *, mask: MaskLike | None = None, bias: BiasLike | None = None,
               return_weights: bool = False, return_hidden: bool = False) -> TransformerOutput:
        """The encoder on ``src (B, S, E)``."""
        return self.encoder(src, mask=mask, bias=bias, return_weights=return_weights, return_hidden=return_hidden)

    def decode(self, tgt: Tensor, memory: Tensor | None, *, mask: MaskLike | None = None,
               bias: BiasLike | None = None, memory_mask: MaskLike | None = None,
               memory_bias: BiasLike | None = None, return_weights: bool = False, return_hidden: bool = False,
               cache: Sequence[DecoderLayerCache] | None = None) -> TransformerOutput:
        """The decoder on ``tgt (B, L, E)`` over ``memory (B, S, E)`` (``mask``: e.g. ``causal()``).

        ``bias`` goes to the self-attention, ``memory_bias`` to the cross-attention of every layer.
        """
        return self.decoder(tgt, memory, mask=mask, bias=bias, memory_mask=memory_mask, memory_bias=memory_bias,
                            return_weights=return_weights, return_hidden=return_hidden, cache=cache)

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        *,
        src_mask: MaskLike | None = None,
        tgt_mask: MaskLike | None = None,
        memory_mask: MaskLike | None = None,
        return_weights: bool = False,
        return_hidden: bool = False,
    ) -> TransformerOutput:
        """``src (B, S, E)``, ``tgt (B, L, E) -> (B, L, E)``.

        Args:
            src_mask: the encoder's self-attention mask (source padding: ``key_padding(src_keep)``).
            tgt_mask: the decoder's self-attention mask (``causal()``, ``& key_padding(tgt_keep)``).
            memory_mask: the cross-attention mask (source padding again).

        Returns:
            The decoder's :class:`TransformerOutput`, with the encoder's in ``.encoder``.
        """
        enc = self.encode(src, mask=src_mask, return_weights=return_weights, return_hidden=return_hidden)
        dec = self.decode(tgt, enc.output, mask=tgt_mask, memory_mask=memory_mask, return_weights=return_weights,
                          return_hidden=return_hidden)
        return dataclasses.replace(dec, encoder=enc)

    @classmethod
    def from_torch(cls, module: nn.Transformer) -> Transformer:
        """An exact, batch-first equivalent of ``torch.nn.Transformer`` (weights copied)."""
        if not isinstance(module, nn.Transformer):
            raise TypeError(f"module must be a torch.nn.Transformer, got {type(module).__name__}")
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.encoder = TransformerEncoder.from_torch(module.encoder)
        new.decoder = TransformerDecoder.from_torch(module.decoder)
        return new.train(module.training)
