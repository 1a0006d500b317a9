"""``MultiDimensionalAttention``: feature-wise attention, one distribution over positions per feature.

Shape legend: ``B`` batch, ``S`` positions, ``Dk`` width of the scored states, ``D`` features of the
values (= the number of distributions), ``A`` hidden width of the score; weights are ``(B, D, 1, S)``:
each feature is a "head" with its own distribution.

Shen et al. 2018, "DiSAN: Directional Self-Attention Network", §3 "multi-dimensional attention"
(source2token form, eq. 15; the survey's "multi-dimensional attention" entry): the score of token
:math:`x_i` is a vector :math:`f(x_i) = W^\\top \\sigma(W^{(1)} x_i + b^{(1)}) + b \\in \\mathbb{R}^D`,
normalised over tokens separately for each feature, :math:`a_{i,d} = \\mathrm{softmax}_i(f(x_i)_d)`, and
the output is :math:`s = \\sum_i a_i \\odot v_i`. (The bias :math:`b` is constant over tokens and cancels
in each softmax; it is omitted.)

The read is one call of :func:`qkv.attend` with the features as heads: row ``d`` of :math:`W^\\top` is
feature ``d``'s learned query, the keys are :math:`h_i = \\sigma(W^{(1)} x_i + b^{(1)})` (shared by every
head), and feature ``d`` of the values is head ``d``'s one-wide value::

    attend(W[None, :, None, :], h[:, None], v as (B, D, S, 1), score="dot", mask=mask, bias=bias)

Calling convention: as :class:`qkv.layers.AttentionPooling` (the query is learned),
``forward(key, value=None, *, mask=None, bias=None, return_weights=False)``; ``mask`` and ``bias`` mean
what they mean in :func:`qkv.attend`, broadcast to ``(B, D, 1, S)``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.biases import BiasLike
from qkv.functional.checks import check_dropout, check_positive_int
from qkv.functional.masks import MaskLike
from qkv.functional.output import AttentionOutput
from qkv.layers.common import check_input, with_output

__all__ = ["MultiDimensionalAttention"]

_ACTIVATIONS = {"tanh": torch.tanh, "elu": nn.functional.elu}


class MultiDimensionalAttention(nn.Module):
    """Feature-wise attention pooling (Shen et al. 2018, DiSAN eq. 15): ``D`` distributions over positions.

    Args:
        key_dim: width ``Dk`` of the scored states.
        value_dim: number of features ``D`` of the values (default ``key_dim``).
        hidden_dim: width ``A`` of the score's hidden layer (default ``key_dim``).
        activation: ``"tanh"`` (default) or ``"elu"`` (DiSAN's :math:`\\sigma`).
        dropout: dropout on the weights, in training mode only.
    """

    def __init__(self, key_dim: int, *, value_dim: int | None = None, hidden_dim: int | None = None,
                 activation: str = "tanh", dropout: float = 0.0) -> None:
        super().__init__()
        self.key_dim = check_positive_int("key_dim", key_dim)
        self.value_dim = check_positive_int("value_dim", key_dim if value_dim is None else value_dim)
        self.hidden_dim = check_positive_int("hidden_dim", key_dim if hidden_dim is None else hidden_dim)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.dropout = check_dropout(dropout)
        self.hidden = nn.Linear(self.key_dim, self.hidden_dim)  # W^(1), b^(1)
        self.features = nn.Linear(self.hidden_dim, self.value_dim, bias=False)  # W^T: one query per feature
        self.num_heads = self.value_dim

    def forward(
        self,
        key: Tensor,
        value: Tensor | None = None,
        *,
        mask: MaskLike | None = None,
        bias: BiasLike | None = None,
        return_weights: bool = False,
    ) -> AttentionOutput:
        """Pool ``value`` feature by feature with distributions scored from ``key``.

        Args:
            key: ``(B, S, Dk)`` the states scored.
            value: ``(B, S, D)``; defaults to ``key`` (then ``D = Dk``).
            mask: as in :func:`qkv.attend`, broadcast to ``(B, D, 1, S)`` (True = may attend).
            bias: as in :func:`qkv.attend`, broadcast to ``(B, D, 1, S)``.
            return_weights: also return the weights ``(B, D, 1, S)`` (one distribution per feature).

        Returns:
            :class:`qkv.AttentionOutput` with ``output (B, 1, D)``.
        """
        key = check_input("key", key, dims=(3,), width=self.key_dim)
        value = check_input("value" if value is not None else "value (defaulted to key)",
                            key if value is None else value, dims=(3,), width=self.value_dim)
        if value.shape[:2] != key.shape[:2]:
            raise ValueError(f"key (B, S, Dk) and value (B, S, D) must agree on B and S: got key "
                             f"{tuple(key.shape)}, value {tuple(value.shape)}")
        h = _ACTIVATIONS[self.activation](self.hidden(key))  # (B, S, A)
        queries = rearrange(self.features.weight, "d a -> 1 d 1 a")  # (1, D, 1, A): one query per feature
        v = rearrange(value, "b s d -> b d s 1")  # (B, D, S, 1): feature d is head d's value
        out = attend(queries, h.unsqueeze(1), v, score="dot", mask=mask, bias=bias,  # h: (B, 1, S, A)
                     dropout=self.dropout if self.training else 0.0, return_weights=return_weights)
        return with_output(out, rearrange(out.output, "b d 1 1 -> b 1 d"))  # (B, 1, D)

    def extra_repr(self) -> str:
        return (f"key_dim={self.key_dim}, value_dim={self.value_dim}, hidden_dim={self.hidden_dim}, "
                f"activation={self.activation}")
