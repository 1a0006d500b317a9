"""The hull task and its measures against scipy and an independent brute-force hull test on random point sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import ConvexHull

from qkv.tasks.hull import area_coverage, hull_accuracy, hull_sequence, is_simple_polygon, make_hulls, polygon_area


def _cross(u: np.ndarray, v: np.ndarray) -> float:
    return float(u[0] * v[1] - u[1] * v[0])


def _brute_hull(points: np.ndarray) -> set[int]:
    """Vertices by definition: i is a hull vertex iff some line through it has every other point strictly on one side
    — checked as: i is not inside (or on) any triangle of three other points (general position)."""
    n = len(points)
    out = set()
    for i in range(n):
        inside = False
        others = [j for j in range(n) if j != i]
        for a in range(len(others)):
            for b in range(a + 1, len(others)):
                for c in range(b + 1, len(others)):
                    p, q, r = points[others[a]], points[others[b]], points[others[c]]
                    d = [_cross(q - p, points[i] - p), _cross(r - q, points[i] - q), _cross(p - r, points[i] - r)]
                    if all(x > 0 for x in d) or all(x < 0 for x in d):
                        inside = True
        if not inside:
            out.add(i)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_ground_truth_is_scipys_hull_counter_clockwise_from_the_lowest_index(seed):
    rng = np.random.default_rng(seed)
    pts = rng.random((9, 2))
    seq = hull_sequence(pts)
    hull = ConvexHull(pts)
    assert set(seq) == set(hull.vertices.tolist()) == _brute_hull(pts)
    assert seq[0] == min(seq)
    assert polygon_area(pts, seq) == pytest.approx(hull.volume)  # positive: counter-clockwise
    for i in range(len(seq)):  # every other point lies left of every edge
        a, b = pts[seq[i]], pts[seq[(i + 1) % len(seq)]]
        assert all(_cross(b - a, pts[j] - a) >= 0 for j in range(9))


def test_make_hulls_pads_and_is_seeded():
    d1 = make_hulls(50, 7, generator=torch.Generator().manual_seed(3))
    d2 = make_hulls(50, 7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(d1.hulls, d2.hulls) and d1.points.shape == (50, 7, 2)
    for i in range(50):
        m = int(d1.sizes[i])
        assert torch.all(d1.hulls[i, m:] == -1)
        assert d1.hulls[i, :m].tolist() == hull_sequence(d1.points[i].double().numpy())
    with pytest.raises(ValueError, match="n must be >= 3"):
        make_hulls(2, 2, generator=torch.Generator())


@pytest.mark.parametrize("seed", range(20))
def test_checker_on_random_point_sets(seed):
    rng = np.random.default_rng(100 + seed)
    pts = rng.random((int(rng.integers(5, 15)), 2))
    truth = hull_sequence(pts)
    area = ConvexHull(pts).volume
    m = len(truth)
    # the true sequence, any rotation of it: correct, full coverage
    for r in range(m):
        rot = truth[r:] + truth[:r]
        assert hull_accuracy(rot, truth) and area_coverage(pts, rot, truth) == pytest.approx(1.0)
    # the reverse direction: the same polygon (coverage 1), not the same sequence
    assert not hull_accuracy(truth[::-1], truth)
    assert area_coverage(pts, truth[::-1], truth) == pytest.approx(1.0)
    # a vertex missing: not correct, coverage = that polygon's area over scipy's hull area
    short = truth[:-1]
    assert not hull_accuracy(short, truth)
    expected = ConvexHull(pts[short]).volume / area if m > 3 else 0.0
    assert area_coverage(pts, short, truth) == pytest.approx(expected)
    # an interior point inserted: a simple polygon inside the hull (area below 1) unless the insertion crosses
    inner = [i for i in range(len(pts)) if i not in truth]
    if inner:
        cand = [*truth[:1], inner[0], *truth[1:]]
        cov = area_coverage(pts, cand, truth)
        assert not hull_accuracy(cand, truth)
        assert cov == 0.0 or cov < 1.0
        assert (cov > 0) == is_simple_polygon(pts, cand)
    # two vertices swapped in a hull of >= 4: the polygon crosses itself
    if m >= 4:
        bow = [truth[1], truth[0], *truth[2:]]
        assert not is_simple_polygon(pts, bow) and area_coverage(pts, bow, truth) == 0.0
    # repeats and too few points are not polygons
    assert area_coverage(pts, [*truth, truth[0]], truth) == 0.0
    assert area_coverage(pts, truth[:2], truth) == 0.0


def test_simple_polygon_edge_cases():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0]], dtype=float)
    assert is_simple_polygon(square, [0, 1, 2, 3])
    assert not is_simple_polygon(square, [0, 2, 1, 3])  # a bow tie
    assert not is_simple_polygon(square, [0, 1, 4])  # collinear: zero area, folds back
    assert is_simple_polygon(square, [0, 4, 1, 2, 3])  # a straight angle is still simple
