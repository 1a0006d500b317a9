"""A moving-average reward baseline for REINFORCE, kept in a buffer so it checkpoints with the model.

Shape legend: ``N`` rewards of one minibatch.

Xu et al. 2015, §4.1 (after Weaver and Tao 2001): :math:`b_k = 0.9\\, b_{k-1} + 0.1 \\log p(y \\mid \\tilde s_k, a)`,
the running average of the reward over minibatches. Subtracting it from the reward leaves the REINFORCE
estimate unbiased (it does not depend on the current sample: :meth:`MovingAverageBaseline.update` returns the
value from *before* this minibatch) and lowers its variance (:mod:`qkv.train.reinforce`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MovingAverageBaseline"]


class MovingAverageBaseline(nn.Module):
    """:math:`b \\leftarrow \\text{decay}\\cdot b + (1 - \\text{decay})\\cdot \\overline{R}`, one update per minibatch.

    Under ``torch.distributed`` the mean is taken over every rank's rewards (one all-reduce per update).
    The value and the number of updates are buffers (``value``, ``count``): a model holding this module saves
    and restores them with its ``state_dict`` (and so with :mod:`qkv.train.checkpoint`). Before the first update
    the baseline is 0; the first update sets it to the first minibatch's mean reward.

    Args:
        decay: the weight of the old value, in ``[0, 1)`` (the paper's 0.9).
    """

    value: Tensor
    count: Tensor

    def __init__(self, *, decay: float = 0.9) -> None:
        super().__init__()
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 <= decay < 1:
            raise ValueError(f"decay must be a float in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.register_buffer("value", torch.zeros((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def update(self, rewards: Tensor) -> Tensor:
        """Return the baseline to use for ``rewards (N,)`` (the value before them), then fold their mean in."""
        if not isinstance(rewards, Tensor) or rewards.numel() == 0:
            raise ValueError(f"rewards must be a non-empty tensor, got {rewards!r}")
        before = self.value.clone()
        mean = rewards.detach().double().mean()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Data parallel: fold in the global minibatch's mean, so every rank holds the same baseline (the one a
            # single process would) and DDP's buffer broadcast from rank 0 changes nothing.
            torch.distributed.all_reduce(mean)
            mean /= torch.distributed.get_world_size()
        if int(self.count) == 0:
            self.value.copy_(mean)
        else:
            self.value.mul_(self.decay).add_((1 - self.decay) * mean)
        self.count.add_(1)
        return before.to(rewards.dtype)

    def forward(self, rewards: Tensor) -> Tensor:
        """:meth:`update`."""
        return self.update(rewards)

    def extra_repr(self) -> str:
        return f"decay={self.decay}, value={float(self.value):.4g}, updates={int(self.count)}"
