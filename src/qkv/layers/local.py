"""Luong's local attention as a layer, with the local-p position predictor.

Shape legend: ``B`` batch, ``L`` decoder steps, ``S`` source positions, ``Dq``/``Dk`` widths.

Luong, Pham & Manning 2015 §3.2 (seed 004). local-m aligns step ``t`` with source position
``t``; local-p predicts :math:`p_t = (S - 1)\\,\\sigma(v_p^\\top \\tanh(W_p h_t))` (eq. 9, here with
0-based positions, so ``S - 1`` replaces the paper's ``S``; with padding, each row's own length).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.functional.local import MODES, local_attention
from qkv.functional.output import AttentionOutput
from qkv.layers._common import ScoreArg, build_score, check_input

__all__ = ["LocalAttention"]


class LocalAttention(nn.Module):
    """Local attention over a window of half-width ``window`` (Luong's D) around :math:`p_t`.

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
        key_dim: int | None = None,
        *,
        mode: str = "local-p",
        window: int = 2,
        score: ScoreArg = "general",
        hidden_dim: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        key_dim = query_dim if key_dim is None else key_dim
        self.query_dim, self.key_dim, self.mode, self.window = query_dim, key_dim, mode, window
        self.score = build_score(score, query_dim=query_dim, key_dim=key_dim)
        if mode == "local-p":
            hidden_dim = query_dim if hidden_dim is None else hidden_dim
            self.predictor = nn.Sequential(
                nn.Linear(query_dim, hidden_dim, bias=False), nn.Tanh(), nn.Linear(hidden_dim, 1, bias=False)
            )

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor | None = None,
        *,
        lengths: Tensor | None = None,
        steps: Tensor | None = None,
        return_weights: bool = False,
    ) -> AttentionOutput:
        """Attend from ``query`` ``(B, L, Dq)`` (or ``(B, Dq)``, one step) over ``key`` ``(B, S, Dk)``.

        Args:
            value: ``(B, S, Dv)``; defaults to ``key``.
            lengths: ``(B,)`` source lengths (padding beyond them is masked).
            steps: ``(B, L)`` or ``(L,)`` decoder step indices for local-m (default ``0..L-1``);
                pass it when decoding one step at a time.
            return_weights: also return the weights ``(B, L, S)``.
        """
        step = check_input("query", query, dims=(2, 3), width=self.query_dim).dim() == 2
        key = check_input("key", key, dims=(3,), width=self.key_dim)
        value = key if value is None else value
        q = query.unsqueeze(1) if step else query  # (B, L, Dq)
        B, L, _ = q.shape
        S = key.shape[1]
        pos_dtype = torch.promote_types(q.dtype, torch.float32)  # positions stay exact in bf16/fp16 models
        last = (torch.full((B,), S, device=q.device) if lengths is None else lengths.to(q.device)) - 1
        last = last.to(pos_dtype)
        if self.mode == "local-m":
            if step and steps is None:
                raise ValueError("local-m decoding one step at a time needs steps= (the decoder step index t)")
            t = torch.arange(L, device=q.device) if steps is None else steps.to(q.device)
            position = torch.minimum(t.to(pos_dtype).expand(B, L), last[:, None])  # (B, L)
        else:
            position = last[:, None] * torch.sigmoid(self.predictor(q).squeeze(-1)).to(pos_dtype)  # (B, L)
        mask = None
        if lengths is not None:
            mask = (torch.arange(S, device=q.device) < lengths.to(q.device)[:, None])[:, None, :]  # (B, 1, S)
        out = local_attention(
            q, key, value, position=position, window=self.window, mode=self.mode, score=self.score,
            mask=mask, return_weights=return_weights,
        )
        if not step:
            return out
        weights = None if out.weights is None else out.weights.squeeze(1)
        return AttentionOutput(output=out.output.squeeze(1), weights=weights)
