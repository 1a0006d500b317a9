"""Pointer networks (Vinyals, Fortunato and Jaitly 2015): the attention distribution over the inputs IS the output.

Shape legend: ``B`` batch, ``N`` input positions (points, numbers), ``F`` input features (2 for planar points,
1 for numbers), ``H`` LSTM width, ``A`` additive-score width, ``K`` key positions (``N``, or ``N + 1`` with the
end token at position 0), ``T`` output steps, ``W`` beam width.

A sequence-to-sequence model whose output vocabulary is the set of input positions. An LSTM encoder reads the
inputs into states :math:`e_1 \\dots e_n`; an LSTM decoder, started from the encoder's final state, reads at each
step the input it pointed to last (a learned "go" vector first) and produces :math:`d_i`. The paper's eq. 3,

.. math::  u^i_j = v^\\top \\tanh(W_1 e_j + W_2 d_i), \\qquad p(C_i \\mid C_1 \\dots C_{i-1}, \\mathcal{P})
           = \\mathrm{softmax}(u^i),

is additive attention (Bahdanau's score) with the decoder state as the query and the encoder states as keys,
used not to blend the values but as the prediction itself. Here it is one call of :func:`qkv.attend`::

    read = attend(d, e, e, score=Additive(H, H, hidden_dim=A), mask=allowed, return_weights=True,
                  return_scores=True)
    p(C_i = j) = read.weights[..., i, j]                        # the pointer distribution
    log p(C_i = j) = log_softmax(read.scores, allowed)[..., i, j]  # the same distribution, in log space

``allowed`` is a bool mask (True = may point): padding positions of variable-length inputs are never allowed,
and with ``permutation=True`` a position already pointed to is masked for the rest of the sequence (sorting,
TSP, the hull's vertices). A step where nothing is allowed (every position used, or the sequence already
ended) gets all-zero weights and zero gradients, never NaN (the ``attend`` convention). With
``end_token=True`` a learned key at position 0 means "stop" (the convex hull's variable-length answer); the
inputs then sit at key positions ``1..N``.
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from qkv.functional.attention import attend
from qkv.functional.checks import check_flag, check_positive_int, check_tensor
from qkv.functional.normalize import log_softmax
from qkv.functional.output import AttentionOutput
from qkv.layers.scores import Additive

__all__ = ["PointerDecoding", "PointerNetwork"]


@dataclass(frozen=True)
class PointerDecoding:
    """A decoded batch.

    Attributes:
        indices: ``(B, T)`` key positions pointed to, ``-1`` after the sequence ended (with the end token,
            position 0 is "stop" and inputs are ``1..N``; without it inputs are ``0..N-1``).
        log_prob: ``(B,)`` log-probability of each decoded sequence under the model.
        weights: ``(B, T, K)`` the pointer distribution at every step (all zero on steps after the end);
            for beam search, the best beam's.
    """

    indices: Tensor
    log_prob: Tensor
    weights: Tensor


class PointerNetwork(nn.Module):
    """Ptr-Net (Vinyals et al. 2015, §2.3, eq. 3): an LSTM encoder-decoder that points at its inputs.

    Args:
        input_dim: features ``F`` of one input element (2 for planar points, 1 for numbers).
        hidden_dim: LSTM width ``H`` (the paper: 256 or 512).
        attention_dim: width ``A`` of the additive score's tanh layer (default ``hidden_dim``).
        end_token: prepend a learned "end of sequence" key at position 0 (variable-length outputs).
        permutation: mask positions already pointed to (each input used at most once).
        init_range: parameters drawn uniformly from ``[-init_range, init_range]`` (the paper: 0.08); ``None``
            keeps torch's defaults.
    """

    def __init__(
        self, input_dim: int, hidden_dim: int = 128, *, attention_dim: int | None = None, end_token: bool = False,
        permutation: bool = True, init_range: float | None = 0.08,
    ) -> None:
        super().__init__()
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        attention_dim = check_positive_int("attention_dim", hidden_dim if attention_dim is None else attention_dim)
        self.end_token = check_flag("end_token", end_token)
        self.permutation = check_flag("permutation", permutation)
        if init_range is not None and (isinstance(init_range, bool) or not isinstance(init_range, (int, float))
                                       or not init_range > 0):
            raise ValueError(f"init_range must be a positive float or None, got {init_range!r}")
        self.encoder = nn.LSTM(input_dim, hidden_dim, batch_first=True)
        self.decoder = nn.LSTM(input_dim, hidden_dim, batch_first=True)
        self.go = nn.Parameter(torch.zeros(input_dim))  # the decoder's first input
        self.end = nn.Parameter(torch.zeros(hidden_dim)) if end_token else None  # the "stop" key
        self.score = Additive(hidden_dim, hidden_dim, hidden_dim=attention_dim)  # u = v^T tanh(W1 e + W2 d)
        if init_range is not None:
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)

    @property
    def offset(self) -> int:
        """Key position of input 0: 1 with the end token (position 0 is "stop"), else 0."""
        return int(self.end_token)

    # -- pieces ------------------------------------------------------------------------------------------------

    def _check(self, inputs: Tensor, lengths: Tensor | None) -> Tensor:
        check_tensor("inputs", inputs, min_dim=3)
        if inputs.dim() != 3 or inputs.shape[-1] != self.input_dim:
            raise ValueError(f"inputs must have shape (B, N, {self.input_dim}), got {tuple(inputs.shape)}")
        B, N, _ = inputs.shape
        if N < 1:
            raise ValueError(f"inputs must hold at least one position, got shape {tuple(inputs.shape)}")
        if lengths is None:
            return torch.full((B,), N, dtype=torch.long, device=inputs.device)
        if not isinstance(lengths, Tensor) or lengths.shape != (B,) or lengths.dtype.is_floating_point:
            got = tuple(lengths.shape) if isinstance(lengths, Tensor) else type(lengths).__name__
            raise ValueError(f"lengths must be an integer tensor of shape (B,) = ({B},), got {got}")
        if bool(((lengths < 1) | (lengths > N)).any()):
            raise ValueError(f"lengths must lie in [1, N] = [1, {N}], got {lengths.tolist()}")
        return lengths.to(device=inputs.device, dtype=torch.long)

    def encode(self, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Encoder states as keys ``(B, K, H)``, the keys' padding mask ``(B, K)`` and the final LSTM state.

        Variable-length inputs are packed, so each sequence's final state is at its own length.
        """
        B, N, _ = inputs.shape
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.encoder(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=N)  # (B, N, H)
        keep = torch.arange(N, device=inputs.device) < lengths[:, None]  # (B, N)
        if self.end is not None:
            end = einops.repeat(self.end, "h -> b 1 h", b=B)  # (B, 1, H)
            states = torch.cat([end, states], dim=1)  # (B, K = N + 1, H)
            keep = torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1)  # (B, K)
        return states, keep, state

    def point(self, queries: Tensor, keys: Tensor, allowed: Tensor) -> AttentionOutput:
        """The pointer distribution: ``attend(d, e, e, score=Additive, mask=allowed)``, eq. 3 of the paper.

        Args:
            queries: decoder states ``(B, T, H)``.
            keys: encoder states ``(B, K, H)`` (also the values: the read-out is not used).
            allowed: ``(B, T, K)`` bool, True = may point there.

        Returns:
            the :class:`AttentionOutput` whose ``weights (B, T, K)`` are the prediction and ``scores`` the
            logits :math:`u^i_j` before masking.
        """
        return attend(queries, keys, keys, score=self.score, mask=allowed, return_weights=True,
                      return_scores=True, backend="naive")

    def _step_inputs(self, inputs: Tensor, pointed: Tensor) -> Tensor:
        """The decoder's input for the next step: the input element at key position ``pointed (B, T)``."""
        B = inputs.shape[0]
        if self.end_token:
            inputs = torch.cat([inputs.new_zeros(B, 1, self.input_dim), inputs], dim=1)  # (B, K, F)
        idx = einops.repeat(pointed.clamp(min=0), "b t -> b t f", f=self.input_dim)
        return inputs.gather(1, idx)  # (B, T, F)

    # -- training: teacher forcing -----------------------------------------------------------------------------

    def forward(self, inputs: Tensor, targets: Tensor, *, lengths: Tensor | None = None) -> AttentionOutput:
        """Teacher-forced pointer distributions for a target sequence (training and evaluation of likelihood).

        Args:
            inputs: ``(B, N, F)`` input elements, left-aligned when ``lengths`` is given.
            targets: ``(B, T)`` the key positions to point to at each step, ``-1`` after the sequence's end.
            lengths: ``(B,)`` number of real inputs per example (default all ``N``).

        Returns:
            ``attend``'s :class:`AttentionOutput` with ``weights (B, T, K)`` (the pointer distribution at each
            step, given the true previous outputs) and ``scores (B, T, K)``; :meth:`loss` gives the
            log-likelihood.
        """
        return self.teacher_forced(inputs, targets, lengths=lengths)[0]

    def teacher_forced(
        self, inputs: Tensor, targets: Tensor, *, lengths: Tensor | None = None,
    ) -> tuple[AttentionOutput, Tensor]:
        """:meth:`forward`'s read and the mask ``allowed (B, T, K)`` it was computed under."""
        lengths = self._check(inputs, lengths)
        keys, keep, state = self.encode(inputs, lengths)
        targets = self._check_targets(targets, inputs.shape[0], keys.shape[1])
        prev = self._step_inputs(inputs, targets[:, :-1])  # (B, T-1, F): teacher forcing
        go = einops.repeat(self.go, "f -> b 1 f", b=inputs.shape[0])  # (B, 1, F)
        queries, _ = self.decoder(torch.cat([go, prev], dim=1), state)  # (B, T, H)
        allowed = self.teacher_mask(targets, keep)
        return self.point(queries, keys, allowed), allowed

    def _check_targets(self, targets: Tensor, B: int, K: int) -> Tensor:
        if not isinstance(targets, Tensor) or targets.dim() != 2 or targets.shape[0] != B or targets.shape[1] < 1:
            got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ValueError(f"targets must be an integer tensor of shape (B, T) with B = {B}, T >= 1, got {got}")
        if targets.dtype.is_floating_point or bool(((targets < -1) | (targets >= K)).any()):
            raise ValueError(f"targets must be key positions in [0, {K}) or -1 (padding), got "
                             f"dtype {targets.dtype}, range [{int(targets.min())}, {int(targets.max())}]")
        return targets

    def teacher_mask(self, targets: Tensor, keep: Tensor) -> Tensor:
        """``(B, T, K)``: real keys, minus (with ``permutation``) the positions pointed to at earlier steps."""
        allowed = einops.repeat(keep, "b k -> b t k", t=targets.shape[1])
        if not self.permutation:
            return allowed
        K = keep.shape[1]
        hit = nn.functional.one_hot(targets.clamp(min=0), K) * (targets >= 0)[..., None]  # (B, T, K)
        before = hit.cumsum(1) - hit  # pointed to at a step < t
        if self.end_token:
            before[..., 0] = 0  # "stop" is never used up
        return allowed & (before == 0)

    @staticmethod
    def log_probs(read: AttentionOutput, allowed: Tensor) -> Tensor:
        """``log p`` of the pointer distribution ``(B, T, K)``: ``log_softmax`` of ``read.scores`` under ``allowed``.

        ``exp`` of it is ``read.weights`` (the same softmax, taken in log space for a stable likelihood);
        masked positions and fully masked steps are ``-inf``.
        """
        return log_softmax(read.scores, allowed)

    def loss(self, inputs: Tensor, targets: Tensor, *, lengths: Tensor | None = None) -> Tensor:
        """Mean negative log-likelihood of the target pointers over the real (``targets >= 0``) steps."""
        read, allowed = self.teacher_forced(inputs, targets, lengths=lengths)
        logp = self.log_probs(read, allowed)  # (B, T, K)
        real = targets >= 0
        picked = logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]  # (B, T)
        if bool((real & ~torch.isfinite(picked)).any()):
            raise ValueError("targets point to a masked position (padding, or a repeat with permutation=True)")
        return -torch.where(real, picked, torch.zeros_like(picked)).sum() / real.sum().clamp(min=1)

    # -- inference ---------------------------------------------------------------------------------------------

    def _prepare(self, inputs: Tensor, lengths: Tensor | None, max_steps: int | None):
        lengths = self._check(inputs, lengths)
        keys, keep, state = self.encode(inputs, lengths)
        if max_steps is None:
            max_steps = inputs.shape[1] + self.offset
        max_steps = check_positive_int("max_steps", max_steps)
        return keys, keep, state, max_steps

    def _finished(self, allowed: Tensor, last: Tensor) -> Tensor:
        """``(B,)`` sequences that have ended: pointed to "stop", or nothing left to point to."""
        done = ~allowed.any(-1)
        if self.end_token:
            done = done | (last == 0)
        return done

    def greedy(self, inputs: Tensor, *, lengths: Tensor | None = None, max_steps: int | None = None) -> PointerDecoding:
        """Greedy decoding: at each step point to the most probable allowed position (argmax of the weights).

        Args:
            inputs: ``(B, N, F)``; lengths: ``(B,)`` real inputs per example.
            max_steps: most output steps (default ``N``, plus one for the end token).
        """
        keys, keep, state, max_steps = self._prepare(inputs, lengths, max_steps)
        B = keep.shape[0]
        allowed = keep.clone()  # (B, K)
        x = einops.repeat(self.go, "f -> b 1 f", b=B)  # (B, 1, F)
        done = torch.zeros(B, dtype=torch.bool, device=inputs.device)
        picks, weights = [], []
        total = keys.new_zeros(B)
        for _ in range(max_steps):
            d, state = self.decoder(x, state)  # (B, 1, H)
            step_allowed = allowed & ~done[:, None]  # (B, K): nothing after the end
            read = self.point(d, keys, step_allowed[:, None])  # weights (B, 1, K): the prediction
            w = read.weights[:, 0]  # (B, K)
            pick = torch.where(done, torch.full_like(done, -1, dtype=torch.long), w.argmax(-1))  # (B,)
            logp = self.log_probs(read, step_allowed[:, None])[:, 0]  # (B, K)
            gained = logp.gather(-1, pick.clamp(min=0)[:, None])[:, 0]  # (B,)
            total = total + torch.where(done, torch.zeros_like(total), gained)
            picks.append(pick)
            weights.append(w)
            allowed = self._use(allowed, pick)
            done = done | self._finished(allowed, pick)
            x = self._step_inputs(inputs, pick[:, None])  # (B, 1, F)
            if bool(done.all()):
                break
        return PointerDecoding(torch.stack(picks, 1), total, torch.stack(weights, 1))

    def _use(self, allowed: Tensor, pick: Tensor) -> Tensor:
        """Mask the position just pointed to (with ``permutation``; "stop" stays allowed until it is chosen)."""
        if not self.permutation:
            return allowed
        used = nn.functional.one_hot(pick.clamp(min=0), allowed.shape[-1]).bool() & (pick >= 0)[:, None]
        if self.end_token:
            used[:, 0] = False
        return allowed & ~used

    def beam_search(
        self, inputs: Tensor, *, beam_width: int = 4, lengths: Tensor | None = None, max_steps: int | None = None,
    ) -> PointerDecoding:
        """Beam search over pointer sequences (the paper's decoding; masks keep every beam a valid answer).

        Keeps the ``beam_width`` most probable partial sequences per example; a finished beam (it pointed to
        "stop", or nothing is left to point to) carries its log-probability unchanged. Returns the most
        probable finished sequence, its log-probability and its pointer distributions.
        """
        beam_width = check_positive_int("beam_width", beam_width)
        keys, keep, state, max_steps = self._prepare(inputs, lengths, max_steps)
        B, K = keep.shape
        W = beam_width
        expand = lambda t: einops.repeat(t, "b ... -> (b w) ...", w=W)  # noqa: E731
        keys, allowed, xs = expand(keys), expand(keep), expand(inputs)  # (B*W, ...)
        state = tuple(einops.repeat(s, "l b h -> l (b w) h", w=W) for s in state)  # (1, B*W, H)
        score = keys.new_full((B, W), float("-inf"))
        score[:, 0] = 0.0  # one live beam at the start
        done = torch.zeros(B * W, dtype=torch.bool, device=inputs.device)
        x = einops.repeat(self.go, "f -> bw 1 f", bw=B * W)  # (B*W, 1, F)
        seqs = inputs.new_zeros(B * W, 0, dtype=torch.long)
        hist = keys.new_zeros(B * W, 0, K)
        rows = torch.arange(B, device=inputs.device)[:, None] * W  # (B, 1)
        for _ in range(max_steps):
            d, state = self.decoder(x, state)  # (B*W, 1, H)
            step_allowed = allowed & ~done[:, None]
            read = self.point(d, keys, step_allowed[:, None])  # weights (B*W, 1, K): the prediction
            logp = self.log_probs(read, step_allowed[:, None])[:, 0]  # (B*W, K)
            # a finished beam continues once, with "-1" at no cost (column K), so it is not duplicated
            stay = torch.where(done, torch.zeros_like(logp[:, 0]), torch.full_like(logp[:, 0], float("-inf")))
            cand = torch.cat([logp, stay[:, None]], dim=1)  # (B*W, K + 1)
            total = einops.rearrange(score, "b w -> (b w) 1") + cand
            total = einops.rearrange(total, "(b w) k -> b (w k)", w=W)  # (B, W*(K+1))
            score, flat = total.topk(W, dim=-1)  # (B, W)
            parent = (rows + flat // (K + 1)).reshape(-1)  # (B*W,) row of the beam extended
            pick = flat % (K + 1)
            pick = torch.where(pick == K, torch.full_like(pick, -1), pick).reshape(-1)  # (B*W,)
            state = tuple(s[:, parent] for s in state)
            seqs = torch.cat([seqs[parent], pick[:, None]], dim=1)  # (B*W, t)
            hist = torch.cat([hist[parent], read.weights[parent]], dim=1)  # (B*W, t, K)
            allowed = self._use(allowed[parent], pick)
            was_done = done[parent]
            done = was_done | (pick < 0) | self._finished(allowed, pick)
            x = self._step_inputs(xs, pick[:, None])  # (B*W, 1, F)
            if bool(done.all()):
                break
        best = score.argmax(-1)  # (B,)
        rows_best = rows[:, 0] + best
        return PointerDecoding(seqs[rows_best], score[torch.arange(B), best], hist[rows_best])

    @torch.no_grad()
    def decode(
        self, inputs: Tensor, *, beam_width: int = 1, lengths: Tensor | None = None, max_steps: int | None = None,
        batch_size: int = 512,
    ) -> PointerDecoding:
        """Decode a whole set in batches of ``batch_size`` (greedy for ``beam_width=1``, else beam search).

        The result lives on the CPU; ``indices`` are padded with ``-1`` and ``weights`` with zeros to the longest.
        """
        beam_width = check_positive_int("beam_width", beam_width)
        batch_size = check_positive_int("batch_size", batch_size)
        device = next(self.parameters()).device
        parts = []
        for lo in range(0, inputs.shape[0], batch_size):
            x = inputs[lo: lo + batch_size].to(device)
            n = None if lengths is None else lengths[lo: lo + batch_size].to(device)
            out = (self.greedy(x, lengths=n, max_steps=max_steps) if beam_width == 1 else
                   self.beam_search(x, beam_width=beam_width, lengths=n, max_steps=max_steps))
            parts.append(out)
        T = max(p.indices.shape[1] for p in parts)
        pad = lambda t, v: nn.functional.pad(t.cpu(), (0, 0) * (t.dim() - 2) + (0, T - t.shape[1]), value=v)  # noqa: E731
        return PointerDecoding(torch.cat([pad(p.indices, -1) for p in parts]),
                               torch.cat([p.log_prob.cpu() for p in parts]),
                               torch.cat([pad(p.weights, 0.0) for p in parts]))
