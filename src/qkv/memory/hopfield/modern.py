"""The modern continuous Hopfield network (Ramsauer et al. 2020): its update rule is attention.

Shape legend: ``...`` leading dims that broadcast (a batch, heads); ``L`` state patterns (probes,
queries), ``N`` stored patterns (keys), ``D`` pattern width, ``Dv`` width of the pattern projections
(values; ``Dv = D`` for a pure associative memory).

Ramsauer et al. 2020, "Hopfield Networks is All You Need" (ICLR 2021), §2. Stored patterns
:math:`X = (x_1, \\dots, x_N)` and a state pattern :math:`\\xi`:

* energy (eq. 2): :math:`E = -\\mathrm{lse}(\\beta, X^\\top \\xi) + \\tfrac12 \\xi^\\top \\xi + \\beta^{-1} \\log N
  + \\tfrac12 M^2`, with :math:`\\mathrm{lse}(\\beta, z) = \\beta^{-1} \\log \\sum_i e^{\\beta z_i}` and
  :math:`M = \\max_i \\lVert x_i \\rVert`;
* update (eq. 3): :math:`\\xi^{\\mathrm{new}} = X \\operatorname{softmax}(\\beta X^\\top \\xi)`, which the
  paper derives with the concave-convex procedure, so the energy never increases, and which is
  **one call of** :func:`qkv.attend`: ``attend(xi, X, X, score="dot", scale=beta)`` — the state patterns
  are the queries, the stored patterns the keys *and* the values, the score the dot product scaled by
  :math:`\\beta`, the normaliser the softmax. :func:`update` is exactly that call; the test
  ``tests/memory/test_modern.py`` checks it against a direct transcription of eq. 3.
* convergence in one update (§2, the retrieval theorems): a pattern :math:`x_i` well separated from the others,
  :math:`\\Delta_i = x_i^\\top x_i - \\max_{j \\ne i} x_i^\\top x_j` (:func:`separation`) large compared with
  :math:`\\beta^{-1} \\log N`, is retrieved from a probe near it after one update with an error
  exponentially small in :math:`\\beta \\Delta_i`; the number of patterns that can be stored this way
  grows exponentially with ``D``.
* metastable states: when :math:`\\beta` is small compared with the separation of a group of similar
  patterns, the fixed point is an average over the group (a metastable state), and for
  :math:`\\beta \\to 0` the single global fixed point is the mean of all patterns. This is why retrieval
  "fails" with the transformer's default :math:`\\beta = 1/\\sqrt{D}` on correlated patterns (e.g.
  binarised digits): choose :math:`\\beta` large enough that :math:`\\beta \\Delta_i \\gg \\log N`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from qkv.functional.attention import attend
from qkv.functional.checks import check_tensor

__all__ = ["check_beta", "energy", "retrieve", "separation", "update"]


def check_beta(beta: object, name: str = "beta") -> float:
    """A positive finite real :math:`\\beta` as a float: ``TypeError`` for a non-real, ``ValueError`` otherwise."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise TypeError(f"{name} must be a positive finite real number, got {type(beta).__name__} {beta!r}")
    try:
        b = float(beta)
    except OverflowError:  # an int too large for a float
        b = math.inf
    if not (math.isfinite(b) and b > 0):
        raise ValueError(f"{name} must be a positive finite real number, got {beta!r}")
    return b



def _check(state: object, patterns: object) -> tuple[Tensor, Tensor]:
    xi = check_tensor("state", state)
    x = check_tensor("patterns", patterns)
    if xi.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"state (..., L, D) and patterns (..., N, D) must share D: got state {tuple(xi.shape)}, "
            f"patterns {tuple(x.shape)}"
        )
    return xi, x


def update(state: Tensor, patterns: Tensor, *, beta: float, values: Tensor | None = None,
           backend: str = "auto") -> Tensor:
    """One update :math:`\\xi^{\\mathrm{new}} = X \\operatorname{softmax}(\\beta X^\\top \\xi)` (Ramsauer et al. eq. 3).

    It is literally ``qkv.attend(state, patterns, patterns, score="dot", scale=beta).output``: state
    patterns as queries, stored patterns as keys and values.

    Args:
        state: ``(..., L, D)`` state patterns (probes).
        patterns: ``(..., N, D)`` stored patterns.
        beta: inverse temperature :math:`\\beta > 0`.
        values: ``(..., N, Dv)`` pattern projections read instead of the patterns (a hetero-associative
            memory); default the patterns themselves.
        backend: as in :func:`qkv.attend`.

    Returns:
        ``(..., L, Dv)`` the new state patterns.
    """
    xi, x = _check(state, patterns)
    b = check_beta(beta)
    v = x if values is None else check_tensor("values", values)
    if v.shape[-2] != x.shape[-2]:
        raise ValueError(
            f"values (..., N, Dv) must hold one row per stored pattern of patterns (..., N, D): got values "
            f"{tuple(v.shape)}, patterns {tuple(x.shape)}"
        )
    return attend(xi, x, v, score="dot", scale=b, backend=backend).output


def retrieve(state: Tensor, patterns: Tensor, *, beta: float, steps: int = 1, tol: float | None = None,
             backend: str = "auto") -> Tensor:
    """Iterate :func:`update` ``steps`` times (or until the state moves less than ``tol``).

    Args:
        state: ``(..., L, D)`` probes.
        patterns: ``(..., N, D)`` stored patterns.
        beta: inverse temperature.
        steps: the most updates (one suffices for well-separated patterns).
        tol: stop when the largest change of any component is below ``tol`` (a non-negative finite
            real; ``None``: always do ``steps`` updates).
        backend: as in :func:`qkv.attend`.

    Returns:
        ``(..., L, D)`` the retrieved states.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if tol is not None:
        if isinstance(tol, bool) or not isinstance(tol, (int, float)):
            raise TypeError(f"tol must be a non-negative finite real number or None, got {type(tol).__name__}")
        if not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"tol must be a non-negative finite real number or None, got {tol!r}")
    xi = state
    for _ in range(steps):
        new = update(xi, patterns, beta=beta, backend=backend)
        moved = (new - xi).abs().max() if new.numel() else torch.tensor(0.0)
        xi = new
        if tol is not None and float(moved) < tol:
            break
    return xi


def energy(state: Tensor, patterns: Tensor, *, beta: float) -> Tensor:
    """The energy (Ramsauer et al. eq. 2),
    :math:`E = -\\mathrm{lse}(\\beta, X^\\top\\xi) + \\tfrac12 \\xi^\\top\\xi + \\beta^{-1}\\log N + \\tfrac12 M^2`.

    Args:
        state: ``(..., L, D)`` state patterns.
        patterns: ``(..., N, D)`` stored patterns.
        beta: inverse temperature.

    Returns:
        ``(..., L)`` energies (non-negative: the constant terms make the minimum ``>= 0``).

    The lse is computed as :math:`\\max_i z_i + \\beta^{-1}\\log\\sum_i e^{\\beta (z_i - \\max_j z_j)}`, which
    stays finite for any finite :math:`\\beta` (``beta * scores`` may overflow; the shifted scores, in float64,
    cannot).
    The energy needs at least one stored pattern (:math:`\\log N`); ``N = 0`` is a ``ValueError``.
    """
    xi, x = _check(state, patterns)
    b = check_beta(beta)
    n = x.shape[-2]
    if n < 1:
        raise ValueError(f"patterns (..., N, D) must hold at least one stored pattern for the energy "
                         f"(log N), got shape {tuple(x.shape)}")
    scores = torch.einsum("...ld,...nd->...ln", xi, x)  # (..., L, N): X^T xi
    top = scores.amax(dim=-1, keepdim=True).detach()  # (..., L, 1): the shift (its gradient cancels)
    # in float64: a beta beyond the input dtype's range (1e300 in float32 is inf, and 0 * inf is NaN) stays finite
    shifted = torch.exp((scores - top).double() * b).sum(-1)  # (..., L), >= 1: the largest term is exp(0)
    lse = top.squeeze(-1) + (torch.log(shifted) / b).to(scores.dtype)  # (..., L)
    big_m = x.norm(dim=-1).amax(dim=-1, keepdim=True)  # (..., 1): M
    return -lse + 0.5 * (xi * xi).sum(-1) + math.log(n) / b + 0.5 * big_m**2


def separation(patterns: Tensor) -> Tensor:
    """The separation :math:`\\Delta_i = x_i^\\top x_i - \\max_{j \\ne i} x_i^\\top x_j` of each stored pattern
    (Ramsauer et al. 2020, §2).

    Args:
        patterns: ``(..., N, D)`` with ``N >= 2``.

    Returns:
        ``(..., N)``; retrieval in one update needs it large compared with :math:`\\beta^{-1} \\log N`.
    """
    x = check_tensor("patterns", patterns)
    if x.shape[-2] < 2:
        raise ValueError(f"patterns must hold at least 2 patterns (..., N, D), got shape {tuple(x.shape)}")
    gram = torch.einsum("...nd,...md->...nm", x, x)  # (..., N, N)
    self_dot = torch.diagonal(gram, dim1=-2, dim2=-1)  # (..., N)
    eye = torch.eye(x.shape[-2], dtype=torch.bool, device=x.device)
    others = gram.masked_fill(eye, float("-inf")).amax(-1)  # (..., N)
    return self_dot - others
