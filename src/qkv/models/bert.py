"""An encoder in BERT's layout, loadable from Hugging Face ``transformers``.

Shape legend: ``B`` batch, ``L`` positions, ``E`` model width, ``H`` heads, ``F`` feed-forward width,
``N`` layers, ``V`` vocabulary, ``P`` the maximum number of positions, ``T`` token types (segments).

BERT (Devlin et al. 2019, §3, Fig. 2): the input representation of a token is the sum of its
WordPiece embedding, a learned absolute position embedding and a segment (token-type) embedding,
normalised (LayerNorm, epsilon ``1e-12``) and dropped out:

.. math:: h_0 = \\mathrm{LN}(E_{\\mathrm{tok}} + E_{\\mathrm{pos}} + E_{\\mathrm{seg}}), \\qquad
          h_l = \\mathrm{block}(h_{l-1}) \\; (l = 1..N),

each block the original post-LN Transformer encoder layer (Vaswani et al. 2017, §3.1;
:class:`~qkv.models.transformer.TransformerEncoderLayer` with ``norm_first=False``) with the exact
GELU in its feed-forward network. Attention is bidirectional: the only mask is the padding
(``attention_mask``). The optional pooler (§3.1, the ``[CLS]`` representation used for
classification) is :math:`\\tanh(W h_N[:, 0] + b)`.

Every layer's read is ``qkv.attend(q, k, v, score="scaled_dot", mask=key_padding(keep))`` per head
(:class:`qkv.MultiHeadAttention`); ``return_weights=True`` gives per layer the per-head weights
``(B, H, L, L)``, Hugging Face's ``output_attentions``.

:meth:`Bert.from_hf` copies a ``transformers.BertModel`` (with or without its pooler).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qkv.functional.checks import check_dropout, check_flag, check_positive_int
from qkv.functional.masks import key_padding
from qkv.models.feedforward import check_activation
from qkv.models.hf_compat import activation_from_hf, check_hf_model, copy_layer_norm, copy_linear
from qkv.models.transformer import TransformerEncoder, TransformerEncoderLayer
from qkv.positional.learned import LearnedPositions

__all__ = ["Bert", "BertConfig", "BertOutput"]


@dataclass(frozen=True)
class BertConfig:
    """BERT's hyper-parameters (defaults: BERT-base, 110M parameters).

    Attributes:
        vocab_size: ``V`` (30522).
        max_positions: ``P`` (512).
        type_vocab_size: ``T`` (2 segments).
        dim: ``E`` (768).
        num_layers: ``N`` (12).
        num_heads: ``H`` (12).
        ff_dim: ``F`` (3072).
        activation: the feed-forward activation (``"gelu"``, exact).
        norm_eps: LayerNorm's epsilon (1e-12).
        dropout: on the embeddings and on each sub-layer's output (``hidden_dropout_prob``).
        attention_dropout: on the attention weights (``attention_probs_dropout_prob``).
        pooler: add the ``[CLS]`` pooler.
        pad_id: the padding token, whose embedding starts at zero (``pad_token_id``; ``None``: none).
        init_std: the initial weights' standard deviation (``initializer_range``).
    """

    vocab_size: int = 30522
    max_positions: int = 512
    type_vocab_size: int = 2
    dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ff_dim: int = 3072
    activation: str = "gelu"
    norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    pooler: bool = True
    pad_id: int | None = 0
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_positions", "type_vocab_size", "dim", "num_layers", "num_heads", "ff_dim"):
            check_positive_int(name, getattr(self, name))
        if self.dim % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide dim ({self.dim})")
        check_activation(self.activation)
        check_dropout(self.dropout)
        check_dropout(self.attention_dropout, name="attention_dropout")
        check_flag("pooler", self.pooler)
        if self.pad_id is not None and (isinstance(self.pad_id, bool) or not isinstance(self.pad_id, int)
                                        or not 0 <= self.pad_id < self.vocab_size):
            raise ValueError(f"pad_id must be None or a token id in 0..{self.vocab_size - 1}, got {self.pad_id!r}")
        for name in ("norm_eps", "init_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")

    @classmethod
    def from_hf(cls, config: object, *, pooler: bool = True) -> BertConfig:
        """The same hyper-parameters as a ``transformers.BertConfig`` (an encoder: ``is_decoder=False``)."""
        if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
            raise ValueError("from_hf: only BERT as an encoder is supported (is_decoder and add_cross_attention False)")
        kind = getattr(config, "position_embedding_type", "absolute")
        if kind != "absolute":
            raise ValueError(f"from_hf: position_embedding_type {kind!r} is not supported (only 'absolute')")
        pad = getattr(config, "pad_token_id", None)
        return cls(
            vocab_size=config.vocab_size, max_positions=config.max_position_embeddings,
            type_vocab_size=config.type_vocab_size, dim=config.hidden_size, num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads, ff_dim=config.intermediate_size,
            activation=activation_from_hf(config.hidden_act), norm_eps=float(config.layer_norm_eps),
            dropout=float(config.hidden_dropout_prob), attention_dropout=float(config.attention_probs_dropout_prob),
            pooler=pooler, pad_id=pad if pad is not None and 0 <= pad < config.vocab_size else None,
            init_std=float(getattr(config, "initializer_range", 0.02)),
        )


@dataclass(frozen=True)
class BertOutput:
    """What :class:`Bert` returns.

    Attributes:
        output: ``(B, L, E)``, the last layer's hidden states (``last_hidden_state``).
        pooled: ``(B, E)``, the pooler's output (``pooler_output``); ``None`` without a pooler.
        weights: (``return_weights``) per layer, the self-attention weights ``(B, H, L, L)``.
        hidden_states: (``return_hidden``) ``N + 1`` tensors ``(B, L, E)``: the embeddings, then each layer's output.
    """

    output: Tensor
    pooled: Tensor | None = None
    weights: list[Tensor] | None = None
    hidden_states: list[Tensor] | None = None


def _check_ids(name: str, ids: object, limit: int, shape: tuple[int, ...] | None = None) -> Tensor:
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool \
            or ids.shape[1] < 1 or (shape is not None and tuple(ids.shape) != shape):
        got = (ids.dtype, tuple(ids.shape)) if isinstance(ids, Tensor) else type(ids).__name__
        want = f"{shape}" if shape is not None else "(B, L) with L >= 1"
        raise ValueError(f"{name} must be an integer tensor {want}, got {got}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= limit):
        raise ValueError(f"{name} must lie in 0..{limit - 1}, got values {int(ids.min())}..{int(ids.max())}")
    return ids


class Bert(nn.Module):
    """BERT's embeddings, post-LN encoder stack and optional pooler.

    Args:
        config: a :class:`BertConfig` (default BERT-base).
    """

    def __init__(self, config: BertConfig | None = None) -> None:
        super().__init__()
        config = BertConfig() if config is None else config
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
        self.config = c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.dim, padding_idx=c.pad_id)  # word_embeddings
        self.positions = LearnedPositions(c.max_positions, c.dim, init_std=c.init_std)  # position_embeddings
        self.token_type_embedding = nn.Embedding(c.type_vocab_size, c.dim)  # token_type_embeddings
        self.embedding_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.embedding_dropout = nn.Dropout(c.dropout)
        layers = []
        for _ in range(c.num_layers):
            layer = TransformerEncoderLayer(
                c.dim, c.num_heads, ff_dim=c.ff_dim, dropout=c.dropout, attention_dropout=c.attention_dropout,
                activation=c.activation, norm_first=False, norm_eps=c.norm_eps,
            )
            layer.ff.dropout = nn.Dropout(0.0)  # BERT drops the feed-forward output only, not its hidden layer
            layers.append(layer)
        self.body = TransformerEncoder(layers, norm=False)  # post-LN: every layer ends with its LayerNorm
        self.pooler = nn.Linear(c.dim, c.dim) if c.pooler else None
        self.reset_parameters()

    @property
    def layers(self) -> nn.ModuleList:
        return self.body.layers

    def reset_parameters(self) -> None:
        """BERT's initialisation: weights ``N(0, 0.02²)``, zero biases, LayerNorms at identity, the padding row zero."""
        std = self.config.init_std
        for emb in (self.token_embedding, self.token_type_embedding):
            nn.init.normal_(emb.weight, std=std)
        if self.config.pad_id is not None:
            with torch.no_grad():
                self.token_embedding.weight[self.config.pad_id].zero_()
        self.positions.reset_parameters()
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    def embed(self, tokens: Tensor, *, token_types: Tensor | None = None, positions: Tensor | None = None) -> Tensor:
        """The input representation ``h_0 (B, L, E)`` (Devlin et al. 2019, Fig. 2)."""
        c = self.config
        tokens = _check_ids("tokens", tokens, c.vocab_size)
        x = self.token_embedding(tokens)  # (B, L, E)
        if token_types is None:
            x = x + self.token_type_embedding.weight[0]  # every token in segment 0
        else:
            x = x + self.token_type_embedding(_check_ids("token_types", token_types, c.type_vocab_size,
                                                          tuple(tokens.shape)))
        x = self.positions(x) if positions is None else self.positions(x, positions=positions)
        x = self.embedding_norm(x)
        return self.embedding_dropout(x) if self.training and self.embedding_dropout.p > 0 else x

    def forward(
        self,
        tokens: Tensor,
        *,
        attention_mask: Tensor | None = None,
        token_types: Tensor | None = None,
        positions: Tensor | None = None,
        return_weights: bool = False,
        return_hidden: bool = False,
    ) -> BertOutput:
        """``tokens (B, L) -> output (B, L, E)`` (and ``pooled (B, E)``).

        Args:
            tokens: token ids ``(B, L)``.
            attention_mask: ``(B, L)``, True (or 1) = a real token, 0 = padding (keys only: padded queries
                still get outputs, which mean nothing).
            token_types: ``(B, L)`` segment ids (default 0, as ``transformers``).
            positions: ``(B|1, L)`` explicit position ids (default ``0..L-1``).
            return_weights: ``weights``: per layer ``(B, H, L, L)``.
            return_hidden: ``hidden_states``: ``N + 1`` tensors ``(B, L, E)``.
        """
        x = self.embed(tokens, token_types=token_types, positions=positions)
        mask = None
        if attention_mask is not None:
            if not isinstance(attention_mask, Tensor) or tuple(attention_mask.shape) != tuple(tokens.shape):
                m = attention_mask
                got = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
                raise ValueError(f"attention_mask must be (B, L) = {tuple(tokens.shape)}, got {got}")
            mask = key_padding(attention_mask if attention_mask.dtype == torch.bool else attention_mask != 0)
        out = self.body(x, mask=mask, return_weights=return_weights, return_hidden=return_hidden)
        pooled = None if self.pooler is None else torch.tanh(self.pooler(out.output[:, 0]))  # (B, E)
        return BertOutput(output=out.output, pooled=pooled, weights=out.weights, hidden_states=out.hidden_states)

    @torch.no_grad()
    def load_hf(self, model: nn.Module) -> Bert:
        """Copy the weights of a ``transformers.BertModel`` of the same shape."""
        check_hf_model(model, ("BertModel",))
        emb = model.embeddings
        self.token_embedding.weight.copy_(emb.word_embeddings.weight)
        self.positions.weight.copy_(emb.position_embeddings.weight)
        self.token_type_embedding.weight.copy_(emb.token_type_embeddings.weight)
        copy_layer_norm(self.embedding_norm, emb.LayerNorm)
        for ours, layer in zip(self.layers, model.encoder.layer, strict=True):
            attn, hf_attn = ours.self_attn, layer.attention
            for proj, src in ((attn.q_proj, hf_attn.self.query), (attn.k_proj, hf_attn.self.key),
                              (attn.v_proj, hf_attn.self.value), (attn.out_proj, hf_attn.output.dense),
                              (ours.ff.linear1, layer.intermediate.dense), (ours.ff.linear2, layer.output.dense)):
                copy_linear(proj, src.weight, src.bias)
            copy_layer_norm(ours.norm1, hf_attn.output.LayerNorm)
            copy_layer_norm(ours.norm2, layer.output.LayerNorm)
        if self.pooler is not None:
            if model.pooler is None:
                raise ValueError("from_hf: this Bert has a pooler, the BertModel has none (add_pooling_layer=False)")
            copy_linear(self.pooler, model.pooler.dense.weight, model.pooler.dense.bias)
        return self

    @classmethod
    def from_hf(cls, model: nn.Module) -> Bert:
        """The equivalent of a ``transformers.BertModel`` (its pooler too when it has one), weights copied."""
        check_hf_model(model, ("BertModel",))
        config = BertConfig.from_hf(model.config, pooler=model.pooler is not None)
        ref = model.embeddings.word_embeddings.weight
        new = cls(config).to(device=ref.device, dtype=ref.dtype)
        return new.load_hf(model).train(model.training)

    def extra_repr(self) -> str:
        c = self.config
        return f"vocab_size={c.vocab_size}, dim={c.dim}, num_layers={c.num_layers}, num_heads={c.num_heads}"
