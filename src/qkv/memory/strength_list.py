"""The strength list shared by the neural stack and the neural queue: append-only values, each with a strength.

Shape legend: ``...`` leading dims (usually the batch ``B``), ``S`` slots (one per step so far: the list never
forgets a value, it only lowers its strength), ``M`` width of a value.

Grefenstette, Hermann, Suleyman and Blunsom 2015, "Learning to Transduce with Unbounded Memory", §3.1-3.3.
The neural stack and the neural queue hold the same state — a value matrix :math:`V_t` and a strength vector
:math:`s_t` — and follow the same three equations; they differ only in which end the pop and the read act on:
the *top* (the newest slots, the stack) or the *bottom* (the oldest slots, the queue). With
:math:`a_i(s)` the strength lying *ahead* of slot ``i`` on the side that is popped and read —
:math:`\\sum_{j>i} s[j]` for the stack (``from_top=True``), :math:`\\sum_{j<i} s[j]` for the queue:

* eq. 1 (values, append only): :math:`V_t[i] = V_{t-1}[i]` for :math:`i < t`, :math:`V_t[t] = v_t`;
* eq. 2 (strengths: first pop :math:`u_t`, then push :math:`d_t`):
  :math:`s_t[i] = \\max(0, s_{t-1}[i] - \\max(0, u_t - a_i(s_{t-1})))` for :math:`i < t`, :math:`s_t[t] = d_t`;
* eq. 3 (read: the first unit of strength from that end):
  :math:`r_t = \\sum_{i=1}^{t} \\min(s_t[i], \\max(0, 1 - a_i(s_t)))\\, V_t[i]`.

The read is **one call of** :func:`qkv.attend`:
``attend(ones(..., 1, 1), s[..., None], V, score="dot", normalize=normalize)`` — one query, the strengths as
the scores (the dot product of a unit query with the one-wide keys :math:`s_t[i]`), and as the normaliser
the eq. 3 weights (:func:`unit_weights` from one end; :func:`qkv.memory.stack.top_weights`,
:func:`qkv.memory.queue.bottom_weights`), which keep one unit of strength instead of a softmax.
:func:`read` is that call. :class:`StrengthListMemory` is the controller model both wrap
(:mod:`qkv.memory.controller`); ``tests/memory/test_stack.py`` and ``tests/memory/test_queue.py`` check each
direction against an explicit-loop transcription, the ``attend`` identity and a float64 gradcheck.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

from qkv.functional.attention import attend
from qkv.functional.checks import check_positive_int, check_tensor
from qkv.functional.output import AttentionOutput
from qkv.memory.controller import ControlledMemory

__all__ = ["StrengthList", "StrengthListMemory", "read", "strength_ahead", "unit_weights", "update"]

_S = TypeVar("_S", bound="StrengthList")


@dataclass(frozen=True)
class StrengthList:
    """Values ``(..., S, M)`` and their strengths ``(..., S)`` (slot ``i`` was appended at step ``i``)."""

    values: Tensor
    strengths: Tensor

    @classmethod
    def empty(cls: type[_S], *batch: int, dim: int, dtype: torch.dtype = torch.float32,
              device: torch.device | str | None = None) -> _S:
        """A list with no slots for leading dims ``batch`` and values of width ``dim``."""
        return cls(torch.zeros(*batch, 0, dim, dtype=dtype, device=device),  # (..., 0, M)
                   torch.zeros(*batch, 0, dtype=dtype, device=device))  # (..., 0)


def strength_ahead(s: Tensor, *, from_top: bool) -> Tensor:
    """:math:`a_i(s)`, the strength ahead of each slot ``(..., S)``: above it (``from_top``) or below it."""
    if from_top:
        return torch.flip(torch.cumsum(torch.flip(s, [-1]), -1), [-1]) - s  # sum_{j>i} s[j]
    return torch.cumsum(s, -1) - s  # sum_{j<i} s[j]


def unit_weights(scores: Tensor, mask: Tensor | None = None, *, from_top: bool) -> Tensor:
    """Eq. 3's read weights :math:`\\min(s[i], \\max(0, 1 - a_i(s)))` over the last dim: one unit of strength.

    A normaliser for :func:`qkv.attend` once ``from_top`` is bound; masked slots (``mask`` False) count as
    strength 0.
    """
    if mask is not None:
        scores = scores.masked_fill(~mask, 0.0)
    return torch.minimum(scores, torch.relu(1 - strength_ahead(scores, from_top=from_top)))


def _check_step(state: StrengthList, value: Tensor, push: Tensor | float,
                pop: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
    value = check_tensor("value", value, min_dim=1)
    lead, M = state.values.shape[:-2], state.values.shape[-1]
    if value.shape != (*lead, M):
        raise ValueError(f"value must be (..., M) = {(*lead, M)}, got {tuple(value.shape)}")
    out = []
    for name, t in (("push", push), ("pop", pop)):
        t = torch.as_tensor(t, dtype=value.dtype, device=value.device)
        if t.shape != lead and t.dim() != 0:
            raise ValueError(f"{name} must be a scalar or of the batch shape {tuple(lead)}, got {tuple(t.shape)}")
        out.append(t.expand(lead))
    return value, out[0], out[1]


def update(state: _S, value: Tensor, push: Tensor | float, pop: Tensor | float, *, from_top: bool) -> _S:
    """One step, eqs. 1 and 2: pop ``pop`` from the top (``from_top``) or the bottom, then push ``value``.

    Args:
        state: the list before the step, ``values (..., S, M)``, ``strengths (..., S)``.
        value: :math:`v_t`, ``(..., M)``.
        push: :math:`d_t \\in [0, 1]`, ``(...)`` or a scalar.
        pop: :math:`u_t \\in [0, 1]`, ``(...)`` or a scalar.
        from_top: pop from the newest slots (a stack) or from the oldest (a queue).

    Returns:
        The list after the step (of ``state``'s type), with ``S + 1`` slots.
    """
    value, push, pop = _check_step(state, value, push, pop)
    s = state.strengths
    removed = torch.relu(pop[..., None] - strength_ahead(s, from_top=from_top))  # (..., S): what the pop takes
    s = torch.relu(s - removed)  # eq. 2, i < t
    return type(state)(torch.cat([state.values, value[..., None, :]], -2),  # (..., S + 1, M): eq. 1
                       torch.cat([s, push[..., None]], -1))  # (..., S + 1): eq. 2, i = t


def read(state: StrengthList, *, normalize: Callable[[Tensor, Tensor | None], Tensor],
         return_weights: bool = False) -> AttentionOutput:
    """The read :math:`r_t` (eq. 3) as one call of :func:`qkv.attend` with the eq. 3 weights as ``normalize``.

    ``attend(ones(..., 1, 1), s[..., None], V, score="dot", normalize=normalize)``; the output is
    ``(..., 1, M)`` and the weights ``(..., 1, S)``. An empty list reads zeros.
    """
    s, V = state.strengths, state.values
    if s.shape[-1] == 0:
        return AttentionOutput(V.new_zeros(*V.shape[:-2], 1, V.shape[-1]),  # (..., 1, M)
                               s.new_zeros(*s.shape[:-1], 1, 0) if return_weights else None)  # (..., 1, 0)
    q = s.new_ones(*s.shape[:-1], 1, 1)  # (..., 1, 1): one query
    return attend(q, s[..., None], V, score="dot", normalize=normalize, return_weights=return_weights)


class StrengthListMemory(ControlledMemory):
    """A controller RNN with a strength list: ``(B, T, input_dim) -> MemoryOutput(output (B, T, output_dim))``.

    Grefenstette et al. 2015 §3.4: each step the controller reads ``[x_t; r_{t-1}]`` and emits the push
    strength :math:`d_t` (sigmoid), the pop strength :math:`u_t` (sigmoid) and the value :math:`v_t` (tanh);
    the list updates (:func:`update`) and is read (:func:`read`). Subclasses set :attr:`from_top`,
    :attr:`state_type` and :attr:`normalize` (the stack and the queue).

    Args:
        input_dim: width of the inputs.
        output_dim: width of the outputs (logits).
        memory_dim: ``M``, the width of the values.
        controller: ``"lstm"`` or ``"feedforward"`` (:func:`qkv.memory.ntm.controller.make_controller`).
        controller_dim: the controller's width.

    ``forward(x, return_trace=True)`` also returns, in ``trace``, ``push``, ``pop`` ``(B, T)``, ``strengths``
    and ``read_weights`` ``(B, T, T)`` (row ``t``: the list after step ``t``; slot ``i`` was pushed at step ``i``).
    """

    from_top: ClassVar[bool]
    state_type: ClassVar[type[StrengthList]]
    normalize: ClassVar[Callable[[Tensor, Tensor | None], Tensor]]

    def __init__(self, input_dim: int, output_dim: int, *, memory_dim: int = 32, controller: str = "lstm",
                 controller_dim: int = 64) -> None:
        self.memory_dim = check_positive_int("memory_dim", memory_dim)
        super().__init__(input_dim, output_dim, read_dim=memory_dim, controller=controller,
                         controller_dim=controller_dim,
                         interface={"push": (1, "sigmoid"), "pop": (1, "sigmoid"), "value": (memory_dim, "tanh")})

    def initial_state(self, batch: int, *, dtype: torch.dtype, device: torch.device) -> tuple[StrengthList, Tensor]:
        return self.state_type.empty(batch, dim=self.memory_dim, dtype=dtype, device=device), \
            torch.zeros(batch, self.memory_dim, dtype=dtype, device=device)  # (B, M)

    def step(self, state: StrengthList, parts: dict[str, Tensor]) -> tuple[StrengthList, Tensor, dict[str, Tensor]]:
        state = update(state, parts["value"], parts["push"], parts["pop"], from_top=self.from_top)
        out = read(state, normalize=type(self).normalize, return_weights=True)
        trace = {"push": parts["push"], "pop": parts["pop"], "strengths": state.strengths,
                 "read_weights": out.weights[:, 0]}
        return state, out.output[:, 0], trace  # read (B, M)
