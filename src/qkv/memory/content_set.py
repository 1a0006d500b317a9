"""A content-addressed set memory: writes add elements, reads attend over them by similarity, no order.

Shape legend: ``...`` leading dims (usually the batch ``B``), ``S`` stored elements (one slot per write),
``M`` width of an element, ``L`` queries (1 in the model).

The set is the third organisation of memory of the book's exercise 8-4, next to the stack and the queue
(Grefenstette et al. 2015, :mod:`qkv.memory.stack`, :mod:`qkv.memory.queue`) and the NTM's addressable
tape: an unordered collection. A write adds an element :math:`e_t` with a presence strength
:math:`a_t \\in [0, 1]` (a soft "add"); nothing is ever overwritten or popped. A read retrieves by
content only — the NTM's content addressing (Graves et al. 2014 eq. 5) weighted by presence:

.. math:: w_i = \\frac{a_i \\exp(\\beta \\cos(q, e_i))}{\\sum_j a_j \\exp(\\beta \\cos(q, e_j))}
          = \\operatorname{softmax}_i\\big(\\beta \\cos(q, e_i) + \\log a_i\\big), \\qquad r = \\sum_i w_i e_i,

which is **one call of** :func:`qkv.attend`:
``attend(beta * q / |q|, e / |e|, e, score="dot", bias=log(a))`` — the cosine score as a dot product of
unit vectors with the key strength :math:`\\beta` folded into the query (it may differ per example), the
presence as an additive bias (log of the strength, floored at ``1e-6``). :func:`read` is that call.

Membership: :math:`m(q) = \\min(1, \\sum_i a_i \\exp(\\beta (\\cos(q, e_i) - 1)))`, a soft count of the
stored elements equal to :math:`q` (an element stored with strength 1 in the direction of :math:`q`
contributes 1, a dissimilar one :math:`e^{-\\beta(1 - \\cos)}`). It is the read's partition function,
:math:`\\exp(\\operatorname{logsumexp}_i(\\text{scores}_i) - \\beta)`, computed from the scores of the same
``attend`` call (:func:`membership`). ``tests/memory/test_set.py`` checks both against direct
transcriptions and a float64 gradcheck.

:class:`NeuralSet` wraps it as a model ``(B, T, I) -> MemoryOutput(output (B, T, O))`` with the controller
interface of the stack and queue (:mod:`qkv.memory.controller`): each step the controller emits an element,
an add strength, a query and a key strength, and receives the read element and its membership.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from qkv.functional.attention import attend
from qkv.functional.checks import check_positive_int, check_tensor
from qkv.functional.output import AttentionOutput
from qkv.memory.controller import ControlledMemory

__all__ = ["MIN_STRENGTH", "NeuralSet", "SetState", "add", "membership", "read"]

#: Presence strengths are floored at this value inside the log (a zero strength would give ``-inf`` bias
#: and a NaN gradient of ``log``); such an element keeps a weight of at most about ``1e-6``.
MIN_STRENGTH = 1e-6


@dataclass(frozen=True)
class SetState:
    """The set: ``elements (..., S, M)`` and their presence ``strengths (..., S)``."""

    elements: Tensor
    strengths: Tensor

    @classmethod
    def empty(cls, *batch: int, dim: int, dtype: torch.dtype = torch.float32,
              device: torch.device | str | None = None) -> SetState:
        """An empty set for leading dims ``batch`` and elements of width ``dim``."""
        return cls(torch.zeros(*batch, 0, dim, dtype=dtype, device=device),
                   torch.zeros(*batch, 0, dtype=dtype, device=device))


def add(state: SetState, element: Tensor, strength: Tensor | float) -> SetState:
    """Add ``element (..., M)`` with presence ``strength`` (``(...)`` or a scalar in ``[0, 1]``)."""
    element = check_tensor("element", element, min_dim=1)
    lead, M = state.elements.shape[:-2], state.elements.shape[-1]
    if element.shape != (*lead, M):
        raise ValueError(f"element must be (..., M) = {(*lead, M)}, got {tuple(element.shape)}")
    strength = torch.as_tensor(strength, dtype=element.dtype, device=element.device)
    if strength.dim() != 0 and strength.shape != lead:
        raise ValueError(f"strength must be a scalar or of the batch shape {tuple(lead)}, got {tuple(strength.shape)}")
    return SetState(torch.cat([state.elements, element[..., None, :]], -2),  # (..., S + 1, M)
                    torch.cat([state.strengths, strength.expand(lead)[..., None]], -1))  # (..., S + 1)


def _beta(beta: Tensor | float, query: Tensor) -> Tensor:
    beta = torch.as_tensor(beta, dtype=query.dtype, device=query.device)
    if beta.dim() != 0 and beta.shape != query.shape[:-2]:
        raise ValueError(f"beta must be a scalar or of the batch shape {tuple(query.shape[:-2])}, "
                         f"got {tuple(beta.shape)}")
    return beta.expand(query.shape[:-2])


def read(state: SetState, query: Tensor, beta: Tensor | float = 10.0, *, return_weights: bool = False,
         return_scores: bool = False) -> AttentionOutput:
    """Read the set by content: one call of :func:`qkv.attend` (see the module docstring).

    ``attend(beta * q / |q|, e / |e|, e, score="dot", bias=log(max(a, MIN_STRENGTH)))``.

    Args:
        state: the set, ``elements (..., S, M)``, ``strengths (..., S)``.
        query: ``(..., L, M)``.
        beta: the key strength :math:`\\beta > 0`, a scalar or ``(...)``.
        return_weights: also return the weights ``(..., L, S)``.
        return_scores: also return the scores :math:`\\beta \\cos + \\log a` ``(..., L, S)``.

    Returns:
        :class:`qkv.AttentionOutput` with ``output (..., L, M)``; an empty set reads zeros.
    """
    query = check_tensor("query", query)
    E, a = state.elements, state.strengths
    if query.shape[-1] != E.shape[-1]:
        raise ValueError(f"query must have the elements' width {E.shape[-1]}, got shape {tuple(query.shape)}")
    b = _beta(beta, query)
    if E.shape[-2] == 0:
        zeros = query.new_zeros(*query.shape[:-1], 0)  # (..., L, 0)
        return AttentionOutput(torch.zeros_like(query), zeros if return_weights else None,
                               zeros if return_scores else None)
    q = F.normalize(query, dim=-1) * b[..., None, None]  # (..., L, M): beta q / |q|
    bias = torch.log(a.clamp_min(MIN_STRENGTH))[..., None, :]  # (..., 1, S)
    return attend(q, F.normalize(E, dim=-1), E, score="dot", bias=bias, return_weights=return_weights,
                  return_scores=return_scores)


def membership(state: SetState, query: Tensor, beta: Tensor | float = 10.0) -> Tensor:
    """Soft membership of each query, ``(..., L)`` in ``[0, 1]``: :math:`\\min(1, \\exp(\\mathrm{lse}(s) - \\beta))`.

    ``s`` are the scores of :func:`read`'s ``attend`` call; the value is
    :math:`\\min(1, \\sum_i a_i e^{\\beta(\\cos(q, e_i) - 1)})`.
    """
    query = check_tensor("query", query)
    if state.elements.shape[-2] == 0:
        return query.new_zeros(query.shape[:-1])
    scores = read(state, query, beta, return_scores=True).scores  # (..., L, S)
    b = _beta(beta, query)
    return torch.exp(torch.logsumexp(scores, -1) - b[..., None]).clamp(max=1.0)


class NeuralSet(ControlledMemory):
    """A controller RNN with a content-addressed set: ``(B, T, input_dim) -> MemoryOutput(output (B, T, output_dim))``.

    Each step the controller emits an element :math:`e_t` (tanh), an add strength :math:`a_t` (sigmoid),
    a query :math:`q_t` and a key strength :math:`\\beta_t = 1 + \\mathrm{softplus}(\\cdot)` (as the NTM's);
    the set adds :math:`e_t` (:func:`add`) and is read with the query (:func:`read`, :func:`membership`);
    the read vector fed back is ``[r_t; m_t]`` (width ``M + 1``).

    Args:
        input_dim, output_dim: widths of the inputs and outputs (logits).
        memory_dim: ``M``, the width of an element.
        controller: ``"lstm"`` or ``"feedforward"`` (the NTM's controllers).
        controller_dim: the controller's width.

    ``forward(x, return_trace=True).trace`` holds ``add``, ``beta``, ``membership`` ``(B, T)`` and
    ``strengths``, ``read_weights`` ``(B, T, T)`` (slot ``i`` was written at step ``i``).
    """

    def __init__(self, input_dim: int, output_dim: int, *, memory_dim: int = 32, controller: str = "lstm",
                 controller_dim: int = 64) -> None:
        self.memory_dim = check_positive_int("memory_dim", memory_dim)
        super().__init__(input_dim, output_dim, read_dim=memory_dim + 1, controller=controller,
                         controller_dim=controller_dim,
                         interface={"element": (memory_dim, "tanh"), "add": (1, "sigmoid"),
                                    "query": (memory_dim, "identity"), "beta": (1, "oneplus")})

    def initial_state(self, batch: int, *, dtype: torch.dtype, device: torch.device) -> tuple[SetState, Tensor]:
        return SetState.empty(batch, dim=self.memory_dim, dtype=dtype, device=device), \
            torch.zeros(batch, self.memory_dim + 1, dtype=dtype, device=device)

    def step(self, state: SetState, parts: dict[str, Tensor]) -> tuple[SetState, Tensor, dict[str, Tensor]]:
        state = add(state, parts["element"], parts["add"])
        q, beta = parts["query"][:, None], parts["beta"]  # (B, 1, M), (B,)
        out = read(state, q, beta, return_weights=True, return_scores=True)
        member = torch.exp(torch.logsumexp(out.scores, -1) - beta[:, None]).clamp(max=1.0)  # (B, 1): membership
        trace = {"add": parts["add"], "beta": beta, "membership": member[:, 0], "strengths": state.strengths,
                 "read_weights": out.weights[:, 0]}
        return state, torch.cat([out.output[:, 0], member], -1), trace  # read (B, M + 1)

