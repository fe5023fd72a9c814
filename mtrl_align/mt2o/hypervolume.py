"""Hypervolume of a set of loss vectors (minimization) against a reference point.

``hypervolume(points [P, T], reference [T])`` is the Lebesgue measure of the region dominated by
the points and bounded by the reference point: the union of the boxes [p, reference]. Points
that do not strictly dominate the reference in every coordinate add nothing.

Exact algorithms here for T = 1, 2 (sort and sweep) and T = 3 (sweep over the third objective,
adding the 2-D hypervolume of each slab); T >= 4 uses ``moocore.hypervolume`` (the
maintained C implementation of the WFG/FPL algorithms), an optional dependency.
"""

from __future__ import annotations

import numpy as np


def _prepare(points: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    if points.ndim == 1:
        points = points.reshape(1, -1) if points.size else points.reshape(0, reference.size)
    if points.ndim != 2 or points.shape[1] != reference.size:
        raise ValueError(
            f"points must have shape [P, T] with T = len(reference) = {reference.size}, "
            f"got {points.shape}"
        )
    if not np.isfinite(reference).all():
        raise ValueError(f"reference point must be finite, got {reference.tolist()}")
    if np.isnan(points).any():
        raise ValueError("points contain NaN")
    return points[(points < reference).all(axis=1)], reference


def _hv2d(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact 2-D hypervolume; ``points`` already strictly inside the reference box."""
    if points.shape[0] == 0:
        return 0.0
    order = np.lexsort((points[:, 1], points[:, 0]))  # by x, then y
    volume, best_y = 0.0, reference[1]
    for x, y in points[order]:
        if y < best_y:
            volume += (reference[0] - x) * (best_y - y)
            best_y = y
    return float(volume)


def _hv3d(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact 3-D hypervolume: slabs between consecutive z values times the 2-D front area."""
    if points.shape[0] == 0:
        return 0.0
    order = np.argsort(points[:, 2], kind="stable")
    pts = points[order]
    volume = 0.0
    for i in range(pts.shape[0]):
        z_next = pts[i + 1, 2] if i + 1 < pts.shape[0] else reference[2]
        height = z_next - pts[i, 2]
        if height > 0:
            volume += height * _hv2d(pts[: i + 1, :2], reference[:2])
    return float(volume)


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume of ``points`` [P, T] (lower is better) w.r.t. ``reference`` [T].

    Exact for T <= 3 (this module); T >= 4 requires the ``moocore`` package.
    """
    points, reference = _prepare(points, reference)
    dims = reference.size
    if dims == 1:
        return float(reference[0] - points[:, 0].min()) if points.shape[0] else 0.0
    if dims == 2:
        return _hv2d(points, reference)
    if dims == 3:
        return _hv3d(points, reference)
    if points.shape[0] == 0:
        return 0.0
    try:
        import moocore
    except ModuleNotFoundError:
        raise ValueError(
            f"hypervolume in {dims} dimensions needs the 'moocore' package (pip install moocore)"
        ) from None
    return float(moocore.hypervolume(points, ref=reference))


def nondominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask [P] of the points not weakly dominated by another (duplicates: first kept)."""
    points = np.asarray(points, dtype=np.float64)
    count = points.shape[0]
    keep = np.ones(count, dtype=bool)
    for i in range(count):
        others = np.delete(np.arange(count), i)
        le = (points[others] <= points[i]).all(axis=1)
        lt = (points[others] < points[i]).any(axis=1)
        dominated = (le & lt).any()
        duplicate_before = ((points[others] == points[i]).all(axis=1) & (others < i)).any()
        keep[i] = not (dominated or duplicate_before)
    return keep
