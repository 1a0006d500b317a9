"""Luong's local attention as a layer, with the local-p position predictor.

Shape legend: ``B`` batch, ``L`` decoder steps, ``S`` source positions, ``Dq``/``Dk``/``Dv`` widths.

Luong, Pham & Manning 2015 §3.2 (seed 004). local-m aligns step ``t`` with source position
``t``; local-p predicts :math:`p_t = (S_b - 1)\\,\\sigma(v_p^\\top \\tanh(W_p h_t))` (eq. 9, here with
0-based positions, so ``S - 1`` replaces the paper's ``S``), where ``S_b`` is the number of keys
the mask allows the query (its source length, with padding). Positions are clamped to the
allowed keys, which the mask is assumed to leave as a prefix (as padding does).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.functional.biases import BiasLike
from qkv.functional.checks import check_positive_int
from qkv.functional.local import MODES, local_attention
from qkv.functional.masks import MaskLike, as_mask
from qkv.functional.output import AttentionOutput
from qkv.layers.common import ScoreArg, build_score, check_inputs, with_output

__all__ = ["LocalAttention"]


class LocalAttention(nn.Module):
    """Local attention over a window of half-width ``window`` (Luong's D) around :math:`p_t`, one head.

    Args:
        query_dim: width of the decoder states.
        key_dim: width of the encoder states (default ``query_dim``).
        mode: ``"local-m"`` or ``"local-p"``.
        window: half-width ``D`` of the window; the Gaussian of local-p has :math:`\\sigma = D/2`.
        score: as in :class:`qkv.Attention` (Luong uses ``"dot"``, ``"general"`` or ``"concat"``).
        hidden_dim: hidden width of the local-p predictor :math:`W_p` (default ``query_dim``).
    """

    def __init__(
        self,
        query_dim: int,
        *,
        key_dim: int | None = None,
        mode: str = "local-p",
        window: int = 2,
        score: ScoreArg = "general",
        hidden_dim: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.query_dim = check_positive_int("query_dim", query_dim)
        self.key_dim = check_positive_int("key_dim", query_dim if key_dim is None else key_dim)
        self.mode, self.window = mode, check_positive_int("window", window)
        self.score = build_score(score, query_dim=self.query_dim, key_dim=self.key_dim)
        if mode == "local-p":
            hidden_dim = check_positive_int("hidden_dim", query_dim if hidden_dim is None else hidden_dim)
            self.predictor = nn.Sequential(
                nn.Linear(query_dim, hidden_dim, bias=False), nn.Tanh(), nn.Linear(hidden_dim, 1, bias=False)
            )

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        mask: MaskLike | None = None,
        bias: BiasLike | None = None,
        return_weights: bool = False,
        steps: Tensor | None = None,
    ) -> AttentionOutput:
        """Attend from ``query`` ``(B, L, Dq)`` over ``key`` ``(B, S, Dk)`` (default ``query``).

        Args:
            value: ``(B, S, Dv)``; defaults to ``key``.
            mask: as in :func:`qkv.attend`, broadcast to ``(B, 1, L, S)``; source padding is
                :func:`qkv.masks.padding`. The keys it allows a query bound the query's window.
            bias: as in :func:`qkv.attend`, broadcast to ``(B, 1, L, S)``.
            return_weights: also return the weights ``(B, 1, L, S)``.
            steps: ``(B, L)`` or ``(L,)`` decoder step indices for local-m (default ``0..L-1``);
                needed when decoding one step at a time.
        """
        query, key, value = check_inputs(query, key, value, query_dim=self.query_dim, key_dim=self.key_dim)
        B, L, _ = query.shape
        S = key.shape[1]
        pos_dtype = torch.promote_types(query.dtype, torch.float32)  # positions stay exact in bf16/fp16 models
        last = torch.full((B, L), S - 1, device=query.device, dtype=pos_dtype)  # last source position per query
        if mask is not None:
            mask = as_mask(mask)
            mask.check("mask", (B, 1, L, S), L=L, S=S, device=query.device)
            allowed = mask.materialize(L, S, device=query.device).sum(dim=-1)  # broadcastable to (B, 1, L)
            last = (allowed.expand(B, 1, L)[:, 0] - 1).clamp_min(0).to(pos_dtype)  # (B, L)
        if self.mode == "local-m":
            if L == 1 and steps is None:
                raise ValueError("local-m decoding one step at a time needs steps= (the decoder step index t)")
            t = torch.arange(L, device=query.device) if steps is None else _check_steps(steps, B, L).to(query.device)
            position = torch.minimum(t.to(pos_dtype).expand(B, L), last)  # (B, L)
        else:
            position = last * torch.sigmoid(self.predictor(query).squeeze(-1)).to(pos_dtype)  # (B, L)
        out = local_attention(
            query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1),  # (B, 1, L|S, D): one head
            position=position.unsqueeze(1), window=self.window, mode=self.mode, score=self.score,  # (B, 1, L)
            mask=mask, bias=bias, return_weights=return_weights,
        )
        return with_output(out, out.output.squeeze(1))  # (B, L, Dv)

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, mode={self.mode!r}, window={self.window}"


def _check_steps(steps: object, B: int, L: int) -> Tensor:
    """Decoder step indices: an integer tensor of shape ``(L,)`` or ``(B, L)``."""
    ok = isinstance(steps, Tensor) and not steps.dtype.is_floating_point and steps.dtype != torch.bool
    if not ok or tuple(steps.shape) not in ((L,), (B, L)):
        got = (steps.dtype, tuple(steps.shape)) if isinstance(steps, Tensor) else type(steps).__name__
        raise ValueError(f"steps must be an integer tensor of shape (L,) = ({L},) or (B, L) = ({B}, {L}), got {got}")
    return steps
