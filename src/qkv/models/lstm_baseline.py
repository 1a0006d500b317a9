"""An LSTM without external memory: the baseline of the memory-augmented models' experiments.

Shape legend: ``B`` sequences, ``T`` time steps, ``X`` input channels (``input_dim``), ``H`` hidden width
(``hidden_dim``), ``Y`` output channels (``output_dim``).

Graves, Wayne and Danihelka (2014, §4) compare the Neural Turing Machine with "a standard LSTM network" without
memory (their copy baseline: 3 layers of 256 cells); the stack/queue/NTM comparisons use the same kind of baseline.
The model is ``layers`` stacked LSTM layers (Hochreiter and Schmidhuber 1997, :class:`torch.nn.LSTM`) followed by a
linear read-out at every step: ``(B, T, X) -> (B, T, Y)`` logits (the tasks apply a sigmoid or a softmax).
"""

from __future__ import annotations

from torch import Tensor, nn

from qkv.functional.checks import check_positive_int, check_tensor

__all__ = ["LSTMBaseline"]


class LSTMBaseline(nn.Module):
    """``layers`` LSTM layers of ``hidden_dim`` and a linear output: ``(B, T, input_dim) -> (B, T, output_dim)``.

    Args:
        input_dim: channels of the input ``X``.
        output_dim: channels of the output logits ``Y``.
        hidden_dim: cells per LSTM layer ``H`` (keyword-only, required).
        layers: stacked LSTM layers (default 1).
    """

    def __init__(self, input_dim: int, output_dim: int, *, hidden_dim: int, layers: int = 1) -> None:
        super().__init__()
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.output_dim = check_positive_int("output_dim", output_dim)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.layers = check_positive_int("layers", layers)
        self.lstm = nn.LSTM(self.input_dim, self.hidden_dim, num_layers=self.layers, batch_first=True)
        self.out = nn.Linear(self.hidden_dim, self.output_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, T, X)`` -> logits ``(B, T, Y)``."""
        check_tensor("x", x, min_dim=3)
        if x.dim() != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(f"x must have shape (B, T, {self.input_dim}), got {tuple(x.shape)}")
        h = self.lstm(x)[0]  # (B, T, H)
        return self.out(h)  # (B, T, Y)
