"""Additive score biases, lazily described: ALiBi, relative-position bias, tensors.

Shape legend: ``B`` batch, ``H`` heads, ``L`` queries, ``S`` keys; a bias is broadcastable to
``(B, H, L, S)`` and is *added* to the scores before masking and normalisation
(``-inf`` forbids a key, like a mask).

Like :mod:`qkv.masks`, a :class:`Bias` is a description, not a tensor: it produces any tile
``[q0, q1) x [k0, k1)`` on demand (:meth:`Bias.tile`), so the tiled kernel of
:mod:`qkv.kernels.tiled` never builds an ``(L, S)`` bias. The naive kernel materialises it.
Learnable biases list their tensors in :meth:`Bias.parameters`; kernels pass them to autograd.

* :func:`alibi` — Press, Smith & Lewis 2022 ("Train short, test long"), §3: the score of query
  ``i`` and key ``j`` in head ``h`` gets :math:`-m_h\\,|i - j|`, with geometric slopes
  :math:`m_h = 2^{-8h/H}`.
* :func:`relative` — clipped relative-position bias (Shaw, Uszkoreit & Vaswani 2018, eq. 3–4
  as a scalar per head, the form used by T5 without buckets): :math:`b_{h,ij} = w_{h,\\,
  \\mathrm{clip}(j - i, -R, R)}` with a learned table ``w (H, 2R + 1)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qkv.masks import align_offset, check_align

__all__ = ["Bias", "RelativeBias", "TensorBias", "alibi", "alibi_slopes", "as_bias", "relative"]


class Bias:
    """A lazily evaluated additive bias, broadcastable to ``(B, H, L, S)``.

    Subclasses implement :meth:`tile`; biases add with ``+``.
    """

    def tile(self, q0: int, q1: int, k0: int, k1: int, *, L: int, S: int, device: torch.device) -> Tensor:
        """The bias on queries ``[q0, q1)`` and keys ``[k0, k1)``, broadcastable to ``(B, H, q1-q0, k1-k0)``."""
        raise NotImplementedError

    def parameters(self) -> list[Tensor]:
        """Tensors the bias depends on differentiably (learned tables); gradients flow to them."""
        return []

    def materialize(self, L: int, S: int, *, device: torch.device | str | None = None) -> Tensor:
        """The whole bias as a float tensor broadcastable to ``(B, H, L, S)``."""
        return self.tile(0, L, 0, S, L=L, S=S, device=torch.device(device or "cpu"))

    def __add__(self, other: Bias | Tensor) -> Bias:
        return _Sum(self, as_bias(other))

    def __radd__(self, other: Bias | Tensor) -> Bias:
        return _Sum(as_bias(other), self)


class TensorBias(Bias):
    """A float tensor broadcastable to ``(B, H, L, S)``, seen as a :class:`Bias`."""

    def __init__(self, tensor: Tensor) -> None:
        if not isinstance(tensor, Tensor) or not tensor.dtype.is_floating_point:
            got = tensor.dtype if isinstance(tensor, Tensor) else type(tensor).__name__
            raise TypeError(f"bias must be a floating-point tensor (additive scores), got {got}")
        self.tensor = tensor

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        t = self.tensor
        rows = slice(q0, q1) if t.dim() >= 2 and t.shape[-2] != 1 else slice(None)
        cols = slice(k0, k1) if t.shape[-1] != 1 else slice(None)
        if t.dim() < 2:
            return t[..., cols].to(device)
        return t[..., rows, cols].to(device)

    def materialize(self, L, S, *, device=None):
        return self.tensor if device is None else self.tensor.to(device)

    def parameters(self) -> list[Tensor]:
        return [self.tensor] if self.tensor.requires_grad else []

    def __repr__(self) -> str:
        return f"TensorBias(shape={tuple(self.tensor.shape)})"


def _distance(q0: int, q1: int, k0: int, k1: int, offset: int, device: torch.device) -> Tensor:
    i = torch.arange(q0, q1, device=device).unsqueeze(-1)  # (Lt, 1)
    j = torch.arange(k0, k1, device=device).unsqueeze(0)  # (1, St)
    return j - (i + offset)  # (Lt, St): key position relative to the query's


def alibi_slopes(num_heads: int) -> Tensor:
    """ALiBi's head slopes :math:`m_h = 2^{-8h/H}`, ``h = 1..H`` (Press et al. 2022, §3)."""
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"alibi_slopes: num_heads must be a positive int, got {num_heads!r}")
    h = torch.arange(1, num_heads + 1, dtype=torch.float64)
    return torch.pow(2.0, -8.0 * h / num_heads).float()  # (H,)


class _Alibi(Bias):
    def __init__(self, slopes: Tensor, align: str) -> None:
        if not isinstance(slopes, Tensor) or slopes.dim() != 1:
            got = tuple(slopes.shape) if isinstance(slopes, Tensor) else type(slopes).__name__
            raise ValueError(f"alibi: slopes must be a 1-D tensor of shape (H,), got {got}")
        self.slopes = slopes
        self.align = check_align("alibi", align)

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        dist = _distance(q0, q1, k0, k1, align_offset(self.align, L, S), device).abs()  # (Lt, St)
        slopes = self.slopes.to(device)[:, None, None]  # (H, 1, 1)
        return -slopes * dist.to(slopes.dtype)  # (H, Lt, St)

    def parameters(self) -> list[Tensor]:
        return [self.slopes] if self.slopes.requires_grad else []

    def __repr__(self) -> str:
        return f"alibi(H={self.slopes.numel()}, align={self.align!r})"


def alibi(num_heads_or_slopes: int | Tensor, *, align: str = "top_left") -> Bias:
    """ALiBi (Press et al. 2022): :math:`b_{h,ij} = -m_h\\,|j - (i + \\text{offset})|`, shape ``(H, L, S)``.

    With a causal mask this is the paper's :math:`m_h (j - i)` for :math:`j \\le i`.

    Args:
        num_heads_or_slopes: ``H`` (geometric slopes, :func:`alibi_slopes`) or a ``(H,)`` tensor.
        align: ``"top_left"`` or ``"bottom_right"`` (offset ``S - L``), as in :func:`qkv.masks.causal`.
    """
    slopes = num_heads_or_slopes
    if not isinstance(slopes, Tensor):
        slopes = alibi_slopes(slopes)
    return _Alibi(slopes, align)


class RelativeBias(Bias):
    """Clipped relative-position bias :math:`b_{h,ij} = w_{h,\\mathrm{clip}(j-i,-R,R)+R}`, ``(H, L, S)``.

    Shaw et al. 2018 (eq. 3–4, as one scalar per head and clipped distance). ``table`` is
    ``(H, 2R + 1)``; it may be an ``nn.Parameter`` (gradients reach it through every kernel).
    """

    def __init__(self, table: Tensor, *, max_distance: int, align: str = "top_left") -> None:
        if isinstance(max_distance, bool) or not isinstance(max_distance, int) or max_distance < 0:
            raise ValueError(f"relative: max_distance must be an int >= 0, got {max_distance!r}")
        if not isinstance(table, Tensor) or table.dim() != 2 or table.shape[-1] != 2 * max_distance + 1:
            got = tuple(table.shape) if isinstance(table, Tensor) else type(table).__name__
            raise ValueError(
                f"relative: table must have shape (H, 2 * max_distance + 1) = (H, {2 * max_distance + 1}), got {got}"
            )
        self.table = table
        self.max_distance = max_distance
        self.align = check_align("relative", align)

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        R = self.max_distance
        idx = _distance(q0, q1, k0, k1, align_offset(self.align, L, S), device).clamp(-R, R) + R  # (Lt, St)
        return self.table.to(device)[:, idx]  # (H, Lt, St)

    def parameters(self) -> list[Tensor]:
        return [self.table] if self.table.requires_grad else []

    def __repr__(self) -> str:
        return f"relative(H={self.table.shape[0]}, max_distance={self.max_distance})"


def relative(table: Tensor | int, *, max_distance: int, align: str = "top_left") -> RelativeBias:
    """A clipped relative-position bias; ``table`` is ``(H, 2R+1)`` or ``H`` (a zero-initialised Parameter)."""
    if not isinstance(table, Tensor):
        table = nn.Parameter(torch.zeros(table, 2 * max_distance + 1))
    return RelativeBias(table, max_distance=max_distance, align=align)


class _Sum(Bias):
    def __init__(self, *parts: Bias) -> None:
        self.parts = parts

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        out = self.parts[0].tile(q0, q1, k0, k1, L=L, S=S, device=device)
        for p in self.parts[1:]:
            out = out + p.tile(q0, q1, k0, k1, L=L, S=S, device=device)
        return out

    def parameters(self) -> list[Tensor]:
        return [t for p in self.parts for t in p.parameters()]

    def __repr__(self) -> str:
        return " + ".join(map(repr, self.parts))


def as_bias(bias: Bias | Tensor) -> Bias:
    """Wrap a float tensor as a :class:`Bias`; return a :class:`Bias` unchanged."""
    return bias if isinstance(bias, Bias) else TensorBias(bias)
