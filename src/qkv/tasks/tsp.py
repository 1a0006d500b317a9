"""Small planar travelling-salesman problems with exact optimal tours (Vinyals et al. 2015, §4.3).

Shape legend: ``B`` instances, ``N`` cities, ``2^(N-1)`` subsets of the cities other than city 0.

Cities are drawn uniformly from the unit square; the training answers are optimal tours, as in the paper,
computed exactly by the Held–Karp dynamic programme (Held and Karp 1962; Bellman 1962):

.. math::  C(S, j) = \\min_{k \\in S \\setminus \\{j\\}} C(S \\setminus \\{j\\}, k) + d_{kj},
           \\qquad C(\\{j\\}, j) = d_{0j}, \\qquad \\text{opt} = \\min_j C(\\{1..N-1\\}, j) + d_{j0},

vectorised over instances and over the end city ``j`` with numpy (``O(2^N N^2)`` per instance, fine for
``N <= 12``). A tour starts at city 0; of its two directions the one whose second city has the smaller index
is kept (a tour and its reverse are the same cycle), so every instance has one canonical answer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from qkv.functional.checks import check_positive_int

__all__ = ["TspData", "brute_force_tsp", "canonical_tour", "held_karp", "make_tsp", "tour_length"]

_MAX_N = 13


@dataclass(frozen=True)
class TspData:
    """``cities (B, N, 2)``, ``tours (B, N)`` optimal tours from city 0, and their ``lengths (B,)``."""

    cities: Tensor
    tours: Tensor
    lengths: Tensor


def tour_length(cities: np.ndarray | Tensor, tour: np.ndarray | Tensor) -> np.ndarray:
    """Length of the closed tours: ``cities (..., N, 2)``, ``tour (..., N)`` -> ``(...)`` (float64)."""
    c = np.asarray(cities, dtype=np.float64)
    t = np.asarray(tour, dtype=np.int64)
    p = np.take_along_axis(c, t[..., None], axis=-2)  # (..., N, 2) in visiting order
    return np.linalg.norm(p - np.roll(p, -1, axis=-2), axis=-1).sum(-1)


def canonical_tour(tour: np.ndarray) -> np.ndarray:
    """The same cycle starting at city 0, in the direction whose second city has the smaller index."""
    t = np.asarray(tour, dtype=np.int64)
    t = np.roll(t, -int(np.argmax(t == 0)))
    if len(t) > 2 and t[1] > t[-1]:
        t = np.concatenate([t[:1], t[1:][::-1]])
    return t


def held_karp(cities: np.ndarray | Tensor, *, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact optimal tours of ``cities (B, N, 2)`` (``N <= 13``): ``(tours (B, N), lengths (B,))``.

    Subsets of cities ``1..N-1`` are bitmasks; every subset is reached after its sub-subsets (a smaller
    integer), so one pass in increasing order fills the table ``C (B, 2^(N-1), N-1)``. Instances are processed
    in chunks (``chunk`` at a time; default: about 64 MB of table).
    """
    c = np.asarray(cities, dtype=np.float64)
    if c.ndim != 3 or c.shape[-1] != 2 or c.shape[1] < 2:
        raise ValueError(f"cities must have shape (B, N >= 2, 2), got {c.shape}")
    B, N, _ = c.shape
    if N > _MAX_N:
        raise ValueError(f"held_karp takes N <= {_MAX_N} cities (2^(N-1) N^2 work), got {N}")
    m = N - 1
    if chunk is None:
        chunk = max(1, (64 << 20) // (8 * (1 << m) * m + 1))
    chunk = check_positive_int("chunk", chunk)
    if N == 2:
        return np.tile(np.arange(2), (B, 1)), tour_length(c, np.tile(np.arange(2), (B, 1)))
    tours, lengths = np.empty((B, N), dtype=np.int64), np.empty(B)
    for lo in range(0, B, chunk):
        t, length = _held_karp_chunk(c[lo: lo + chunk])
        tours[lo: lo + chunk], lengths[lo: lo + chunk] = t, length
    return tours, lengths


def _held_karp_chunk(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    B, N, _ = c.shape
    m = N - 1  # cities 1..N-1 are bits 0..m-1
    d = np.linalg.norm(c[:, :, None] - c[:, None, :], axis=-1)  # (B, N, N)
    dm = np.ascontiguousarray(np.moveaxis(d[:, 1:, 1:], 0, -1))  # (m, m, B) between the non-start cities
    full = (1 << m) - 1
    # C[S, j, b]: shortest path from city 0 through the set S ending at j (inf unless j in S); batch last, so
    # that gathering subsets copies contiguous rows
    C = np.full((1 << m, m, B), np.inf)
    parent = np.zeros((1 << m, m, B), dtype=np.int8)
    masks = np.arange(1 << m)
    bits = (masks[:, None] >> np.arange(m)) & 1  # (2^m, m): membership
    size = bits.sum(1)
    for j in range(m):
        C[1 << j, j] = d[:, 0, j + 1]
    for s in range(2, m + 1):
        level = masks[size == s]  # subsets of this size
        for j in range(m):
            S = level[bits[level, j] == 1]  # subsets containing j
            cand = C[S ^ (1 << j)] + dm[None, :, j]  # (s', m, B): path ending at k (inf if k not in S), then k -> j
            k = cand.argmin(1)  # (s', B)
            parent[S, j] = k
            C[S, j] = np.take_along_axis(cand, k[:, None], 1)[:, 0]
    close = C[full] + np.moveaxis(d[:, 1:, 0], 0, -1)  # (m, B): back to city 0
    last = close.argmin(0)
    lengths = close[last, np.arange(B)]
    tours = np.zeros((B, N), dtype=np.int64)
    S = np.full(B, full)
    j = last
    for pos in range(N - 1, 0, -1):  # walk the parents back from the last city
        tours[:, pos] = j + 1
        k = parent[S, j, np.arange(B)]
        S = S ^ (1 << j)
        j = k.astype(np.int64)
    flip = tours[:, 1] > tours[:, -1]  # canonical direction (see canonical_tour)
    tours[flip, 1:] = tours[flip, 1:][:, ::-1]
    return tours, lengths


def brute_force_tsp(cities: np.ndarray | Tensor) -> tuple[np.ndarray, float]:
    """The optimum of one instance ``cities (N, 2)`` by trying every tour from city 0 (a reference for tests)."""
    c = np.asarray(cities, dtype=np.float64)
    n = len(c)
    perms = np.array([(0, *p) for p in itertools.permutations(range(1, n))])  # ((N-1)!, N)
    lengths = tour_length(np.broadcast_to(c, (len(perms), n, 2)), perms)
    best = int(lengths.argmin())
    return canonical_tour(perms[best]), float(lengths[best])


def make_tsp(count: int, n: int, *, generator: torch.Generator) -> TspData:
    """``count`` instances of ``n`` uniform cities with their optimal tours (Held–Karp)."""
    count, n = check_positive_int("count", count), check_positive_int("n", n)
    if not 3 <= n <= _MAX_N:
        raise ValueError(f"n must be in [3, {_MAX_N}] for exact tours, got {n}")
    cities = torch.rand(count, n, 2, generator=generator, dtype=torch.float64)  # (B, N, 2)
    tours, lengths = held_karp(cities.numpy())
    return TspData(cities.float(), torch.from_numpy(tours), torch.from_numpy(lengths))
