"""The controller interface of the structured memories (stack, queue, set): an RNN that drives a memory.

Shape legend: ``B`` batch, ``T`` time steps, ``I`` input width, ``O`` output width, ``C`` controller
width (``controller_dim``), ``R`` width of the read vector the memory returns, ``P`` width of the interface vector the
controller emits (the memory's named parts, concatenated).

Grefenstette, Hermann, Suleyman and Blunsom 2015, "Learning to Transduce with Unbounded Memory", §3.4
(the controller, fig. 2): at step ``t`` the controller (an RNN: the NTM's LSTM cell or one-layer ``tanh``
feed-forward net, :func:`qkv.memory.ntm.controller.make_controller`, with the same ``controller`` and
``controller_dim`` arguments) reads the concatenation of the input :math:`i_t` and the previous
read vector :math:`r_{t-1}`, and from its output :math:`o'_t` emits the memory's interface — for the
stack: the push strength :math:`d_t = \\sigma(W_d o'_t + b_d)`, the pop strength
:math:`u_t = \\sigma(W_u o'_t + b_u)` and the value :math:`v_t = \\tanh(W_v o'_t + b_v)` — and the
output :math:`o_t`. The memory then updates and is read, giving :math:`r_t` for the next step.

One change from the paper, for faster training: the output layer sees :math:`r_{t-1}` directly as well
as :math:`o'_t`, ``y_t = W_y [o'_t; r_{t-1}] + b_y`` (in the paper :math:`r_{t-1}` reaches the output
only through the RNN). The previous read is what the memory offered *before* step ``t``'s operations,
so e.g. a reversal emits the top of the stack and pops it in the same step.

A memory subclasses :class:`ControlledMemory`, passes its interface (its parts and how each is squashed)
to the constructor and supplies :meth:`~ControlledMemory.initial_state` and :meth:`~ControlledMemory.step`.
``forward`` returns a :class:`MemoryOutput` (``output`` logits, ``trace`` when asked for), like the NTM's
``NTMOutput``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from qkv.functional.checks import check_positive_int
from qkv.memory.ntm.controller import make_controller

__all__ = ["ControlledMemory", "MemoryOutput", "squash"]

#: How an interface part is squashed: sigmoid (strengths, gates), tanh (values), identity, softplus + 1.
_SQUASH: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "identity": lambda x: x,
    "oneplus": lambda x: 1 + nn.functional.softplus(x),
}


def squash(kind: str, x: Tensor) -> Tensor:
    """Apply the named squashing (``"sigmoid"``, ``"tanh"``, ``"identity"``, ``"oneplus"``) to ``x``."""
    if kind not in _SQUASH:
        raise ValueError(f"squash kind must be one of {sorted(_SQUASH)}, got {kind!r}")
    return _SQUASH[kind](x)


@dataclass(frozen=True)
class MemoryOutput:
    """``output (B, T, O)`` logits and, when asked for, ``trace``: per-step tensors ``{name: (B, T) or
    (B, T, S_max)}`` (see :meth:`ControlledMemory.forward`); ``None`` otherwise."""

    output: Tensor
    trace: dict[str, Tensor] | None = None


class ControlledMemory(nn.Module):
    """A sequence model ``(B, T, I) -> MemoryOutput(output (B, T, O))``: a controller RNN driving a memory.

    Args:
        input_dim: ``I``.
        output_dim: ``O``.
        read_dim: ``R``, the width of the memory's read vector.
        interface: the parts the controller emits each step, ``{name: (width, squash kind)}`` in order
            (kinds: ``"sigmoid"``, ``"tanh"``, ``"identity"``, ``"oneplus"``); width-1 parts come as ``(B,)``.
        controller: ``"lstm"`` (default) or ``"feedforward"``: the NTM's controllers
            (:data:`qkv.memory.ntm.controller.CONTROLLERS`).
        controller_dim: ``C``, the controller's width.

    Subclasses define :meth:`initial_state` and :meth:`step`.
    """

    def __init__(self, input_dim: int, output_dim: int, *, read_dim: int, interface: dict[str, tuple[int, str]],
                 controller: str = "lstm", controller_dim: int = 64) -> None:
        super().__init__()
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.output_dim = check_positive_int("output_dim", output_dim)
        self.read_dim = check_positive_int("read_dim", read_dim)
        self.controller_dim = check_positive_int("controller_dim", controller_dim)
        parts = dict(interface)
        for name, (width, kind) in parts.items():
            check_positive_int(f"interface part {name!r} width", width)
            squash(kind, torch.zeros(()))  # validates the kind
        self._parts = parts
        self.controller = make_controller(controller, input_dim + read_dim, controller_dim)  # (B, I + R) -> (B, C)
        self.to_interface = nn.Linear(controller_dim, sum(w for w, _ in parts.values()))
        self.to_output = nn.Linear(controller_dim + read_dim, output_dim)

    def initial_state(self, batch: int, *, dtype: torch.dtype, device: torch.device) -> tuple[Any, Tensor]:
        """The empty memory for ``batch`` sequences and the initial read vector ``(B, R)``."""
        raise NotImplementedError

    def step(self, state: Any, parts: dict[str, Tensor]) -> tuple[Any, Tensor, dict[str, Tensor]]:
        """One memory step: ``(state, {name: (B, width)}) -> (state, read (B, R), trace)``.

        ``trace`` holds per-example tensors for pictures (strengths, read weights, ...): ``(B,)`` or
        ``(B, S_t)`` with ``S_t`` the memory's size after the step.
        """
        raise NotImplementedError

    def split(self, hidden: Tensor) -> dict[str, Tensor]:
        """The interface vector of ``hidden (B, C)`` cut into the memory's squashed parts."""
        flat = self.to_interface(hidden)  # (B, P)
        out, start = {}, 0
        for name, (width, kind) in self._parts.items():
            piece = flat[:, start:start + width]  # (B, width)
            out[name] = squash(kind, piece.squeeze(-1) if width == 1 else piece)
            start += width
        return out

    def forward(self, x: Tensor, *, return_trace: bool = False) -> MemoryOutput:
        """Run the controller and the memory over ``x (B, T, I)``; ``output`` holds the ``(B, T, O)`` logits.

        With ``return_trace=True`` ``trace`` is a dict of per-step tensors: ``(B, T)`` for scalars, and
        ``(B, T, T_max)`` zero-padded for per-slot quantities (row ``t`` is the memory after step ``t``).
        """
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.input_dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be (B, T, {self.input_dim}), got {got}")
        B, T, _ = x.shape
        state, read = self.initial_state(B, dtype=x.dtype, device=x.device)
        ctrl = self.controller.initial_state(B, device=x.device, dtype=x.dtype)
        outputs, traces = [], []
        for t in range(T):
            inp = torch.cat([x[:, t], read], -1)  # (B, I + R)
            h, ctrl = self.controller(inp, ctrl)  # (B, C)
            outputs.append(self.to_output(torch.cat([h, read], -1)))  # (B, O): y_t from o'_t and r_{t-1}
            state, read, trace = self.step(state, self.split(h))
            if return_trace:
                traces.append(trace)
        y = torch.stack(outputs, 1)  # (B, T, O)
        return MemoryOutput(y, _stack_traces(traces, T) if return_trace else None)


def _stack_traces(traces: list[dict[str, Tensor]], T: int) -> dict[str, Tensor]:
    out = {}
    for name in traces[0]:
        items = [tr[name] for tr in traces]
        if items[0].dim() == 1:
            out[name] = torch.stack(items, 1)  # (B, T)
        else:
            width = max(T, max(it.shape[-1] for it in items))
            padded = [nn.functional.pad(it, (0, width - it.shape[-1])) for it in items]
            out[name] = torch.stack(padded, 1)  # (B, T, S_max)
    return out
