"""REINFORCE: the score-function estimate of the gradient of an expected reward, as a surrogate loss.

Shape legend: ``...`` any leading dims (usually ``(B,)`` or ``(B, T)``): one log-probability per sampled
choice; ``rewards`` broadcast against the summed log-probabilities (one reward per sample, ``(B,)``).

Williams (1992); Xu et al. 2015, eq. 11-12 (Show, Attend and Tell, hard attention): for a sample
:math:`\\tilde s \\sim p_\\theta(s)` and a reward :math:`R(\\tilde s)`,

.. math::  \\nabla_\\theta\\, \\mathbb{E}_{s \\sim p_\\theta}[R(s)]
           = \\mathbb{E}\\big[(R(\\tilde s) - b)\\, \\nabla_\\theta \\log p_\\theta(\\tilde s)\\big]

for any baseline :math:`b` that does not depend on :math:`\\tilde s` (it changes the variance, not the mean:
:math:`\\mathbb{E}[\\nabla \\log p] = 0`). :func:`reinforce_loss` returns the **surrogate**
:math:`-(R - b)\\,\\log p(\\tilde s)` with :math:`R - b` detached: its gradient is minus one Monte Carlo estimate,
so minimising it ascends the expected reward. In Show, Attend and Tell the reward is the caption's
log-likelihood :math:`\\log p(y \\mid \\tilde s, a)` and the baseline a moving average of it
(:class:`qkv.train.baseline.MovingAverageBaseline`, §4.1).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["reinforce_loss"]


def reinforce_loss(log_probs: Tensor, rewards: Tensor, *, baseline: Tensor | float | None = None,
                   sample_dims: int = 1, reduction: str = "mean") -> Tensor:
    """The REINFORCE surrogate :math:`-(R - b)\\,\\log p(\\tilde s)` (Williams 1992; Xu et al. 2015, eq. 12).

    Args:
        log_probs: ``(N, ...)`` log-probabilities of the sampled choices, differentiable in the policy's
            parameters; the trailing dims of one sample (e.g. the time steps ``T``) are summed, so that
            :math:`\\log p(\\tilde s) = \\sum_t \\log p(\\tilde s_t)`.
        rewards: ``(N,)`` the reward of each sample (treated as a constant: it is detached).
        baseline: ``b``, a float or a tensor broadcastable to ``(N,)`` (detached); ``None`` is ``b = 0``.
        sample_dims: how many leading dims of ``log_probs`` index samples (the rest are summed).
        reduction: ``"mean"`` or ``"sum"`` over the samples, or ``"none"`` for ``(N,)``.

    Returns:
        The surrogate loss; its gradient is minus the REINFORCE estimate of :math:`\\nabla \\mathbb{E}[R]`.

    Raises:
        TypeError, ValueError: naming the argument (not tensors, mismatched shapes, unknown reduction).
    """
    if not isinstance(log_probs, Tensor) or not log_probs.dtype.is_floating_point:
        raise TypeError(f"log_probs must be a floating-point tensor, got {type(log_probs).__name__}")
    if not isinstance(rewards, Tensor):
        raise TypeError(f"rewards must be a tensor, got {type(rewards).__name__}")
    if isinstance(sample_dims, bool) or not isinstance(sample_dims, int) or not 1 <= sample_dims <= log_probs.dim():
        raise ValueError(f"sample_dims must be an int in 1..{log_probs.dim()} (log_probs has shape "
                         f"{tuple(log_probs.shape)}), got {sample_dims!r}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    logp = log_probs.flatten(sample_dims).sum(-1) if log_probs.dim() > sample_dims else log_probs  # (N,)
    if rewards.shape != logp.shape:
        raise ValueError(f"rewards must have shape {tuple(logp.shape)} (one per sample of log_probs "
                         f"{tuple(log_probs.shape)}), got {tuple(rewards.shape)}")
    advantage = rewards.detach().to(logp.dtype)
    if baseline is not None:
        b = baseline.detach() if isinstance(baseline, Tensor) else torch.as_tensor(float(baseline))
        advantage = advantage - b.to(logp.dtype)
    loss = -advantage * logp  # (N,)
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss
