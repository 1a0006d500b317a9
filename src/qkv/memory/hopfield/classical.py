"""The classical (binary) Hopfield network: Hebbian storage, energy, synchronous and asynchronous updates.

Shape legend: ``B`` probes (a batch of states updated together), ``N`` neurons, ``P`` stored patterns.

Seed 001 §8.6.1 (Qiu, *Neural Networks and Deep Learning*) after Hopfield (1982), "Neural networks and
physical systems with emergent collective computational abilities", PNAS 79(8):

* states :math:`s \\in \\{-1, +1\\}^N`; weights symmetric, :math:`w_{ij} = w_{ji}`, :math:`w_{ii} = 0`;
* update of neuron ``i``: :math:`s_i \\leftarrow +1` if :math:`\\sum_j w_{ij} s_j + b_i \\ge 0`, else
  :math:`-1` (the book's rule; a tie goes to +1) — **asynchronously** (one neuron at a time, in a random
  order drawn from a seeded :class:`torch.Generator`) or **synchronously** (all neurons at once);
* energy :math:`E = -\\tfrac12 s^\\top W s - b^\\top s` (§8.6.1, "energy function");
* Hebbian storage :math:`w_{ij} = \\tfrac1N \\sum_{n} x_i^{(n)} x_j^{(n)}` (§8.6.1, "information storage"),
  and, as an option, the pseudo-inverse (projection) rule of Personnaz, Guyon and Dreyfus (1986),
  :math:`W = \\Xi^\\top (\\Xi \\Xi^\\top)^{+} \\Xi` for patterns :math:`\\Xi` ``(P, N)``, which stores
  any linearly independent set exactly (correlated patterns included).

**Exercise 8-6.** Under asynchronous updates the energy never increases when ``W`` is symmetric with a
non-negative diagonal: changing neuron ``i`` by :math:`\\Delta = s_i' - s_i` changes the energy by
:math:`\\Delta E = -\\Delta\\,(h_i - w_{ii} s_i) - \\tfrac12 w_{ii}(s_i'^2 - s_i^2)` with the field
:math:`h_i = \\sum_j w_{ij} s_j + b_i`; for a flip (:math:`s_i' = \\operatorname{sign} h_i = -s_i`) that is
:math:`-2|h_i| - 2 w_{ii} \\le 0`. Synchronous updates need not decrease it and can cycle with period 2
(:func:`period_two_example`). ``tests/memory/test_classical.py`` checks both (a hypothesis property test).

Probes may hold 0 for an unknown (masked) neuron; the first update of that neuron sets it to ±1, and
the energy still never increases (:math:`\\Delta E = -|h_i| - \\tfrac12 w_{ii}`).

Capacity: with Hebbian storage of random patterns, retrieval breaks down at the load
:math:`\\alpha = P/N \\approx 0.138` (Amit, Gutfreund and Sompolinsky 1985); see the ``hopfield-capacity``
experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "ClassicalHopfield",
    "HopfieldRun",
    "async_sweep",
    "energy",
    "hebbian",
    "local_field",
    "overlap",
    "period_two_example",
    "pseudo_inverse",
    "sync_step",
    "threshold",
    "update_neuron",
]

Rule = Literal["hebbian", "pseudo_inverse"]
Mode = Literal["sync", "async"]


def _check_patterns(patterns: object, name: str = "patterns") -> Tensor:
    if not isinstance(patterns, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of +-1 values (P, N), got {type(patterns).__name__}")
    if patterns.dim() != 2 or patterns.shape[0] < 1 or patterns.shape[1] < 1:
        raise ValueError(f"{name} must have shape (P, N) with P, N >= 1, got {tuple(patterns.shape)}")
    if not patterns.dtype.is_floating_point:
        patterns = patterns.to(torch.get_default_dtype())
    if not torch.all(patterns.abs() == 1):
        raise ValueError(f"{name} must hold only -1 and +1")
    return patterns


def _check_mode(mode: object) -> None:
    if mode not in ("sync", "async"):
        raise ValueError(f"mode must be 'sync' or 'async', got {mode!r}")


def _check_states(states: object, n: int, name: str = "states") -> Tensor:
    if not isinstance(states, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (B, N) or (N,), got {type(states).__name__}")
    if states.dim() not in (1, 2) or states.shape[-1] != n:
        raise ValueError(f"{name} must have shape (B, {n}) or ({n},), got {tuple(states.shape)}")
    if not torch.all((states == 1) | (states == -1) | (states == 0)):
        raise ValueError(f"{name} must hold only -1, +1 (and 0 for an unknown neuron)")
    return states


def hebbian(patterns: Tensor, *, zero_diagonal: bool = True) -> Tensor:
    """Hebbian weights :math:`W = \\tfrac1N \\Xi^\\top \\Xi`, diagonal zeroed (seed 001 §8.6.1).

    Args:
        patterns: ``(P, N)`` patterns of ±1.
        zero_diagonal: set :math:`w_{ii} = 0` (the book's network; default).

    Returns:
        ``(N, N)`` symmetric weights.
    """
    x = _check_patterns(patterns)
    w = torch.einsum("pi,pj->ij", x, x) / x.shape[1]  # (N, N)
    if zero_diagonal:
        w.fill_diagonal_(0.0)
    return w


def pseudo_inverse(patterns: Tensor, *, zero_diagonal: bool = False) -> Tensor:
    """Projection-rule weights :math:`W = \\Xi^\\top (\\Xi \\Xi^\\top)^{+} \\Xi` (Personnaz et al. 1986).

    ``W`` projects onto the span of the patterns, so every stored pattern is a fixed point
    (:math:`W\\xi = \\xi`) even when the patterns are correlated, up to ``P < N`` independent ones.
    Its diagonal (``<= 1``, non-negative) is kept by default, which keeps the energy non-increasing
    under asynchronous updates; ``zero_diagonal=True`` removes the self-coupling (larger basins,
    Kanter and Sompolinsky 1987).

    Args:
        patterns: ``(P, N)`` patterns of ±1.
        zero_diagonal: set :math:`w_{ii} = 0`.

    Returns:
        ``(N, N)`` symmetric weights.
    """
    x = _check_patterns(patterns)
    gram = torch.einsum("pi,qi->pq", x, x)  # (P, P)
    w = torch.einsum("pi,pq,qj->ij", x, torch.linalg.pinv(gram, hermitian=True), x)  # (N, N)
    w = (w + w.T) / 2  # exactly symmetric
    if zero_diagonal:
        w.fill_diagonal_(0.0)
    return w


def threshold(field: Tensor) -> Tensor:
    """The book's activation: +1 where the field is ``>= 0``, else -1."""
    return torch.where(field >= 0, 1.0, -1.0).to(field.dtype)


def local_field(states: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """:math:`h = W s + b` for every probe: ``states (B, N)`` -> ``(B, N)``."""
    h = torch.einsum("bj,ij->bi", states, weight)  # (B, N)
    return h if bias is None else h + bias


def energy(states: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """:math:`E = -\\tfrac12 s^\\top W s - b^\\top s` per probe (seed 001 §8.6.1).

    Args:
        states: ``(B, N)`` (or ``(N,)``) states.
        weight: ``(N, N)`` weights.
        bias: ``(N,)`` biases, or None.

    Returns:
        ``(B,)`` energies (``()`` for one state).
    """
    s = states.to(weight.dtype)
    e = -0.5 * torch.einsum("...i,ij,...j->...", s, weight, s)
    if bias is not None:
        e = e - torch.einsum("...i,i->...", s, bias)
    return e


def sync_step(states: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """One synchronous update: every neuron of every probe at once, :math:`s \\leftarrow \\mathrm{sgn}(Ws + b)`."""
    return threshold(local_field(states, weight, bias))


def update_neuron(states: Tensor, index: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Update one neuron per probe in place: probe ``b``'s neuron ``index[b]`` (an asynchronous update).

    Args:
        states: ``(B, N)`` states, changed in place.
        index: ``(B,)`` the neuron to update in each probe.
        weight, bias: ``(N, N)`` and ``(N,)`` (or None).

    Returns:
        ``states``.
    """
    rows = torch.arange(states.shape[0], device=states.device)
    h = (weight[index] * states).sum(-1)  # (B,): field of neuron index[b] (faster than einsum on small rows)
    if bias is not None:
        h = h + bias[index]
    states[rows, index] = threshold(h)
    return states


def async_sweep(states: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> Tensor:
    """One asynchronous sweep: each neuron once, in an independent random order per probe.

    Args:
        states: ``(B, N)``; not modified (a copy is updated and returned).
        weight, bias: ``(N, N)`` and ``(N,)`` (or None).
        generator: the source of the update orders (seed it for reproducible runs): the orders are
            ``torch.rand(B, N, generator=generator).argsort(-1)`` (drawn on the CPU), row ``b`` probe ``b``'s.

    Returns:
        ``(B, N)`` the states after the sweep.
    """
    s = states.clone()
    B, N = s.shape
    order = torch.rand(B, N, generator=generator, device=torch.device("cpu")).argsort(-1).to(s.device)  # (B, N)
    for t in range(N):
        update_neuron(s, order[:, t], weight, bias)
    return s


def overlap(states: Tensor, patterns: Tensor) -> Tensor:
    """Overlaps :math:`m^\\mu = \\tfrac1N \\xi^\\mu \\cdot s`: ``states (B, N)``, ``patterns (P, N)`` -> ``(B, P)``."""
    return torch.einsum("bi,pi->bp", states.to(patterns.dtype), patterns) / patterns.shape[-1]


@dataclass(frozen=True)
class HopfieldRun:
    """The result of :meth:`ClassicalHopfield.run`.

    Attributes:
        states: ``(B, N)`` the final states.
        steps: updates done (sweeps for ``"async"``, steps for ``"sync"``).
        converged: ``(B,)`` True where the final state is a fixed point.
        cycled: ``(B,)`` True where synchronous updates ended in a period-2 cycle (never for ``"async"``).
        energies: ``(steps + 1, B)`` the energy before the first and after each update.
    """

    states: Tensor
    steps: int
    converged: Tensor
    cycled: Tensor
    energies: Tensor


class ClassicalHopfield:
    """A binary Hopfield network (seed 001 §8.6.1; Hopfield 1982): store patterns, then retrieve from probes.

    Example::

        net = ClassicalHopfield.store(patterns)                 # (P, N) of +-1, Hebbian
        out = net.run(noisy, mode="async", generator=torch.Generator().manual_seed(0))
        out.states, out.converged, net.energy(out.states)

    Args:
        weight: ``(N, N)`` symmetric weights with a non-negative diagonal (a negative :math:`w_{ii}` is
            rejected: asynchronous updates could then raise the energy).
        bias: ``(N,)`` biases (default zeros).

    Every method takes ``(B, N)`` probes or one ``(N,)`` state and answers in the same form: one state
    gives ``(N,)`` states, ``()`` energies and flags (as the module functions do for one state).
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        if not isinstance(weight, Tensor):
            raise TypeError(f"weight must be a torch.Tensor (N, N), got {type(weight).__name__}")
        if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
            raise ValueError(f"weight must be a square (N, N) tensor, got {tuple(weight.shape)}")
        if not weight.dtype.is_floating_point:
            raise TypeError(f"weight must be floating point, got dtype {weight.dtype}")
        if not torch.allclose(weight, weight.T):
            raise ValueError("weight must be symmetric (w_ij = w_ji): the energy argument needs it")
        if bool((weight.diagonal() < 0).any()):
            raise ValueError("weight must have a non-negative diagonal (w_ii >= 0): the energy-descent argument "
                             f"of exercise 8-6 needs it, got min w_ii = {float(weight.diagonal().min()):.4g}")
        n = weight.shape[0]
        if bias is not None and not isinstance(bias, Tensor):
            raise TypeError(f"bias must be a torch.Tensor ({n},) or None, got {type(bias).__name__}")
        if bias is not None and tuple(bias.shape) != (n,):
            raise ValueError(f"bias must have shape ({n},), got {tuple(bias.shape)}")
        self.weight = weight
        self.bias = bias

    @classmethod
    def store(cls, patterns: Tensor, *, rule: Rule = "hebbian", zero_diagonal: bool | None = None,
              bias: Tensor | None = None) -> ClassicalHopfield:
        """A network storing ``patterns (P, N)`` with ``rule`` ``"hebbian"`` or ``"pseudo_inverse"``.

        ``zero_diagonal`` defaults to each rule's default (True for Hebbian, False for the projection rule).
        """
        if rule == "hebbian":
            w = hebbian(patterns, zero_diagonal=True if zero_diagonal is None else zero_diagonal)
        elif rule == "pseudo_inverse":
            w = pseudo_inverse(patterns, zero_diagonal=False if zero_diagonal is None else zero_diagonal)
        else:
            raise ValueError(f"rule must be 'hebbian' or 'pseudo_inverse', got {rule!r}")
        return cls(w, bias)

    @property
    def num_neurons(self) -> int:
        return self.weight.shape[0]

    def _batch(self, states: Tensor) -> tuple[Tensor, bool]:
        """``(B, N)`` states in the weights' dtype, and whether the input was one ``(N,)`` state."""
        s = _check_states(states, self.num_neurons)
        return s.to(self.weight.dtype).reshape(-1, self.num_neurons), s.dim() == 1  # (B, N)

    def energy(self, states: Tensor) -> Tensor:
        """:math:`E = -\\tfrac12 s^\\top W s - b^\\top s`: ``(B, N)`` -> ``(B,)``, ``(N,)`` -> ``()``."""
        s, single = self._batch(states)
        e = energy(s, self.weight, self.bias)  # (B,)
        return e[0] if single else e

    def step(self, states: Tensor, *, mode: Mode = "async", generator: torch.Generator | None = None) -> Tensor:
        """One synchronous step or one asynchronous sweep: ``(B, N)`` -> ``(B, N)``, ``(N,)`` -> ``(N,)``."""
        _check_mode(mode)
        s, single = self._batch(states)
        new = sync_step(s, self.weight, self.bias) if mode == "sync" else async_sweep(
            s, self.weight, self.bias, generator=generator)
        return new[0] if single else new

    def is_fixed_point(self, states: Tensor) -> Tensor:
        """True where no neuron would change under any update, :math:`\\mathrm{sgn}(Ws + b) = s`: ``(B,)`` (``()``)."""
        s, single = self._batch(states)
        fixed = torch.all(sync_step(s, self.weight, self.bias) == s, dim=-1)  # (B,)
        return fixed[0] if single else fixed

    def run(self, states: Tensor, *, mode: Mode = "async", max_steps: int = 100,
            generator: torch.Generator | None = None) -> HopfieldRun:
        """Update ``states (B, N)`` until every probe settles or ``max_steps`` updates are done.

        A probe settles at a fixed point, or (synchronous updates only) in a period-2 cycle,
        :math:`s(t) = s(t - 2) \\ne s(t - 1)` (Goles-Chacc et al. 1985: the only other limit of symmetric
        synchronous dynamics).

        Args:
            states: ``(B, N)`` or ``(N,)`` probes of ±1 (0 for unknown neurons); for one ``(N,)`` state the
                result holds ``(N,)`` states, ``()`` flags and ``(steps + 1,)`` energies.
            mode: ``"async"`` (random order per probe and sweep) or ``"sync"`` (all neurons at once).
            max_steps: the most sweeps (``"async"``) or steps (``"sync"``).
            generator: the update orders' source for ``"async"``.

        ``mode`` and ``max_steps`` are checked before anything runs (also when no update is needed).
        """
        _check_mode(mode)
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
            raise ValueError(f"max_steps must be a non-negative int, got {max_steps!r}")
        s, single = self._batch(states)
        energies = [energy(s, self.weight, self.bias)]
        fixed = self.is_fixed_point(s)
        cycled = torch.zeros_like(fixed)
        before = None  # the state two steps back (sync only)
        steps = 0
        while steps < max_steps and not bool((fixed | cycled).all()):
            new = self.step(s, mode=mode, generator=generator)
            energies.append(energy(new, self.weight, self.bias))
            steps += 1
            fixed = self.is_fixed_point(new)
            if mode == "sync" and before is not None:
                cycled = ~fixed & torch.all(new == before, dim=-1)
            before, s = s, new
        e = torch.stack(energies)  # (steps + 1, B)
        if single:
            return HopfieldRun(states=s[0], steps=steps, converged=fixed[0], cycled=cycled[0], energies=e[:, 0])
        return HopfieldRun(states=s, steps=steps, converged=fixed, cycled=cycled, energies=e)


def period_two_example() -> tuple[ClassicalHopfield, Tensor]:
    """A network and a state that oscillate with period 2 under synchronous updates (exercise 8-6).

    Two neurons coupled antiferromagnetically (:math:`w_{12} = w_{21} = -1`) from ``s = (+1, +1)``: each
    sees the other's +1 and turns to -1, so the synchronous update gives ``(-1, -1)``, then ``(+1, +1)``
    again, forever, at the constant energy :math:`E = +1`. Asynchronously the first update reaches
    ``(-1, +1)`` (or ``(+1, -1)``), a fixed point at :math:`E = -1`.

    Returns:
        ``(network, state (1, 2))``.
    """
    w = torch.tensor([[0.0, -1.0], [-1.0, 0.0]], dtype=torch.float64)
    return ClassicalHopfield(w), torch.tensor([[1.0, 1.0]], dtype=torch.float64)
