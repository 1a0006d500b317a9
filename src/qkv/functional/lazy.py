"""Lazy fields over the ``(B, H, L, S)`` score plane: the machinery masks, biases and weight modifiers share.

Shape legend: ``B`` batch, ``H`` heads, ``L`` queries, ``S`` keys; ``Tq``/``Tk`` a tile's query and
key extents.

A :class:`Lazy` is a *description* of a tensor broadcastable to ``(B, H, L, S)``, not the
tensor. It tells a kernel everything the kernel needs, so no kernel inspects its class:

* :meth:`Lazy.tile` — the values on queries ``[q0, q1)`` and keys ``[k0, k1)`` (the naive kernel
  asks for the whole plane, the tiled kernel for one tile at a time);
* :meth:`Lazy.depends` — whether it varies along the batch and the head dims (FlexAttention
  builds one block mask for all batches/heads when it does not);
* :meth:`Lazy.flex` — its FlexAttention form, a function of the index tensors
  ``(b, h, q_idx, kv_idx)``, or ``None`` when it has none;
* :meth:`Lazy.parameters` — the tensors it depends on differentiably;
* :meth:`Lazy.check` — validation against the scores' shape, with the user's own shapes in the error.

:class:`TensorLazy` (a plain tensor seen lazily) and :class:`Combination` (an elementwise
reduction of parts: ``&``/``|`` of masks, ``+`` of biases) are the shared building blocks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["Combination", "FlexFn", "Lazy", "TensorLazy", "check_broadcast", "index_4d"]

#: A FlexAttention-style function of the index tensors ``(b, h, q_idx, kv_idx)``.
FlexFn = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def check_broadcast(name: str, shape: tuple[int, ...], target: tuple[int, ...], *, what: str = "") -> None:
    """Raise ``ValueError`` unless ``shape`` broadcasts to ``target`` (the scores' shape)."""
    try:
        ok = torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        ok = False
    if not ok:
        desc = f" {what}" if what else ""
        raise ValueError(
            f"{name}{desc} of shape {shape} does not broadcast to the scores' shape {target} (..., L, S)"
        )


class Lazy:
    """A lazily evaluated field broadcastable to ``(B, H, L, S)``; subclasses implement :meth:`tile`."""

    def tile(self, q0: int, q1: int, k0: int, k1: int, *, L: int, S: int, device: torch.device) -> Tensor:
        """The field on queries ``[q0, q1)`` and keys ``[k0, k1)``, broadcastable to ``(B, H, Tq, Tk)``."""
        raise NotImplementedError

    def materialize(self, L: int, S: int, *, device: torch.device | str | None = None) -> Tensor:
        """The whole field as a tensor broadcastable to ``(B, H, L, S)``."""
        return self.tile(0, L, 0, S, L=L, S=S, device=torch.device(device or "cpu"))

    def depends(self) -> tuple[bool, bool]:
        """``(on_batch, on_head)``: whether the field varies along the batch / head dims (conservative)."""
        return True, True

    def flex(self, *, B: int, H: int, L: int, S: int, device: torch.device) -> FlexFn | None:
        """The field as a function of FlexAttention's index tensors ``(b, h, q_idx, kv_idx)``, or ``None``.

        Tensors it captures are moved to ``device``, and a size-1 batch or head dim is broadcast
        (expanded to ``B``/``H``, or read at index 0), so a compiled kernel never indexes past it.
        """
        return None

    def parameters(self) -> list[Tensor]:
        """Tensors the field depends on differentiably (learned tables); kernels pass them to autograd."""
        return []

    def shape(self, L: int, S: int, *, device: torch.device) -> tuple[int, ...]:
        """The field's broadcast shape ``(..., L, S)`` (probed on one element, never materialised)."""
        probe = self.tile(0, min(L, 1), 0, min(S, 1), L=L, S=S, device=device)
        return (*probe.shape[:-2], L, S)

    def check(self, name: str, target: tuple[int, ...], *, L: int, S: int, device: torch.device) -> None:
        """Raise ``ValueError`` naming ``name`` unless the field broadcasts to ``target`` ``(..., L, S)``."""
        check_broadcast(name, self.shape(L, S, device=device), target, what=repr(self))


def _at_least_2d(t: Tensor) -> Tensor:
    while t.dim() < 2:
        t = t.unsqueeze(0)  # (S,) -> (1, S); () -> (1, 1)
    return t


def index_4d(t: Tensor, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
    """Element ``[b, h, q, kv]`` of a tensor broadcastable to ``(B, H, L, S)`` (size-1 dims read index 0)."""
    t = t.reshape((1,) * max(0, 4 - t.dim()) + tuple(t.shape))  # (B|1, H|1, L|1, S|1)
    zero = torch.zeros_like(q)
    idx = (b, h, q, kv)
    return t[tuple(zero if t.shape[i] == 1 else idx[i] for i in range(4))]


class TensorLazy(Lazy):
    """A tensor broadcastable to ``(B, H, L, S)``, seen lazily; the rank is normalised to at least 2.

    Attributes:
        tensor: the tensor with at least 2 dims (``(S,)`` becomes ``(1, S)``, a 0-dim ``(1, 1)``).
        given_shape: the shape the user passed, for error messages.
    """

    def __init__(self, tensor: Tensor) -> None:
        self.given_shape = tuple(tensor.shape)
        self.tensor = _at_least_2d(tensor)

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        t = self.tensor
        rows = slice(q0, q1) if t.shape[-2] != 1 else slice(None)
        cols = slice(k0, k1) if t.shape[-1] != 1 else slice(None)
        return t[..., rows, cols].to(device)

    def materialize(self, L, S, *, device=None):
        return self.tensor if device is None else self.tensor.to(device)

    def depends(self) -> tuple[bool, bool]:
        shape = (1,) * max(0, 4 - self.tensor.dim()) + tuple(self.tensor.shape)
        return shape[-4] > 1, shape[-3] > 1

    def flex(self, *, B, H, L, S, device):
        if self.tensor.dim() > 4:
            return None
        t = self.tensor.to(device)
        return lambda b, h, q, kv: index_4d(t, b, h, q, kv)

    def parameters(self) -> list[Tensor]:
        return [self.tensor] if self.tensor.requires_grad else []

    def shape(self, L, S, *, device):
        return self.given_shape

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.given_shape})"


class Combination(Lazy):
    """The elementwise reduction of parts by ``op`` (``&``/``|`` for masks, ``+`` for biases)."""

    op: Callable[[Tensor, Tensor], Tensor]
    symbol: str

    def __init__(self, *parts: Lazy) -> None:
        self.parts = parts

    def tile(self, q0, q1, k0, k1, *, L, S, device):
        return functools.reduce(self.op, (p.tile(q0, q1, k0, k1, L=L, S=S, device=device) for p in self.parts))

    def depends(self) -> tuple[bool, bool]:
        deps = [p.depends() for p in self.parts]
        return any(d[0] for d in deps), any(d[1] for d in deps)

    def flex(self, *, B, H, L, S, device):
        fns = [p.flex(B=B, H=H, L=L, S=S, device=device) for p in self.parts]
        if any(f is None for f in fns):
            return None
        op = self.op
        return lambda b, h, q, kv: functools.reduce(op, (f(b, h, q, kv) for f in fns))

    def parameters(self) -> list[Tensor]:
        return [t for p in self.parts for t in p.parameters()]

    def check(self, name, target, *, L, S, device):
        for p in self.parts:
            p.check(name, target, L=L, S=S, device=device)
        super().check(name, target, L=L, S=S, device=device)

    def __repr__(self) -> str:
        return "(" + f" {self.symbol} ".join(map(repr, self.parts)) + ")"
