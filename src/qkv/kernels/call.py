"""The validated description of one attention problem, handed from :func:`qkv.attend` to a kernel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from qkv.biases import Bias
from qkv.kernels.local import GaussianWindow
from qkv.masks import Mask

__all__ = ["AttentionCall"]


@dataclass(frozen=True)
class AttentionCall:
    """Everything a kernel needs; built and checked by :func:`qkv.attend`.

    Attributes:
        q, k, v: ``(..., L, D)``, ``(..., S, D)``, ``(..., S, Dv)``; leading dims broadcast.
        score: ``(q, k) -> (..., L, S)``, already including ``scale``.
        score_name: ``"dot"``/``"scaled_dot"``/``"cosine"`` for the built-in parameter-free
            scores, else ``None`` (a callable or a parametric :mod:`qkv.scores` module).
        scale: the multiplier of a dot-product score (``None``: the score's default).
        mask: a lazy :class:`~qkv.masks.Mask` (tensors are wrapped), or ``None``.
        bias: additive float scores ``(..., L, S)`` (broadcastable), a lazy
            :class:`qkv.biases.Bias` (ALiBi, relative positions), or ``None``.
        normalize: a name from :data:`qkv.functional.normalize.NORMALIZERS` or a callable
            ``(scores, mask) -> weights``.
        score_spec: the ``score`` argument as the user gave it (a name, a function or a
            :mod:`qkv.scores` module); lets a kernel exploit a score's structure (the tiled
            kernel projects an additive score's queries and keys once).
        local_p: Luong's local-p window (:class:`qkv.kernels.local.GaussianWindow`): keys outside
            ``|s - p| <= D`` are masked and the softmax weights are multiplied by a Gaussian.
    """

    q: Tensor
    k: Tensor
    v: Tensor
    score: Callable[[Tensor, Tensor], Tensor]
    score_name: str | None
    scale: float | None
    mask: Mask | None
    bias: Tensor | Bias | None
    normalize: str | Callable[[Tensor, Tensor | None], Tensor]
    dropout: float
    straight_through: bool
    generator: torch.Generator | None
    return_weights: bool
    return_scores: bool
    batch_shape: tuple[int, ...]
    score_spec: object = None
    local_p: GaussianWindow | None = None

    @property
    def L(self) -> int:
        return self.q.shape[-2]

    @property
    def S(self) -> int:
        return self.k.shape[-2]

    @property
    def is_dot_product(self) -> bool:
        return self.score_name in ("dot", "scaled_dot")

    @property
    def lazy_bias(self) -> Bias | None:
        """The bias as a lazy :class:`qkv.biases.Bias` (tensors wrapped), or ``None``."""
        from qkv.biases import as_bias

        return None if self.bias is None else as_bias(self.bias)

    def full_mask(self) -> Mask | None:
        """The mask including local-p's window, as one lazy :class:`~qkv.masks.Mask`."""
        if self.local_p is None:
            return self.mask
        around = self.local_p.mask()
        return around if self.mask is None else self.mask & around

    def sdpa_scale(self) -> float | None:
        """The ``scale`` argument of ``scaled_dot_product_attention`` for a dot-product score."""
        if self.score_name == "dot":
            return 1.0 if self.scale is None else self.scale
        return self.scale
