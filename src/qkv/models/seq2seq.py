"""RNN encoder-decoder with attention (Bahdanau et al. 2015; Luong, Pham & Manning 2015).

Shape legend: ``B`` batch, ``S`` source length, ``T`` target length, ``E`` embedding width,
``H`` hidden width, ``V`` target vocabulary.

Encoder: a bidirectional GRU over the source embeddings (Bahdanau §3.2), ``H/2`` units per
direction, so the annotations :math:`\\bar h_s` are ``H`` wide. Decoder: Luong's global / local
attention architecture (§3, fig. 2-3): a GRU produces :math:`h_t`; attention against the
annotations gives :math:`a_t` and :math:`c_t = \\sum_s a_t(s) \\bar h_s`;

.. math:: \\tilde h_t = \\tanh(W_c [c_t; h_t])  \\quad (\\text{eq. } 5), \\qquad
          p(y_t \\mid y_{<t}, x) = \\mathrm{softmax}(W_s \\tilde h_t) \\quad (\\text{eq. } 6).

The score :math:`\\mathrm{score}(h_t, \\bar h_s)` is any of qkv's: Luong's ``dot``, ``general``
(:math:`h_t^\\top W_a \\bar h_s`) and ``concat`` (:math:`v_a^\\top \\tanh(W_a[h_t; \\bar h_s])`, eq. 8),
and Bahdanau's ``additive`` (:math:`v_a^\\top \\tanh(W_a h + U_a \\bar h_s)`). Bahdanau scores the
*previous* state :math:`s_{t-1}`; here every score takes Luong's current :math:`h_t`, so that the
scores are compared in one architecture. Positions: ``global`` attends to all source states;
``local-m`` / ``local-p`` use :class:`qkv.layers.LocalAttention` (window ``[p_t - D, p_t + D]``,
local-p predicting :math:`p_t` by eq. 9 and weighting by a Gaussian with :math:`\\sigma = D/2`, eq. 10).

With ``input_feeding=True`` :math:`\\tilde h_{t-1}` is concatenated to the decoder input (Luong
§3.3); without it the teacher-forced pass runs the decoder GRU over the whole target at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from qkv.functional import masks
from qkv.layers import Attention, LocalAttention

__all__ = ["Seq2Seq", "Seq2SeqConfig", "Seq2SeqOutput"]

POSITIONS = ("global", "local-m", "local-p")


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Hyper-parameters of :class:`Seq2Seq` (nested as ``model`` in experiment configs)."""

    embed_dim: int = 32
    hidden: int = 64
    score: Literal["additive", "dot", "general", "concat", "scaled_dot", "bilinear", "cosine"] = "general"
    position: Literal["global", "local-m", "local-p"] = "global"
    window: int = 3
    dropout: float = 0.0
    input_feeding: bool = False

    def __post_init__(self) -> None:
        if self.hidden < 2 or self.hidden % 2:
            raise ValueError(f"model.hidden must be an even int >= 2 (two GRU directions), got {self.hidden}")
        if self.embed_dim < 1:
            raise ValueError(f"model.embed_dim must be >= 1, got {self.embed_dim}")
        if self.position not in POSITIONS:
            raise ValueError(f"model.position must be one of {POSITIONS}, got {self.position!r}")
        if self.window < 1:
            raise ValueError(f"model.window must be >= 1, got {self.window}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class Seq2SeqOutput:
    """``logits`` ``(B, T, V)`` and attention ``weights`` ``(B, T, S)``; ``tokens`` ``(B, T)`` when decoding."""

    logits: Tensor
    weights: Tensor
    tokens: Tensor | None = None


class Seq2Seq(nn.Module):
    """Encoder-decoder with attention.

    Args:
        src_vocab: source vocabulary size.
        tgt_vocab: target vocabulary size ``V``.
        config: :class:`Seq2SeqConfig`.
        pad_id, bos_id, eos_id: special token ids (shared by both vocabularies).
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, config: Seq2SeqConfig | None = None, *,
                 pad_id: int = 0, bos_id: int = 1, eos_id: int = 2) -> None:
        super().__init__()
        c = config or Seq2SeqConfig()
        self.config, self.pad_id, self.bos_id, self.eos_id = c, pad_id, bos_id, eos_id
        H, E = c.hidden, c.embed_dim
        self.src_embed = nn.Embedding(src_vocab, E, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab, E, padding_idx=pad_id)
        self.encoder = nn.GRU(E, H // 2, batch_first=True, bidirectional=True)
        self.init_state = nn.Linear(H, H)
        self.decoder = nn.GRU(E + (H if c.input_feeding else 0), H, batch_first=True)
        if c.position == "global":
            self.attention: nn.Module = Attention(H, key_dim=H, score=c.score)
        else:
            self.attention = LocalAttention(H, key_dim=H, mode=c.position, window=c.window, score=c.score)
        self.combine = nn.Linear(2 * H, H, bias=False)  # W_c, eq. 5
        self.out = nn.Linear(H, tgt_vocab)  # W_s, eq. 6
        self.drop = nn.Dropout(c.dropout)

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Tensor, Tensor]:
        """Annotations ``(B, S, H)`` and the decoder's initial state ``(1, B, H)``."""
        if src.dim() != 2 or src_len.shape != src.shape[:1]:
            raise ValueError(f"src must be (B, S) and src_len (B,), got {tuple(src.shape)} and {tuple(src_len.shape)}")
        emb = self.drop(self.src_embed(src))  # (B, S, E)
        packed = pack_padded_sequence(emb, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, last = self.encoder(packed)  # last: (2, B, H/2)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])  # (B, S, H)
        h0 = torch.tanh(self.init_state(torch.cat([last[0], last[1]], dim=-1)))  # (B, H)
        return memory, h0.unsqueeze(0)  # (1, B, H)

    def _attend(self, h: Tensor, memory: Tensor, src_len: Tensor, steps: Tensor) -> tuple[Tensor, Tensor]:
        """Context ``(B, T, H)`` and weights ``(B, T, S)`` for decoder states ``h`` ``(B, T, H)``."""
        source = masks.padding(src_len.to(memory.device))  # (B, 1, 1, S): the real source positions
        extra = {"steps": steps} if isinstance(self.attention, LocalAttention) else {}
        out = self.attention(h, memory, mask=source, return_weights=True, **extra)
        return out.output, out.weights.squeeze(1)  # (B, 1, T, S) -> (B, T, S): one head

    def _readout(self, h: Tensor, context: Tensor) -> Tensor:
        return torch.tanh(self.combine(torch.cat([context, h], dim=-1)))  # (B, T, H), eq. 5

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Seq2SeqOutput:
        """Teacher-forced pass: ``tgt_in`` ``(B, T)`` starts with ``<bos>``; logits predict the next tokens."""
        memory, state = self.encode(src, src_len)
        if self.config.input_feeding:
            return self._run_steps(memory, state, src_len, tgt_in.shape[1], tgt_in=tgt_in)
        emb = self.drop(self.tgt_embed(tgt_in))  # (B, T, E)
        h, _ = self.decoder(emb, state)  # (B, T, H)
        steps = torch.arange(tgt_in.shape[1], device=src.device)  # (T,)
        context, weights = self._attend(h, memory, src_len, steps)
        logits = self.out(self.drop(self._readout(h, context)))  # (B, T, V)
        return Seq2SeqOutput(logits, weights)

    def _run_steps(self, memory: Tensor, state: Tensor, src_len: Tensor, max_len: int,
                   tgt_in: Tensor | None = None) -> Seq2SeqOutput:
        B, H = memory.shape[0], self.config.hidden
        prev = torch.full((B,), self.bos_id, dtype=torch.long, device=memory.device)  # (B,)
        feed = memory.new_zeros(B, H)  # (B, H), h~_{t-1}
        logits, weights, tokens = [], [], []
        done = torch.zeros(B, dtype=torch.bool, device=memory.device)
        for t in range(max_len):
            token = tgt_in[:, t] if tgt_in is not None else prev
            x = self.drop(self.tgt_embed(token))  # (B, E)
            if self.config.input_feeding:
                x = torch.cat([x, feed], dim=-1)  # (B, E + H)
            h, state = self.decoder(x.unsqueeze(1), state)  # (B, 1, H)
            context, w = self._attend(h, memory, src_len, torch.tensor([t], device=memory.device))
            feed = self._readout(h, context)  # (B, 1, H)
            step_logits = self.out(self.drop(feed))  # (B, 1, V)
            feed = feed.squeeze(1)
            logits.append(step_logits)
            weights.append(w)
            prev = step_logits.squeeze(1).argmax(-1)  # (B,)
            tokens.append(prev)
            if tgt_in is None:
                done = done | (prev == self.eos_id)
                if bool(done.all()):
                    break
        return Seq2SeqOutput(torch.cat(logits, 1), torch.cat(weights, 1), torch.stack(tokens, 1))

    @torch.no_grad()
    def greedy(self, src: Tensor, src_len: Tensor, max_len: int) -> Seq2SeqOutput:
        """Greedy decoding for up to ``max_len`` steps (stops early once every row emitted ``<eos>``)."""
        memory, state = self.encode(src, src_len)
        return self._run_steps(memory, state, src_len, max_len)
