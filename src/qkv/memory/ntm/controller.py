"""NTM controllers (Graves, Wayne and Danihelka 2014, §3 and §4): a feed-forward network or an LSTM.

Shape legend: ``B`` batch, ``I`` controller input width (the external input plus the previous read vectors),
``C`` controller width (``controller_dim``).

A controller maps one step's input to a hidden vector ``(B, C)``, from which the NTM emits its output and
its heads' parameters. The feed-forward controller has no state: everything it remembers is in the memory
(which makes the heads' use easy to read, §4); the LSTM controller also has its cell.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from qkv.functional.checks import check_positive_int

__all__ = ["CONTROLLERS", "FeedforwardController", "LSTMController", "make_controller"]


class FeedforwardController(nn.Module):
    """One ``tanh`` layer (bounded, so the heads' raw parameters stay in a sane range): ``(B, I) -> (B, C)``."""

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.layer = nn.Linear(input_dim, hidden_dim)

    def initial_state(self, batch: int, *, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
        return ()

    def forward(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        return torch.tanh(self.layer(x)), state


class LSTMController(nn.Module):
    """An LSTM cell (Hochreiter and Schmidhuber 1997) with zero initial state: ``(B, I) -> (B, C)``."""

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.cell = nn.LSTMCell(input_dim, hidden_dim)

    def initial_state(self, batch: int, *, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
        zeros = torch.zeros(batch, self.hidden_dim, device=device, dtype=dtype)  # (B, C)
        return zeros, zeros

    def forward(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        h, c = self.cell(x, state)
        return h, (h, c)


CONTROLLERS: dict[str, Any] = {"feedforward": FeedforwardController, "lstm": LSTMController}


def make_controller(kind: str, input_dim: int, hidden_dim: int) -> nn.Module:
    """``kind`` in :data:`CONTROLLERS` (``"lstm"`` or ``"feedforward"``); errors name the argument."""
    if kind not in CONTROLLERS:
        raise ValueError(f"controller must be one of {sorted(CONTROLLERS)}, got {kind!r}")
    return CONTROLLERS[kind](check_positive_int("input_dim", input_dim),
                             check_positive_int("controller_dim", hidden_dim))
