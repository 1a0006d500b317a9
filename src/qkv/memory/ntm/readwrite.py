"""NTM memory access (Graves, Wayne and Danihelka 2014, §3.1-3.2, eq. 2-4): read a weighted sum, write erase and add.

Shape legend: ``...`` leading dims (typically the batch ``B``); ``H`` heads, ``N`` memory slots, ``M`` slot width.

* read (eq. 2): :math:`r_t = \\sum_i w_t(i)\\, M_t(i)`. In the model the read comes out of the addressing call of
  :func:`qkv.attend` (:func:`qkv.memory.ntm.addressing.address`: its ``output``); :func:`read` is the same
  expectation written out, used by the tests and the MemN2N comparison.
* write (eq. 3-4): erase :math:`\\tilde M_t(i) = M_{t-1}(i) [\\mathbf 1 - w_t(i) e_t]`, then add
  :math:`M_t(i) = \\tilde M_t(i) + w_t(i) a_t`. With several write heads the erasures multiply and the additions
  sum, so their order does not matter (§3.2).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["read", "write"]


def read(memory: Tensor, weights: Tensor) -> Tensor:
    """Eq. 2: ``memory (..., N, M)``, ``weights (..., H, N)`` -> read vectors ``(..., H, M)``."""
    if weights.shape[-1] != memory.shape[-2]:
        raise ValueError(f"weights must end in N = {memory.shape[-2]} (memory slots), got shape {tuple(weights.shape)}")
    return torch.einsum("...hn,...nm->...hm", weights, memory)


def write(memory: Tensor, weights: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """Eq. 3-4 for ``H`` write heads at once.

    Args:
        memory: ``(..., N, M)``, :math:`M_{t-1}`.
        weights: ``(..., H, N)``, each head's :math:`w_t`.
        erase: ``(..., H, M)`` in ``[0, 1]``, :math:`e_t`.
        add: ``(..., H, M)``, :math:`a_t`.

    Returns:
        :math:`M_t` ``(..., N, M)``: :math:`M_{t-1} \\odot \\prod_h (1 - w_h e_h^\\top) + \\sum_h w_h a_h^\\top`.
    """
    N, M = memory.shape[-2:]
    if weights.shape[-1] != N or erase.shape[-1] != M or add.shape[-1] != M:
        raise ValueError(f"for memory {tuple(memory.shape)} need weights (..., H, {N}), erase and add (..., H, {M}); "
                         f"got {tuple(weights.shape)}, {tuple(erase.shape)}, {tuple(add.shape)}")
    keep = 1.0 - weights.unsqueeze(-1) * erase.unsqueeze(-2)  # (..., H, N, M): 1 - w_h(i) e_h
    keep = keep.squeeze(-3) if keep.shape[-3] == 1 else keep.prod(dim=-3)  # (..., N, M)
    return memory * keep + weights.transpose(-1, -2) @ add  # (..., N, M): the adds summed over heads
