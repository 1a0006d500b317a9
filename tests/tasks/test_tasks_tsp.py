"""Held-Karp against brute force over every tour (n <= 8), tour length, canonical tours, the generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qkv.tasks.tsp import brute_force_tsp, canonical_tour, held_karp, make_tsp, tour_length


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 8])
def test_held_karp_equals_brute_force(n):
    rng = np.random.default_rng(n)
    cities = rng.random((12, n, 2))
    tours, lengths = held_karp(cities, chunk=5)  # several chunks
    for b in range(12):
        best_tour, best = brute_force_tsp(cities[b])
        assert lengths[b] == pytest.approx(best, abs=1e-12)
        assert tour_length(cities[b], tours[b]) == pytest.approx(best, abs=1e-12)
        assert sorted(tours[b].tolist()) == list(range(n)) and tours[b][0] == 0
        assert tours[b].tolist() == best_tour.tolist()  # both canonical, the optimum is unique in general position


def test_tour_length_by_hand_and_canonical_form():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    assert tour_length(square, [0, 1, 2, 3]) == pytest.approx(4.0)
    assert tour_length(square, [0, 2, 1, 3]) == pytest.approx(2 + 2 * np.sqrt(2))
    assert canonical_tour(np.array([2, 3, 0, 1])).tolist() == [0, 1, 2, 3]
    assert canonical_tour(np.array([3, 2, 1, 0])).tolist() == [0, 1, 2, 3]
    same = canonical_tour(np.array([1, 3, 0, 2]))
    assert tour_length(square, same) == pytest.approx(tour_length(square, [1, 3, 0, 2]))


def test_make_tsp_is_seeded_and_optimal():
    a = make_tsp(30, 6, generator=torch.Generator().manual_seed(0))
    b = make_tsp(30, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.tours, b.tours) and a.cities.shape == (30, 6, 2)
    np.testing.assert_allclose(tour_length(a.cities.double().numpy(), a.tours.numpy()), a.lengths.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="n must be"):
        make_tsp(3, 14, generator=torch.Generator())
    with pytest.raises(ValueError, match="cities"):
        held_karp(np.zeros((2, 5, 3)))
