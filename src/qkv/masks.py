"""Boolean attention masks, lazily described.

Convention (ARCHITECTURE.md): a mask is boolean and **True means "may attend"**.
A mask is broadcastable to ``(B, H, L, S)``: B batch, H heads, L queries (target),
S keys (source).

A :class:`Mask` here is a *description* of a mask, not a tensor: it can produce any
rectangular tile ``[q0, q1) x [k0, k1)`` on demand (:meth:`Mask.tile`) and can say which
keys a block of queries may possibly reach (:meth:`Mask.kv_bounds`). The naive path of
:func:`qkv.attend` materialises it once; the tiled kernel evaluates it tile by tile and
skips the tiles it rules out, so causal and windowed attention never build an
``(L, S)`` tensor. Plain boolean tensors are accepted everywhere a mask is, and
:func:`as_mask` wraps one into a :class:`Mask`.

The helpers follow the source notes: padding from sequence lengths, causal masking for
decoders (seed 004, Transformer decoder), and truncated self-attention that attends only
to a neighbourhood ``|i - j| <= w`` (seed 003, speech).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "Mask",
    "MaskLike",
    "TensorMask",
    "and_",
    "as_mask",
    "causal",
    "materialize",
    "or_",
    "padding",
    "window",
]


class Mask:
    """A lazily evaluated boolean mask (True = may attend), broadcastable to ``(B, H, L, S)``.

    Subclasses implement :meth:`tile`; they may refine :meth:`kv_bounds` so that kernels can
    skip key blocks that no query of a block can attend to. Masks combine with ``&`` and ``|``.
    """

    def tile(self, q0: int, q1: int, k0: int, k1: int, *, L: int, S: int, device: torch.device) -> Tensor:
        """The mask restricted to queries ``[q0, q1)`` and keys ``[k0, k1)``.

        Returns a bool tensor broadcastable to ``(B, H, q1 - q0, k1 - k0)``.
        """
        raise NotImplementedError

    def kv_bounds(self, q0: int, q1: int, *, L: int, S: int) -> tuple[int, int]:
        """A half-open key range ``[lo, hi)`` outside of which queries ``[q0, q1)`` see nothing.

        Conservative: returning ``(0, S)`` is always correct.
        """
        return 0, S

    def materialize(self, L: int, S: int, *, device: torch.device | str | None = None) -> Tensor:
        """The whole mask as a bool tensor broadcastable to ``(B, H, L, S)``."""
        return self.tile(0, L, 0, S, L=L, S=S, device=torch.device(device or "cpu"))

    def __and__(self, other: MaskLike) -> Mask:
        return _all_of(self, as_mask(other))

    def __rand__(self, other: MaskLike) -> Mask:
        return _all_of(as_mask(other), self)

    def __or__(self, other: MaskLike) -> Mask:
        return _any_of(self, as_mask(other))

    def __ror__(self, other: MaskLike) -> Mask:
        return _any_of(as_mask(other), self)


MaskLike = Mask | Tensor


def _indices(q0: int, q1: int, k0: int, k1: int, device: torch.device) -> tuple[Tensor, Tensor]:
    i = torch.arange(q0, q1, device=device).unsqueeze(-1)  # (Lt, 1)
    j = torch.arange(k0, k1, device=device).unsqueeze(0)  # (1, St)
    return i, j


ALIGNS = ("top_left", "bottom_right")


def check_align(owner: str, align: str) -> str:
    """Validate an ``align`` argument (``"top_left"`` or ``"bottom_right"``), naming its owner."""
    if align not in ALIGNS:
        raise ValueError(f"{owner}: align must be 'top_left' or 'bottom_right', got {align!r}")
    return align


def align_offset(align: str, L: int, S: int) -> int:
    """Key index aligned with query 0: 0 for ``"top_left"``, ``S - L`` for ``"bottom_right"``."""
    return 0 if align == "top_left" else S - L


class _Causal(Mask):
    def __init__(self, align: str) -> None:
        self.align = check_align("causal", align)

    def offset(self, L: int, S: int) -> int:
        return align_offset(self.align, L, S)

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        i, j = _indices(q0, q1, k0, k1, device)
        return j <= i + self.offset(L, S)  # (Lt, St)

    def kv_bounds(self, q0, q1, *, L, S):
        return 0, max(0, min(S, q1 - 1 + self.offset(L, S) + 1))

    def __repr__(self) -> str:
        return f"causal(align={self.align!r})"


class _Window(Mask):
    def __init__(self, width: int, align: str) -> None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 0:
            raise ValueError(f"window: width must be an int >= 0, got {width!r}")
        self.width = width
        self.align = check_align("window", align)

    def offset(self, L: int, S: int) -> int:
        return align_offset(self.align, L, S)

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        i, j = _indices(q0, q1, k0, k1, device)
        return (j - (i + self.offset(L, S))).abs() <= self.width  # (Lt, St)

    def kv_bounds(self, q0, q1, *, L, S):
        off = self.offset(L, S)
        lo = min(S, max(0, q0 + off - self.width))
        hi = max(lo, min(S, q1 - 1 + off + self.width + 1))
        return lo, hi

    def __repr__(self) -> str:
        return f"window({self.width}, align={self.align!r})"


class _Padding(Mask):
    def __init__(self, lengths: Tensor) -> None:
        if not isinstance(lengths, Tensor) or lengths.dim() != 1:
            got = tuple(lengths.shape) if isinstance(lengths, Tensor) else type(lengths).__name__
            raise ValueError(f"padding: lengths must be a 1-D tensor of shape (B,), got {got}")
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.is_complex():
            raise TypeError(f"padding: lengths must be an integer tensor, got dtype {lengths.dtype}")
        if (lengths < 0).any():
            raise ValueError(f"padding: lengths must be >= 0, got {lengths.tolist()}")
        self.lengths = lengths

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        j = torch.arange(k0, k1, device=device)  # (St,)
        lengths = self.lengths.to(device)[:, None, None, None]  # (B, 1, 1, 1)
        return j < lengths  # (B, 1, 1, St)

    def kv_bounds(self, q0, q1, *, L, S):
        return 0, min(S, int(self.lengths.max().item()) if self.lengths.numel() else 0)

    def __repr__(self) -> str:
        return f"padding(lengths={self.lengths.tolist()})"


class TensorMask(Mask):
    """A bool tensor broadcastable to ``(B, H, L, S)``, seen as a :class:`Mask`."""

    def __init__(self, tensor: Tensor) -> None:
        if not isinstance(tensor, Tensor):
            raise TypeError(f"mask must be a bool tensor or a qkv.masks.Mask, got {type(tensor).__name__}")
        if tensor.dtype != torch.bool:
            raise TypeError(
                f"mask must be a bool tensor (True = may attend), got dtype {tensor.dtype}; "
                "pass an additive float mask as `bias=` instead"
            )
        if tensor.dim() == 0:
            raise ValueError("mask must have at least 1 dim (S,), got a 0-dim tensor")
        self.tensor = tensor if tensor.dim() >= 2 else tensor.unsqueeze(0)  # (S,) -> (1, S)

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        t = self.tensor.to(device)
        rows = slice(q0, q1) if t.shape[-2] != 1 else slice(None)
        cols = slice(k0, k1) if t.shape[-1] != 1 else slice(None)
        return t[..., rows, cols]

    def materialize(self, L, S, *, device=None):
        return self.tensor if device is None else self.tensor.to(device)

    def __repr__(self) -> str:
        return f"TensorMask(shape={tuple(self.tensor.shape)})"


class _Combined(Mask):
    """Intersection (``all_=True``) or union (``all_=False``) of masks."""

    def __init__(self, parts: tuple[Mask, ...], *, all_: bool) -> None:
        self.parts, self.all_ = parts, all_

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        out = self.parts[0].tile(q0, q1, k0, k1, L=L, S=S, device=device)
        for p in self.parts[1:]:
            t = p.tile(q0, q1, k0, k1, L=L, S=S, device=device)
            out = out & t if self.all_ else out | t
        return out

    def kv_bounds(self, q0, q1, *, L, S):
        los, his = zip(*(p.kv_bounds(q0, q1, L=L, S=S) for p in self.parts), strict=True)
        if self.all_:
            lo = max(los)
            return lo, max(lo, min(his))
        return min(los), max(his)

    def __repr__(self) -> str:
        return "(" + (" & " if self.all_ else " | ").join(map(repr, self.parts)) + ")"


def _all_of(*parts: Mask) -> Mask:
    return _Combined(parts, all_=True)


def _any_of(*parts: Mask) -> Mask:
    return _Combined(parts, all_=False)


def as_mask(mask: MaskLike) -> Mask:
    """Wrap a bool tensor as a :class:`Mask`; return a :class:`Mask` unchanged."""
    return mask if isinstance(mask, Mask) else TensorMask(mask)


def materialize(mask: MaskLike, L: int, S: int, *, device: torch.device | str | None = None) -> Tensor:
    """A mask (tensor or :class:`Mask`) as a bool tensor broadcastable to ``(B, H, L, S)``."""
    return as_mask(mask).materialize(L, S, device=device)


def causal(*, align: str = "top_left") -> Mask:
    """Causal mask for decoders: query ``i`` may attend to key ``j`` iff ``j <= i + offset``.

    Args:
        align: ``"top_left"`` (offset 0, as ``torch.nn.functional.scaled_dot_product_attention``'s
            ``is_causal``) or ``"bottom_right"`` (offset ``S - L``: the last query sees every key,
            as when L new queries follow a cache of S - L keys).
    """
    return _Causal(align)


def window(width: int, *, align: str = "top_left") -> Mask:
    """Truncated (banded) attention: query ``i`` attends to key ``j`` iff ``|j - (i + offset)| <= width``.

    Seed 003: self-attention over speech frames attends only to a neighbourhood. ``align`` as in
    :func:`causal`. Combine with :func:`causal` (``window(w) & causal()``) for a sliding causal window.
    """
    return _Window(width, align)


def padding(lengths: Tensor) -> Mask:
    """Key padding from lengths: in batch row ``b`` only keys ``j < lengths[b]`` may be attended.

    Args:
        lengths: ``(B,)`` integer tensor of valid key counts.

    The mask broadcasts as ``(B, 1, 1, S)``.
    """
    return _Padding(lengths)


def and_(*masks: MaskLike) -> Mask:
    """Intersection: attend where every mask allows it."""
    if not masks:
        raise ValueError("and_: needs at least one mask")
    return _all_of(*map(as_mask, masks))


def or_(*masks: MaskLike) -> Mask:
    """Union: attend where any mask allows it."""
    if not masks:
        raise ValueError("or_: needs at least one mask")
    return _any_of(*map(as_mask, masks))
