"""Clipping the gradient that flows back through the NTM's recurrent state, one time step at a time.

Shape legend: ``B`` batch (the first dim of every state tensor), ``...`` the rest (``(N, M)`` memory, ``(H, N)``
weightings, ``(R, M)`` read vectors, ``(C,)`` controller state).

Why (measured on ``ntm-repeat-copy``, whose 12,000-step run died with a NaN loss at step 2,058; replayed from its
last checkpoint): the derivative of sharpening (eq. 9) with respect to its input,
:math:`\\partial w_i / \\partial \\tilde w_j = \\gamma (\\delta_{ij} w_i - w_i w_j) / \\tilde w_j`, has norm up to
:math:`\\gamma / \\max_j \\tilde w_j`. A uniform weighting is a fixed point of eq. 7-9 whose Jacobian is
:math:`\\gamma (I - \\mathbf 1 \\mathbf 1^\\top / N)`: an unstable one. At the failing steps the write head had spread
to exactly ``1/128`` on every slot (gate 0.07, :math:`\\gamma` 1.1) and its weighting fed the next step's through
eq. 7 and the memory, so backpropagation through time multiplied Jacobians of norm 2-4: the gradient of the state
grew about threefold per step back through a 112-step sequence — to ``1e7`` at step 2,036, past ``1e26`` at step
2,051 — while the parameters' gradient stayed near 0.2 (the exploding component breaks the symmetry between slots,
which the slot-shared parameters hardly see). Past float32's range (:math:`3.4 \\cdot 10^{38}`) it became ``inf``,
then ``inf - inf = NaN``, at step 2,057. Clipping the parameters' global gradient norm afterwards
(``TrainConfig.grad_clip``) cannot help: the overflow happens inside the backward pass (and ``inf`` times the clip
coefficient 0 is NaN).

The safeguard (Graves 2013, *Generating sequences with recurrent neural networks*, arXiv:1308.0850, likewise clipped
derivatives inside the backward pass of his LSTMs): the identity in the forward pass; in the backward pass, the
gradient of each sequence's state (per batch element) is rescaled to an L2 norm of at most ``max_norm`` before it
flows into the previous step. The forward computation is unchanged, and so, mathematically, is every gradient
smaller than the bound (bit for bit when each state tensor feeds only the next step and the output; with a loss on
the trace as well, autograd may sum the same terms in another order: rounding-level differences). The norm and the
scaling are computed in float64, so even a gradient near float32's (or float16's) limit is scaled rather than zeroed.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["clip_state_grad"]


class _ClipBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, max_norm: float) -> Tensor:  # type: ignore[override]
        ctx.max_norm = max_norm
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        if grad.dim() == 0:
            return grad.clamp(-ctx.max_norm, ctx.max_norm), None
        flat = grad.reshape(grad.shape[0], -1).double()  # (B, N): per sequence, in float64 (float32 squares overflow)
        scale = (ctx.max_norm / flat.norm(dim=1).clamp_min(1e-300)).clamp(max=1.0)  # (B,)
        return (flat * scale[:, None]).to(grad.dtype).reshape(grad.shape), None  # (B, N) -> (B, ...)


def clip_state_grad(x: Tensor, max_norm: float) -> Tensor:
    """``x`` unchanged; in the backward pass its gradient is scaled to L2 norm ``<= max_norm`` per batch element.

    Args:
        x: a state tensor ``(B, ...)``.
        max_norm: the bound (``> 0``).
    """
    if not (isinstance(max_norm, int | float) and not isinstance(max_norm, bool) and max_norm > 0):
        raise ValueError(f"max_norm must be a number > 0, got {max_norm!r}")
    if not x.requires_grad:
        return x
    return _ClipBackward.apply(x, float(max_norm))
