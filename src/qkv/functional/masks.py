"""Boolean attention masks, lazily described.

Convention (ARCHITECTURE.md): a mask is boolean and **True means "may attend"**, broadcastable
to ``(B, H, L, S)``: B batch, H heads, L queries (target), S keys (source). Every layer and
:func:`qkv.attend` read a mask the same way; no layer reinterprets a mask's rank.

A :class:`Mask` is a :class:`~qkv.functional.lazy.Lazy` description, not a tensor: it produces
any tile ``[q0, q1) x [k0, k1)`` on demand and says which keys a block of queries may possibly
reach (:meth:`Mask.kv_bounds`), so kernels skip the tiles it rules out and causal or windowed
attention never builds an ``(L, S)`` tensor. Plain bool tensors are accepted wherever a mask
is; :func:`as_mask` wraps one.

Builders, combined with ``&`` and ``|`` (or :func:`and_`/:func:`or_`):

* :func:`key_padding` — from a ``(B, S)`` bool tensor (True = a real key), as ``(B, 1, 1, S)``;
* :func:`padding` — from ``(B,)`` lengths, as ``(B, 1, 1, S)``;
* :func:`causal` — decoders (seed 004, Transformer decoder); **bottom-right** aligned by default,
  so ``L`` new queries after a cache of ``S - L`` keys see the cache;
* :func:`window` — truncated self-attention over a neighbourhood ``|i - j| <= w`` (seed 003, speech).
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor

from qkv.functional.lazy import Combination, Lazy, TensorLazy

__all__ = [
    "ALIGNS",
    "Mask",
    "MaskLike",
    "TensorMask",
    "align_offset",
    "and_",
    "as_mask",
    "causal",
    "check_align",
    "graph",
    "key_padding",
    "materialize",
    "or_",
    "padding",
    "window",
]


class Mask(Lazy):
    """A lazily evaluated boolean mask (True = may attend), broadcastable to ``(B, H, L, S)``.

    Subclasses implement :meth:`tile` (a bool tensor); they may refine :meth:`kv_bounds` so that
    kernels skip key blocks, :meth:`depends` and :meth:`flex` (a ``mask_mod``).
    """

    def kv_bounds(self, q0: int, q1: int, *, L: int, S: int) -> tuple[int, int]:
        """A half-open key range ``[lo, hi)`` outside of which queries ``[q0, q1)`` see nothing.

        Conservative: returning ``(0, S)`` is always correct.
        """
        return 0, S

    def is_causal(self, L: int, S: int) -> bool:
        """Whether this is exactly ``scaled_dot_product_attention``'s ``is_causal`` mask (top-left) at ``(L, S)``."""
        return False

    def allows_all(self, L: int, S: int) -> bool:
        """Whether every query may provably attend to every key at ``(L, S)`` (then the mask can be dropped).

        Conservative: returning ``False`` is always correct (a decoding step under ``causal()`` says True).
        """
        return False

    def __and__(self, other: MaskLike) -> Mask:
        return AllOf(self, as_mask(other))

    def __rand__(self, other: MaskLike) -> Mask:
        return AllOf(as_mask(other), self)

    def __or__(self, other: MaskLike) -> Mask:
        return AnyOf(self, as_mask(other))

    def __ror__(self, other: MaskLike) -> Mask:
        return AnyOf(as_mask(other), self)


MaskLike = Mask | Tensor

ALIGNS = ("top_left", "bottom_right")


def check_align(owner: str, align: str) -> str:
    """Validate an ``align`` argument (``"top_left"`` or ``"bottom_right"``), naming its owner."""
    if align not in ALIGNS:
        raise ValueError(f"{owner}: align must be 'top_left' or 'bottom_right', got {align!r}")
    return align


def align_offset(align: str, L: int, S: int) -> int:
    """Key index aligned with query 0: 0 for ``"top_left"``, ``S - L`` for ``"bottom_right"``."""
    return 0 if align == "top_left" else S - L


def relative_position(q0: int, q1: int, k0: int, k1: int, offset: int, device: torch.device) -> Tensor:
    """``j - (i + offset)`` for queries ``[q0, q1)`` and keys ``[k0, k1)``: ``(Tq, Tk)``."""
    i = torch.arange(q0, q1, device=device).unsqueeze(-1)  # (Tq, 1)
    j = torch.arange(k0, k1, device=device).unsqueeze(0)  # (1, Tk)
    return j - (i + offset)


class Causal(Mask):
    """Query ``i`` may attend to key ``j`` iff ``j <= i + offset`` (see :func:`causal`)."""

    def __init__(self, align: str) -> None:
        self.align = check_align("causal", align)

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        return relative_position(q0, q1, k0, k1, align_offset(self.align, L, S), device) <= 0  # (Tq, Tk)

    def kv_bounds(self, q0, q1, *, L, S):
        return 0, max(0, min(S, q1 + align_offset(self.align, L, S)))

    def is_causal(self, L, S):
        return align_offset(self.align, L, S) == 0 and L <= S

    def allows_all(self, L, S):
        return align_offset(self.align, L, S) >= S - 1  # query 0 sees the last key

    def depends(self) -> tuple[bool, bool]:
        return False, False

    def flex(self, *, B, H, L, S, device):
        off = align_offset(self.align, L, S)
        return lambda b, h, q, kv: kv <= q + off

    def __repr__(self) -> str:
        return f"causal(align={self.align!r})"


class Window(Mask):
    """Query ``i`` may attend to key ``j`` iff ``|j - (i + offset)| <= width`` (see :func:`window`)."""

    def __init__(self, width: int, align: str) -> None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 0:
            raise ValueError(f"window: width must be an int >= 0, got {width!r}")
        self.width = width
        self.align = check_align("window", align)

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        off = align_offset(self.align, L, S)
        return relative_position(q0, q1, k0, k1, off, device).abs() <= self.width  # (Tq, Tk)

    def kv_bounds(self, q0, q1, *, L, S):
        off = align_offset(self.align, L, S)
        lo = min(S, max(0, q0 + off - self.width))
        return lo, max(lo, min(S, q1 + off + self.width))

    def allows_all(self, L, S):
        off = align_offset(self.align, L, S)
        return max(S - 1 - off, off + L - 1) <= self.width  # the farthest (query, key) pairs are within reach

    def depends(self) -> tuple[bool, bool]:
        return False, False

    def flex(self, *, B, H, L, S, device):
        off, w = align_offset(self.align, L, S), self.width
        return lambda b, h, q, kv: (kv - (q + off)).abs() <= w

    def __repr__(self) -> str:
        return f"window({self.width}, align={self.align!r})"


class Padding(Mask):
    """Key padding from lengths: in batch row ``b`` only keys ``j < lengths[b]``; ``(B, 1, 1, S)``."""

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
        j = torch.arange(k0, k1, device=device)  # (Tk,)
        return j < self.lengths.to(device)[:, None, None, None]  # (B, 1, 1, Tk)

    def kv_bounds(self, q0, q1, *, L, S):
        return 0, min(S, int(self.lengths.max().item()) if self.lengths.numel() else 0)

    def depends(self) -> tuple[bool, bool]:
        return self.lengths.numel() > 1, False

    def flex(self, *, B, H, L, S, device):
        lengths = self.lengths.to(device).expand(B).contiguous()  # a (1,) length serves every batch row
        return lambda b, h, q, kv: kv < lengths[b]

    def shape(self, L, S, *, device):
        return (self.lengths.shape[0], 1, 1, S)

    def __repr__(self) -> str:
        return f"padding(lengths of shape {tuple(self.lengths.shape)})"


class TensorMask(TensorLazy, Mask):
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
        super().__init__(tensor)


class AllOf(Combination, Mask):
    """Intersection: attend where every part allows it."""

    op, symbol = operator.and_, "&"

    def kv_bounds(self, q0, q1, *, L, S):
        los, his = zip(*(p.kv_bounds(q0, q1, L=L, S=S) for p in self.parts), strict=True)
        lo = max(los)
        return lo, max(lo, min(his))

    def allows_all(self, L, S):
        return all(p.allows_all(L, S) for p in self.parts)


class AnyOf(Combination, Mask):
    """Union: attend where any part allows it."""

    op, symbol = operator.or_, "|"

    def kv_bounds(self, q0, q1, *, L, S):
        los, his = zip(*(p.kv_bounds(q0, q1, L=L, S=S) for p in self.parts), strict=True)
        return min(los), max(his)

    def allows_all(self, L, S):
        return any(p.allows_all(L, S) for p in self.parts)


def as_mask(mask: MaskLike) -> Mask:
    """Wrap a bool tensor as a :class:`Mask`; return a :class:`Mask` unchanged."""
    return mask if isinstance(mask, Mask) else TensorMask(mask)


def materialize(mask: MaskLike, L: int, S: int, *, device: torch.device | str | None = None) -> Tensor:
    """A mask (tensor or :class:`Mask`) as a bool tensor broadcastable to ``(B, H, L, S)``."""
    return as_mask(mask).materialize(L, S, device=device)


def causal(*, align: str = "bottom_right") -> Mask:
    """Causal mask for decoders: query ``i`` may attend to key ``j`` iff ``j <= i + offset``.

    Args:
        align: ``"bottom_right"`` (default; offset ``S - L``: the last query sees every key, as
            when ``L`` new queries follow a cache of ``S - L`` keys — cached decoding works) or
            ``"top_left"`` (offset 0, as ``scaled_dot_product_attention``'s ``is_causal``). The
            two agree when ``L = S``.
    """
    return Causal(align)


def window(width: int, *, align: str = "bottom_right") -> Mask:
    """Truncated (banded) attention: query ``i`` attends to key ``j`` iff ``|j - (i + offset)| <= width``.

    Seed 003: self-attention over speech frames attends only to a neighbourhood. ``align`` as in
    :func:`causal`. Combine with :func:`causal` (``window(w) & causal()``) for a sliding causal window.
    """
    return Window(width, align)


def padding(lengths: Tensor) -> Mask:
    """Key padding from lengths: in batch row ``b`` only keys ``j < lengths[b]`` may be attended.

    Args:
        lengths: ``(B,)`` integer tensor of valid key counts (``(1,)`` broadcasts over the batch).

    The mask broadcasts as ``(B, 1, 1, S)``.
    """
    return Padding(lengths)


def key_padding(keep: Tensor) -> Mask:
    """Key padding from a ``(B, S)`` bool tensor, True = a real key (not padding); ``(B, 1, 1, S)``."""
    if not isinstance(keep, Tensor) or keep.dtype != torch.bool or keep.dim() != 2:
        got = (keep.dtype, tuple(keep.shape)) if isinstance(keep, Tensor) else type(keep).__name__
        raise ValueError(f"key_padding: keep must be a bool tensor of shape (B, S), got {got}")
    return TensorMask(keep[:, None, None, :])  # (B, 1, 1, S)


def and_(*masks: MaskLike) -> Mask:
    """Intersection: attend where every mask allows it."""
    if not masks:
        raise ValueError("and_: needs at least one mask")
    return AllOf(*map(as_mask, masks))


def graph(
    edge_index: Tensor, *, num_nodes: int | tuple[int, int], self_loops: bool = True,
    flow: str = "source_to_target",
) -> Mask:
    """Self-attention over graph nodes along edges: node ``v`` attends to ``u`` iff there is an edge ``u -> v``.

    A lazy :class:`qkv.functional.graph.Graph` (CSR rows, ``O(N + E)``): the tiled kernel builds only
    tiles, never ``(N, N)``. ``edge_index`` is ``(2, E)`` (source, target), PyTorch Geometric's layout;
    ``self_loops`` lets every node see itself (GAT, Veličković et al. 2018); ``flow="target_to_source"``
    reads the first row as the query. ``num_nodes`` is ``N`` or ``(Nq, Nk)`` for a bipartite graph.
    """
    from qkv.functional.graph import Graph  # graph.py subclasses Mask: imported here, not at the top

    return Graph(edge_index, num_nodes=num_nodes, self_loops=self_loops, flow=flow)


def or_(*masks: MaskLike) -> Mask:
    """Union: attend where any mask allows it."""
    if not masks:
        raise ValueError("or_: needs at least one mask")
    return AnyOf(*map(as_mask, masks))
