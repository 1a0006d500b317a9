"""The Transformer's position-wise feed-forward network, with ReLU, GELU or gated (SwiGLU) activations.

Shape legend: ``B`` batch, ``L`` positions, ``E`` model width, ``F`` hidden width.

Vaswani et al. 2017, eq. 2: :math:`\\mathrm{FFN}(x) = \\max(0, x W_1 + b_1) W_2 + b_2`, applied to
each position separately. GELU (Hendrycks & Gimpel 2016) replaces the ReLU in BERT and GPT
(``"gelu"``, exact; ``"gelu_tanh"``, the tanh approximation GPT-2 uses). SwiGLU (Shazeer 2020,
"GLU Variants Improve Transformer", eq. 6) gates the hidden layer:
:math:`\\mathrm{FFN}_{\\mathrm{SwiGLU}}(x) = (\\mathrm{Swish}(x W) \\odot x V) W_2`, with
:math:`W` = ``gate`` and :math:`V` = ``linear1`` here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.functional.checks import check_dropout, check_flag, check_positive_int

__all__ = ["ACTIVATIONS", "FeedForward"]

#: The activations :class:`FeedForward` accepts.
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "swiglu")


def check_activation(activation: object) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return activation


class FeedForward(nn.Module):
    """``linear2(dropout(act(linear1(x))))``; for SwiGLU ``linear2(dropout(silu(gate(x)) * linear1(x)))``.

    Args:
        dim: ``E``.
        hidden_dim: ``F`` (4E in the paper; 2048 for E = 512).
        activation: ``"relu"``, ``"gelu"``, ``"gelu_tanh"`` or ``"swiglu"``.
        dropout: on the hidden layer (``torch.nn.TransformerEncoderLayer``'s ``dropout`` module).
        bias: learn biases in the linear maps.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        E, Fh = check_positive_int("dim", dim), check_positive_int("hidden_dim", hidden_dim)
        self.activation = check_activation(activation)
        check_flag("bias", bias)
        factory = {"device": device, "dtype": dtype}
        self.linear1 = nn.Linear(E, Fh, bias=bias, **factory)
        self.gate = nn.Linear(E, Fh, bias=bias, **factory) if self.activation == "swiglu" else None
        self.dropout = nn.Dropout(check_dropout(dropout))
        self.linear2 = nn.Linear(Fh, E, bias=bias, **factory)

    def reset_parameters(self) -> None:
        for lin in (self.linear1, self.gate, self.linear2):
            if lin is not None:
                lin.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, L, E) -> (B, L, E)``."""
        h = self.linear1(x)  # (B, L, F)
        if self.activation == "relu":
            h = F.relu(h)
        elif self.activation == "gelu":
            h = F.gelu(h)
        elif self.activation == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        else:
            h = F.silu(self.gate(x)) * h
        if self.training and self.dropout.p > 0:
            h = self.dropout(h)
        return self.linear2(h)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"
