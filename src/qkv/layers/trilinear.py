"""The trilinear similarity of BiDAF and QANet as a qkv score (Seo et al. 2017, eq. 1; Yu et al. 2018, §2.2).

Shape legend: ``...`` leading (broadcast) dims, ``L`` queries, ``S`` keys, ``D`` width (queries and keys).

.. math:: s(q, k) = w^\\top [q; k; q \\circ k] = w_q^\\top q + w_k^\\top k + (q \\circ w_m)^\\top k,
          \\qquad w = [w_q; w_k; w_m] \\in \\mathbb{R}^{3D}.

QANet writes :math:`f(q, c) = W_0[q, c, q \\odot c]` with ``q`` a question word and ``c`` a context word; with
the context as the queries of :func:`qkv.attend` (``q = c``) and the question as its keys, this is the same
function with the first two blocks of :math:`W_0` swapped. The sum splits into a per-query term, a per-key
term and a weighted dot product, so the score is a **dot-kind** score (:mod:`qkv.functional.scores`) over
features one column wider on each side plus a constant column:

.. math:: s(q, k) = \\big[q \\circ w_m;\\ w_q^\\top q;\\ 1\\big]^\\top \\big[k;\\ 1;\\ w_k^\\top k\\big],

which the SDPA, FlexAttention and tiled kernels take (``dot_features``). :meth:`Trilinear.swapped` is the
same function with queries and keys exchanged (shared parameters): :math:`s'(k, q) = s(q, k)`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from qkv.functional.checks import check_positive_int
from qkv.functional.scores import check_same_width

__all__ = ["Trilinear", "trilinear"]


def _check_weight(q: Tensor, k: Tensor, weight: Tensor) -> None:
    check_same_width("trilinear", q, k)
    if weight.shape != (3 * q.shape[-1],):
        raise ValueError(f"trilinear: weight must have shape (3 D,) = ({3 * q.shape[-1]},) for q {tuple(q.shape)} "
                         f"and k {tuple(k.shape)}, got weight {tuple(weight.shape)}")


def trilinear(q: Tensor, k: Tensor, *, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """:math:`w^\\top[q; k; q \\circ k] (+ b)` for every pair: ``q (..., L, D)``, ``k (..., S, D)`` -> ``(..., L, S)``.

    Args:
        weight: ``(3 D,)``, :math:`[w_q; w_k; w_m]`.
        bias: optional scalar added to every score (a constant shift: softmaxes ignore it).
    """
    _check_weight(q, k, weight)
    w_q, w_k, w_m = weight.chunk(3)
    s = torch.einsum("...ld,...sd->...ls", q * w_m, k)  # (..., L, S)
    s = s + (q @ w_q)[..., :, None] + (k @ w_k)[..., None, :]  # (..., L, 1) + (..., 1, S)
    return s if bias is None else s + bias


class Trilinear(nn.Module):
    """The trilinear score :math:`w^\\top[q; k; q \\circ k]` with learned ``w (3 D,)`` (BiDAF eq. 1; QANet §2.2).

    Args:
        dim: ``D``, the width of queries and keys.
        bias: learn a scalar bias (a constant shift of all scores; off by default).
    """

    kind = "dot"

    def __init__(self, dim: int, *, bias: bool = False, _weight: nn.Parameter | None = None,
                 _bias: nn.Parameter | None = None, _swap: bool = False) -> None:
        super().__init__()
        D = check_positive_int("dim", dim)
        if _weight is None:
            _weight = nn.Parameter(torch.empty(3 * D))
            nn.init.uniform_(_weight, -1 / math.sqrt(D), 1 / math.sqrt(D))
            _bias = nn.Parameter(torch.zeros(())) if bias else None
        self.weight = _weight
        self.bias = _bias
        self.swap = _swap

    def _weights(self) -> Tensor:
        """``w`` in this module's (q, k) order: the swapped view exchanges the first two blocks."""
        if not self.swap:
            return self.weight
        w_q, w_k, w_m = self.weight.chunk(3)
        return torch.cat((w_k, w_q, w_m))

    def swapped(self) -> Trilinear:
        """The same score with queries and keys exchanged, sharing this module's parameters."""
        return Trilinear(self.weight.shape[0] // 3, _weight=self.weight, _bias=self.bias, _swap=not self.swap)

    def dot_features(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, float]:
        w = self._weights()
        _check_weight(q, k, w)
        w_q, w_k, w_m = w.chunk(3)
        ones_q = torch.ones_like(q[..., :1])  # (..., L, 1)
        ones_k = torch.ones_like(k[..., :1])  # (..., S, 1)
        qf = torch.cat((q * w_m, (q @ w_q)[..., None], ones_q), dim=-1)  # (..., L, D + 2)
        kb = k @ w_k if self.bias is None else k @ w_k + self.bias  # the bias rides on the key side
        kf = torch.cat((k, ones_k, kb[..., None]), dim=-1)  # (..., S, D + 2)
        return qf, kf, 1.0

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return trilinear(q, k, weight=self._weights(), bias=self.bias)

    def extra_repr(self) -> str:
        return f"dim={self.weight.shape[0] // 3}, bias={self.bias is not None}, swapped={self.swap}"
