"""Hypervolume: hand-computed cases, inclusion-exclusion, Monte-Carlo and moocore as oracles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mtrl_align.mt2o.hypervolume import hypervolume, nondominated


def inclusion_exclusion(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact union volume of the boxes [p, reference] by inclusion-exclusion (small sets)."""
    points = points[(points < reference).all(axis=1)]
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(range(len(points)), size):
            corner = points[list(subset)].max(axis=0)
            total += (-1) ** (size + 1) * np.prod(reference - corner)
    return float(total)


def test_two_d_hand_cases():
    ref = np.array([3.0, 3.0])
    assert hypervolume(np.array([[1.0, 2.0]]), ref) == pytest.approx(2.0)
    # staircase (1,2),(2,1): 2 + 2 - overlap 1 = 3
    assert hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), ref) == pytest.approx(3.0)
    # a dominated point and a duplicate add nothing
    assert hypervolume(np.array([[1.0, 2.0], [2.0, 1.0], [2.5, 2.5], [1.0, 2.0]]), ref) == (
        pytest.approx(3.0)
    )
    # points on or beyond the reference contribute nothing
    assert hypervolume(np.array([[3.0, 0.0], [4.0, -1.0]]), ref) == 0.0
    assert hypervolume(np.zeros((0, 2)), ref) == 0.0


def test_three_d_hand_cases():
    ref = np.array([2.0, 2.0, 2.0])
    assert hypervolume(np.array([[0.0, 0.0, 0.0]]), ref) == pytest.approx(8.0)
    # three 2x1x1 boxes; every pair and the triple meet in the unit cube [1, 2]^3:
    # 3 * 2 - 3 * 1 + 1 = 4
    points = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert hypervolume(points, ref) == pytest.approx(4.0)


def test_one_d():
    assert hypervolume(np.array([[0.5], [0.2]]), np.array([1.0])) == pytest.approx(0.8)


@pytest.mark.parametrize("dims", [2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_inclusion_exclusion_on_random_sets(dims, seed):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0.0, 1.0, size=(7, dims))
    ref = np.full(dims, 1.1)
    assert hypervolume(points, ref) == pytest.approx(inclusion_exclusion(points, ref), rel=1e-12)


def test_matches_monte_carlo_estimate():
    rng = np.random.default_rng(3)
    # points on a concave front in 3-D
    directions = np.abs(rng.normal(size=(40, 3)))
    points = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    ref = np.array([1.2, 1.2, 1.2])
    samples = rng.uniform(0.0, 1.2, size=(400_000, 3))
    dominated = np.zeros(len(samples), dtype=bool)
    for p in points:
        dominated |= (samples >= p).all(axis=1)
    estimate = dominated.mean() * 1.2**3
    stderr = np.sqrt(dominated.mean() * (1 - dominated.mean()) / len(samples)) * 1.2**3
    assert abs(hypervolume(points, ref) - estimate) < 4 * stderr


def test_matches_moocore_on_larger_sets():
    moocore = pytest.importorskip("moocore")
    rng = np.random.default_rng(4)
    for dims in (2, 3):
        points = rng.uniform(size=(60, dims))
        ref = np.full(dims, 1.0)
        assert hypervolume(points, ref) == pytest.approx(
            float(moocore.hypervolume(points, ref=ref)), rel=1e-12
        )


def test_invariant_to_order_and_monotone_in_points():
    rng = np.random.default_rng(5)
    points = rng.uniform(size=(20, 3))
    ref = np.ones(3) * 1.5
    base = hypervolume(points, ref)
    assert hypervolume(points[rng.permutation(20)], ref) == pytest.approx(base, rel=1e-12)
    assert hypervolume(np.vstack([points, rng.uniform(size=(1, 3))]), ref) >= base - 1e-12
    assert hypervolume(points[nondominated(points)], ref) == pytest.approx(base, rel=1e-12)


def test_nondominated_mask():
    points = np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0], [1.0, 2.0], [0.5, 3.0]])
    assert nondominated(points).tolist() == [True, True, False, False, True]


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        hypervolume(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        hypervolume(np.array([[np.nan, 0.0]]), np.ones(2))
    with pytest.raises(ValueError, match="finite"):
        hypervolume(np.zeros((1, 2)), np.array([np.inf, 1.0]))
