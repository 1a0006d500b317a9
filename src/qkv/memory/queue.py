"""The neural queue: a differentiable first-in first-out queue with continuous enqueue and dequeue strengths.

Shape legend: ``...`` leading dims (usually the batch ``B``), ``S`` slots of the queue (one per step so
far: the queue never forgets a value, it only lowers its strength), ``M`` width of a value.

Grefenstette, Hermann, Suleyman and Blunsom 2015, "Learning to Transduce with Unbounded Memory", §3.3.
The neural queue is the neural stack (:mod:`qkv.memory.stack`, eqs. 1-3) with the pop and the read acting
on the *bottom* (the oldest values) instead of the top. At step ``t`` it takes a value :math:`v_t`, a
dequeue strength :math:`u_t \\in [0, 1]` and an enqueue (push) strength :math:`d_t \\in [0, 1]`:

* values, append only (the stack's eq. 1): :math:`V_t[i] = V_{t-1}[i]` for :math:`i < t`, :math:`V_t[t] = v_t`;
* strengths (first dequeue :math:`u_t` from the bottom up, then enqueue :math:`d_t`):
  :math:`s_t[i] = \\max(0, s_{t-1}[i] - \\max(0, u_t - \\sum_{j=1}^{i-1} s_{t-1}[j]))` for :math:`i < t`,
  :math:`s_t[t] = d_t`;
* read (the bottom unit of strength):
  :math:`r_t = \\sum_{i=1}^{t} \\min(s_t[i], \\max(0, 1 - \\sum_{j=1}^{i-1} s_t[j]))\\, V_t[i]`.

With the stack's worked example (push :math:`v_1` 0.8; pop 0.1, push :math:`v_2` 0.5; pop 0.9, push
:math:`v_3` 0.9) the queue reads :math:`0.8 v_1`, then :math:`0.7 v_1 + 0.3 v_2` (strengths 0.7, 0.5),
then :math:`0.3 v_2 + 0.7 v_3` (strengths 0, 0.3, 0.9: the dequeue of 0.9 empties :math:`v_1` and takes
0.2 of :math:`v_2`).

The read is **one call of** :func:`qkv.attend`:
``attend(ones(..., 1, 1), s[..., None], V, score="dot", normalize=bottom_weights)`` — one query, the
strengths as the scores, and as the normaliser :func:`bottom_weights`, which keeps the bottom unit of
strength. :func:`read` is that call; ``tests/memory/test_queue.py`` checks it, the update against an
explicit-loop transcription of the equations, and a float64 gradcheck.

The maths is the stack's (:mod:`qkv.memory.strength_list`) with ``from_top=False``. :class:`NeuralQueue`
wraps it as a model ``(B, T, I) -> MemoryOutput(output (B, T, O))`` with the paper's controller
(:mod:`qkv.memory.controller`).
"""

from __future__ import annotations

from torch import Tensor

from qkv.functional.output import AttentionOutput
from qkv.memory import strength_list
from qkv.memory.strength_list import StrengthList, StrengthListMemory, unit_weights, update

__all__ = ["NeuralQueue", "QueueState", "bottom_weights", "enqueue_dequeue", "read"]


class QueueState(StrengthList):
    """The queue after some steps: ``values (..., S, M)`` and ``strengths (..., S)``; ``QueueState.empty(*batch,
    dim=M)`` has no slots."""


def enqueue_dequeue(state: QueueState, value: Tensor, push: Tensor | float, pop: Tensor | float) -> QueueState:
    """One step of the neural queue: dequeue ``pop`` from the bottom, then enqueue ``value`` with strength ``push``.

    Grefenstette et al. 2015 §3.3 (the stack's eq. 1, and eq. 2 with the pop acting from the bottom:
    :func:`qkv.memory.strength_list.update` with ``from_top=False``).

    Args:
        state: the queue before the step, ``values (..., S, M)``, ``strengths (..., S)``.
        value: :math:`v_t`, ``(..., M)``.
        push: the enqueue strength :math:`d_t \\in [0, 1]`, ``(...)`` or a scalar.
        pop: the dequeue strength :math:`u_t \\in [0, 1]`, ``(...)`` or a scalar.

    Returns:
        The queue after the step, with ``S + 1`` slots.
    """
    return update(state, value, push, pop, from_top=False)


def bottom_weights(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """The queue's read weights from the strengths: :math:`\\min(s[i], \\max(0, 1 - \\sum_{j<i} s[j]))`.

    A normaliser for :func:`qkv.attend` (``(scores, mask) -> weights``, over the last dim ``S``): it keeps
    the bottom unit of strength. Masked slots (``mask`` False) count as strength 0.
    """
    return unit_weights(scores, mask, from_top=False)


def read(state: QueueState, *, return_weights: bool = False) -> AttentionOutput:
    """The queue's read :math:`r_t` as one call of :func:`qkv.attend`.

    ``attend(ones(..., 1, 1), s[..., None], V, score="dot", normalize=bottom_weights)``; the output is
    ``(..., 1, M)`` and the weights ``(..., 1, S)``. An empty queue reads zeros.
    """
    return strength_list.read(state, normalize=bottom_weights, return_weights=return_weights)


class NeuralQueue(StrengthListMemory):
    """A controller RNN with a neural queue: ``(B, T, input_dim) -> MemoryOutput(output (B, T, output_dim))``.

    Grefenstette et al. 2015 §3.4: each step the controller reads ``[x_t; r_{t-1}]`` and emits the
    enqueue strength :math:`d_t` (``push``, sigmoid), the dequeue strength :math:`u_t` (``pop``, sigmoid)
    and the value :math:`v_t` (tanh); the queue updates (:func:`enqueue_dequeue`) and is read (:func:`read`).

    Args:
        input_dim: width of the inputs.
        output_dim: width of the outputs (logits).
        memory_dim: ``M``, the width of the queue's values.
        controller: ``"lstm"`` or ``"feedforward"`` (the NTM's controllers).
        controller_dim: the controller's width.

    ``forward(x, return_trace=True).trace`` holds ``push``, ``pop`` ``(B, T)``, ``strengths`` and
    ``read_weights`` ``(B, T, T)`` (row ``t``: the queue after step ``t``; slot ``i`` was enqueued at step ``i``).
    """

    from_top = False
    state_type = QueueState
    normalize = staticmethod(bottom_weights)
