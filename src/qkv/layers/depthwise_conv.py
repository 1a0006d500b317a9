"""Depthwise separable 1-D convolution over a padded batch (QANet's convolution, Yu et al. 2018, §2.2).

Shape legend: ``B`` batch, ``L`` positions, ``C`` input channels, ``Co`` output channels, ``K`` kernel width.

A depthwise separable convolution (Chollet 2017; Kaiser et al. 2017) factors a full convolution into a
*depthwise* step, one width-``K`` filter per channel (``groups = C``),

.. math:: h_{t,c} = \\sum_{j=0}^{K-1} w^{\\mathrm{dw}}_{c,j}\\, x_{t + j - \\lfloor (K-1)/2 \\rfloor,\\, c}
          + b^{\\mathrm{dw}}_c,

and a *pointwise* ``1 x 1`` step mixing channels, :math:`y_{t,o} = \\sum_c w^{\\mathrm{pw}}_{o,c} h_{t,c} +
b^{\\mathrm{pw}}_o` (seed 000, figs. 2-3): ``K C + C Co`` weights instead of ``K C Co``. Padding is "same"
(``floor((K-1)/2)`` zeros on the left, the rest on the right), so ``L`` is kept. Positions where ``keep`` is
False (padding) are zeroed in the input, so that they contribute nothing to real positions, and in the output.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from qkv.functional.checks import check_positive_int, check_tensor
from qkv.layers.common import check_keep

__all__ = ["DepthwiseSeparableConv1d"]


class DepthwiseSeparableConv1d(nn.Module):
    """Depthwise (``groups = C``) then pointwise (``1 x 1``) convolution, batch first, "same" padding.

    Args:
        channels: ``C``, the input width.
        out_channels: ``Co`` (default ``C``).
        kernel_size: ``K`` (QANet: 7 in the encoder blocks, 5 in the model encoder).
        bias: learn the biases of both steps.

    Call: ``conv(x (B, L, C), *, keep=None (B, L) bool) -> (B, L, Co)``; positions with ``keep`` False are
    zeroed before and after the convolution.
    """

    def __init__(self, channels: int, out_channels: int | None = None, *, kernel_size: int = 7,
                 bias: bool = True) -> None:
        super().__init__()
        C = check_positive_int("channels", channels)
        Co = check_positive_int("out_channels", C if out_channels is None else out_channels)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.depthwise = nn.Conv1d(C, C, self.kernel_size, groups=C, bias=bias)
        self.pointwise = nn.Conv1d(C, Co, 1, bias=bias)

    @property
    def channels(self) -> int:
        return self.depthwise.in_channels

    def forward(self, x: Tensor, *, keep: Tensor | None = None) -> Tensor:
        check_tensor("x", x, min_dim=3)
        if x.dim() != 3 or x.shape[-1] != self.channels:
            raise ValueError(f"x must have shape (B, L, channels={self.channels}), got {tuple(x.shape)}")
        keep = check_keep("keep", keep, x)
        if keep is not None:
            x = x * keep[..., None]
        left = (self.kernel_size - 1) // 2
        h = F.pad(rearrange(x, "b l c -> b c l"), (left, self.kernel_size - 1 - left))  # (B, C, L + K - 1)
        y = rearrange(self.pointwise(self.depthwise(h)), "b o l -> b l o")  # (B, L, Co)
        return y if keep is None else y * keep[..., None]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"
