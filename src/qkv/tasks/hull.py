"""Planar convex hulls as pointer sequences (Vinyals et al. 2015, §4.2), with the paper's two measures.

Shape legend: ``B`` point sets, ``N`` points per set, ``M`` hull vertices.

Points are drawn uniformly from the unit square. The answer is the hull's vertices from
:class:`scipy.spatial.ConvexHull`, in counter-clockwise order, starting from the vertex with the lowest
index (the paper's canonical form). Two measures of a predicted sequence:

* **accuracy**: the prediction is exactly the true hull sequence, up to a cyclic rotation (the paper counts
  "the output sequence is the same up to cyclic rotation");
* **area coverage**: the area of the predicted polygon over the true hull's area, and 0 when the prediction
  is not a simple polygon (fewer than 3 vertices, a repeated vertex, or crossing edges) — "area covered of the
  true convex hull (assuming the output represented a simple polygon)".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import ConvexHull
from torch import Tensor

from qkv.functional.checks import check_positive_int

__all__ = ["HullData", "area_coverage", "hull_accuracy", "hull_sequence", "is_simple_polygon", "make_hulls",
           "polygon_area"]


@dataclass(frozen=True)
class HullData:
    """``points (B, N, 2)``, ``hulls (B, M)`` vertex indices padded with ``-1`` and ``sizes (B,)`` hull sizes."""

    points: Tensor
    hulls: Tensor
    sizes: Tensor


def hull_sequence(points: np.ndarray) -> list[int]:
    """Indices of the hull of ``points (N, 2)``: scipy's counter-clockwise order, starting at the lowest index."""
    vertices = [int(v) for v in ConvexHull(points).vertices]  # counter-clockwise for 2-D input
    start = vertices.index(min(vertices))
    return vertices[start:] + vertices[:start]


def make_hulls(count: int, n: int, *, generator: torch.Generator) -> HullData:
    """``count`` sets of ``n >= 3`` uniform points in the unit square and their hull sequences."""
    count, n = check_positive_int("count", count), check_positive_int("n", n)
    if n < 3:
        raise ValueError(f"n must be >= 3 for a planar hull, got {n}")
    points = torch.rand(count, n, 2, generator=generator, dtype=torch.float64)  # (B, N, 2)
    seqs = [hull_sequence(p) for p in points.numpy()]
    sizes = torch.tensor([len(s) for s in seqs])
    hulls = torch.full((count, int(sizes.max())), -1, dtype=torch.long)  # (B, M)
    for i, s in enumerate(seqs):
        hulls[i, : len(s)] = torch.tensor(s)
    return HullData(points.float(), hulls, sizes)


def polygon_area(points: np.ndarray, order: Sequence[int]) -> float:
    """Signed shoelace area of the polygon visiting ``points[order]`` (positive when counter-clockwise)."""
    p = np.asarray(points, dtype=np.float64)[list(order)]
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def _on_segment(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> bool:
    return min(p[0], r[0]) <= q[0] <= max(p[0], r[0]) and min(p[1], r[1]) <= q[1] <= max(p[1], r[1])


def _segments_meet(p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, p4: np.ndarray) -> bool:
    """Closed segments ``p1p2`` and ``p3p4`` share a point (orientation tests, collinear cases included)."""
    d1, d2 = _cross(p3, p4, p1), _cross(p3, p4, p2)
    d3, d4 = _cross(p1, p2, p3), _cross(p1, p2, p4)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return ((d1 == 0 and _on_segment(p3, p1, p4)) or (d2 == 0 and _on_segment(p3, p2, p4))
            or (d3 == 0 and _on_segment(p1, p3, p2)) or (d4 == 0 and _on_segment(p1, p4, p2)))


def is_simple_polygon(points: np.ndarray, order: Sequence[int]) -> bool:
    """``points[order]`` is a simple polygon: >= 3 distinct vertices, no two non-adjacent edges meet,
    adjacent edges meet only at their shared vertex, and the area is not zero."""
    order = list(order)
    m = len(order)
    if m < 3 or len(set(order)) != m:
        return False
    p = np.asarray(points, dtype=np.float64)[order]
    for i in range(m):
        a, b = p[i], p[(i + 1) % m]
        for j in range(i + 1, m):
            c, d = p[j], p[(j + 1) % m]
            if j == i + 1 or (i == 0 and j == m - 1):  # adjacent: they share one vertex, must not fold back
                shared, other_1, other_2 = (b, a, d) if j == i + 1 else (a, b, c)
                if _cross(shared, other_1, other_2) == 0 and np.dot(other_1 - shared, other_2 - shared) > 0:
                    return False
                continue
            if _segments_meet(a, b, c, d):
                return False
    return abs(polygon_area(points, order)) > 0


def hull_accuracy(predicted: Sequence[int], truth: Sequence[int]) -> bool:
    """The predicted vertex sequence equals the true one up to a cyclic rotation (same direction)."""
    predicted, truth = list(predicted), list(truth)
    if len(predicted) != len(truth) or not truth:
        return False
    start = predicted.index(truth[0]) if truth[0] in predicted else -1
    return start >= 0 and predicted[start:] + predicted[:start] == truth


def area_coverage(points: np.ndarray, predicted: Sequence[int], truth: Sequence[int]) -> float:
    """Area of the predicted polygon over the true hull's area; 0 when the prediction is not a simple polygon."""
    if not is_simple_polygon(points, predicted):
        return 0.0
    return abs(polygon_area(points, predicted)) / abs(polygon_area(points, truth))
