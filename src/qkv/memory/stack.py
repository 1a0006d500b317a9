"""The neural stack: a differentiable stack with continuous push and pop strengths.

Shape legend: ``...`` leading dims (usually the batch ``B``), ``S`` slots of the stack (one per step so
far: the stack never forgets a value, it only lowers its strength), ``M`` width of a value.

Grefenstette, Hermann, Suleyman and Blunsom 2015, "Learning to Transduce with Unbounded Memory", §3.1.
The stack holds a value matrix :math:`V_t` and a strength vector :math:`s_t`; at step ``t`` it takes a
value :math:`v_t`, a pop strength :math:`u_t \\in [0, 1]` and a push strength :math:`d_t \\in [0, 1]`:

* eq. 1 (values, append only): :math:`V_t[i] = V_{t-1}[i]` for :math:`i < t`, :math:`V_t[t] = v_t`;
* eq. 2 (strengths: first pop :math:`u_t` from the top down, then push :math:`d_t`):
  :math:`s_t[i] = \\max(0, s_{t-1}[i] - \\max(0, u_t - \\sum_{j=i+1}^{t-1} s_{t-1}[j]))` for :math:`i < t`,
  :math:`s_t[t] = d_t`;
* eq. 3 (read: the top unit of strength):
  :math:`r_t = \\sum_{i=1}^{t} \\min(s_t[i], \\max(0, 1 - \\sum_{j=i+1}^{t} s_t[j]))\\, V_t[i]`.

The paper's worked example (fig. 1b): push :math:`v_1` with :math:`d_1 = 0.8` (read :math:`0.8 v_1`),
then pop 0.1 and push :math:`v_2` with 0.5 (strengths 0.7, 0.5; read :math:`0.5 v_2 + 0.5 v_1`), then
pop 0.9 and push :math:`v_3` with 0.9 (strengths 0.3, 0, 0.9; read :math:`0.9 v_3 + 0.1 v_1`).

The read (eq. 3) is **one call of** :func:`qkv.attend`:
``attend(ones(..., 1, 1), s[..., None], V, score="dot", normalize=top_weights)`` — one query, the
strengths as the scores (the dot product of a unit query with the one-wide keys :math:`s_t[i]`), and as
the normaliser :func:`top_weights`, which keeps the top unit of strength instead of a softmax (it sums
to :math:`\\min(1, \\sum_i s_t[i])`). :func:`read` is that call; ``tests/memory/test_stack.py`` checks
it, the update against an explicit-loop transcription of eqs. 1-3, and a float64 gradcheck.

The maths is shared with the queue (:mod:`qkv.memory.queue`, the same equations acting on the bottom):
it lives in :mod:`qkv.memory.strength_list` with the direction as ``from_top``; this module binds
``from_top=True``. :class:`NeuralStack` wraps it as a model ``(B, T, I) -> MemoryOutput(output (B, T, O))``
with the paper's controller (:mod:`qkv.memory.controller`).
"""

from __future__ import annotations

from torch import Tensor

from qkv.functional.output import AttentionOutput
from qkv.memory import strength_list
from qkv.memory.strength_list import StrengthList, StrengthListMemory, unit_weights, update

__all__ = ["NeuralStack", "StackState", "push_pop", "read", "top_weights"]


class StackState(StrengthList):
    """The stack after some steps: ``values (..., S, M)`` and ``strengths (..., S)``; ``StackState.empty(*batch,
    dim=M)`` has no slots."""


def push_pop(state: StackState, value: Tensor, push: Tensor | float, pop: Tensor | float) -> StackState:
    """One step of the neural stack: pop ``pop`` from the top, then push ``value`` with strength ``push``.

    Grefenstette et al. 2015 eqs. 1 and 2 (:func:`qkv.memory.strength_list.update` with ``from_top=True``).

    Args:
        state: the stack before the step, ``values (..., S, M)``, ``strengths (..., S)``.
        value: :math:`v_t`, ``(..., M)``.
        push: :math:`d_t \\in [0, 1]`, ``(...)`` or a scalar.
        pop: :math:`u_t \\in [0, 1]`, ``(...)`` or a scalar.

    Returns:
        The stack after the step, with ``S + 1`` slots.
    """
    return update(state, value, push, pop, from_top=True)


def top_weights(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """The read weights of eq. 3 from the strengths: :math:`\\min(s[i], \\max(0, 1 - \\sum_{j>i} s[j]))`.

    A normaliser for :func:`qkv.attend` (``(scores, mask) -> weights``, over the last dim ``S``): it keeps
    the top unit of strength. Masked slots (``mask`` False) count as strength 0.
    """
    return unit_weights(scores, mask, from_top=True)


def read(state: StackState, *, return_weights: bool = False) -> AttentionOutput:
    """The stack's read :math:`r_t` (eq. 3) as one call of :func:`qkv.attend`.

    ``attend(ones(..., 1, 1), s[..., None], V, score="dot", normalize=top_weights)``; the output is
    ``(..., 1, M)`` and the weights ``(..., 1, S)``. An empty stack reads zeros.
    """
    return strength_list.read(state, normalize=top_weights, return_weights=return_weights)


class NeuralStack(StrengthListMemory):
    """A controller RNN with a neural stack: ``(B, T, input_dim) -> MemoryOutput(output (B, T, output_dim))``.

    Grefenstette et al. 2015 §3.4: each step the controller reads ``[x_t; r_{t-1}]`` and emits the push
    strength :math:`d_t` (sigmoid), the pop strength :math:`u_t` (sigmoid) and the value :math:`v_t`
    (tanh); the stack updates (:func:`push_pop`) and is read (:func:`read`).

    Args:
        input_dim: width of the inputs.
        output_dim: width of the outputs (logits).
        memory_dim: ``M``, the width of the stack's values.
        controller: ``"lstm"`` or ``"feedforward"`` (the NTM's controllers).
        controller_dim: the controller's width.

    ``forward(x, return_trace=True).trace`` holds ``push``, ``pop`` ``(B, T)``, ``strengths`` and
    ``read_weights`` ``(B, T, T)`` (row ``t``: the stack after step ``t``; slot ``i`` was pushed at step ``i``).
    """

    from_top = True
    state_type = StackState
    normalize = staticmethod(top_weights)
