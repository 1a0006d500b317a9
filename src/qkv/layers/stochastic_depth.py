"""Stochastic depth ("layer dropout") for residual sublayers (Huang et al. 2016; QANet, Yu et al. 2018, §2.2).

Shape legend: ``...`` any shape (the residual stream, e.g. ``(B, L, D)``).

QANet (§2.2, "Model Encoder Layer" / training details): every sublayer is a residual block
:math:`y = x + f(\\mathrm{layernorm}(x))`, and during training sublayer :math:`l` of :math:`L` is kept with
probability

.. math:: p_l = 1 - \\frac{l}{L}\\,(1 - p_L), \\qquad p_L = 0.9,

so the first sublayers almost always run and the last survives with probability :math:`p_L`. A dropped
sublayer is skipped for the whole batch (:math:`y = x`, and :math:`f` is not evaluated). With ``scale``
(the default) a kept sublayer's branch is divided by :math:`p_l` during training ("inverted" stochastic
depth, as inverted dropout), so that :math:`\\mathbb{E}[y] = x + f(x)`, the full residual used at evaluation
time unchanged; ``scale=False`` keeps the branch as is in training (the QANet reference code's choice), and
evaluation is then the full residual as well.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from qkv.functional.checks import check_flag, check_positive_int

__all__ = ["StochasticDepth", "survival_probability"]


def _check_probability(name: str, p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ValueError(f"{name} must be a probability in (0, 1], got {p!r}")
    return float(p)


def survival_probability(layer: int, num_layers: int, *, p_last: float = 0.9) -> float:
    """:math:`p_l = 1 - (l / L)(1 - p_L)` for sublayer ``layer`` = :math:`l \\in \\{1..L\\}` of ``num_layers`` = L."""
    L = check_positive_int("num_layers", num_layers)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= L:
        raise ValueError(f"layer must be an int in 1..num_layers={L}, got {layer!r}")
    p_last = _check_probability("p_last", p_last)
    return 1.0 - layer / L * (1.0 - p_last)


class StochasticDepth(nn.Module):
    """A residual connection that, in training, drops its branch with probability ``1 - survival``.

    Args:
        survival: :math:`p_l`, the probability that the branch runs (1: never dropped).
        scale: divide a kept branch by ``survival`` in training (so the expectation is the eval output).

    Call: ``sd(x, branch, *, generator=None) -> x + branch(x)`` (eval, or a kept branch) or ``x`` (dropped).
    ``generator`` draws the keep/drop decision (default: torch's global RNG).
    """

    def __init__(self, survival: float = 1.0, *, scale: bool = True) -> None:
        super().__init__()
        self.survival = _check_probability("survival", survival)
        self.scale = check_flag("scale", scale)

    def forward(self, x: Tensor, branch: Callable[[Tensor], Tensor], *,
                generator: torch.Generator | None = None) -> Tensor:
        if not callable(branch):
            raise TypeError(f"branch must be a callable x -> f(x), got {type(branch).__name__}")
        if not self.training or self.survival >= 1.0:
            return x + branch(x)
        if float(torch.rand((), generator=generator)) >= self.survival:
            return x  # the whole sublayer is dropped
        out = branch(x)
        return x + (out / self.survival if self.scale else out)

    def extra_repr(self) -> str:
        return f"survival={self.survival:.4g}, scale={self.scale}"
