"""Seed statistics (envs.statistics) against independent NumPy/SciPy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from rliable import metrics

from envs.statistics import summarize_over_seeds

TASKS = [f"task-{i}" for i in range(6)]


def per_seed_dicts(scores: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(TASKS, row.tolist(), strict=True)) for row in scores]


def interquartile_mean(values: np.ndarray) -> float:
    """25 % trimmed mean written out: drop floor(n/4) lowest and highest values."""
    ordered = np.sort(values.ravel())
    cut = len(ordered) // 4
    return float(ordered[cut : len(ordered) - cut].mean())


def stratified_bootstrap_ci(scores: np.ndarray, reps: int, seed: int) -> tuple[float, float]:
    """Percentile interval of the IQM, resampling seeds independently within each task."""
    rng = np.random.default_rng(seed)
    num_seeds, num_tasks = scores.shape
    stats = np.empty(reps)
    for r in range(reps):
        rows = rng.integers(0, num_seeds, size=(num_seeds, num_tasks))
        stats[r] = interquartile_mean(scores[rows, np.arange(num_tasks)])
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


@pytest.fixture(scope="module")
def scores() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.9, size=len(TASKS))
    return np.clip(base + rng.normal(0, 0.15, size=(7, len(TASKS))), 0, 1).round(2)


def test_means_and_standard_errors(scores):
    summary = summarize_over_seeds(per_seed_dicts(scores), bootstrap_reps=200)
    assert summary.num_seeds == 7 and summary.tasks == TASKS
    for t, name in enumerate(TASKS):
        assert summary.per_task_mean[name] == pytest.approx(np.mean(scores[:, t]))
        assert summary.per_task_sem[name] == pytest.approx(scipy.stats.sem(scores[:, t]))
    seed_means = scores.mean(axis=1)
    assert summary.mean == pytest.approx(seed_means.mean())
    assert summary.sem == pytest.approx(scipy.stats.sem(seed_means))


def test_iqm_and_its_bootstrap_interval(scores):
    summary = summarize_over_seeds(per_seed_dicts(scores), bootstrap_reps=4000, seed=1)
    assert summary.iqm == pytest.approx(interquartile_mean(scores))
    assert summary.iqm == pytest.approx(metrics.aggregate_iqm(scores))  # rliable's IQM
    low, high = stratified_bootstrap_ci(scores, reps=4000, seed=2)
    # Two independent Monte Carlo estimates of the same percentiles.
    assert summary.iqm_ci[0] == pytest.approx(low, abs=0.015)
    assert summary.iqm_ci[1] == pytest.approx(high, abs=0.015)
    assert summary.iqm_ci[0] <= summary.iqm <= summary.iqm_ci[1]
    assert summary.iqm_ci[1] - summary.iqm_ci[0] > 0.01


def test_reproducible_and_leaves_global_numpy_rng_alone(scores):
    before = np.random.get_state()[1].copy()
    first = summarize_over_seeds(per_seed_dicts(scores), bootstrap_reps=300, seed=4)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    second = summarize_over_seeds(per_seed_dicts(scores), bootstrap_reps=300, seed=4)
    assert first.iqm_ci == second.iqm_ci
    other = summarize_over_seeds(per_seed_dicts(scores), bootstrap_reps=300, seed=5)
    assert other.iqm_ci != first.iqm_ci
    text = first.format()
    assert "n=7 seeds" in text and "IQM" in text and "±" in text
    assert first.to_dict()["iqm_ci"] == list(first.iqm_ci)


def test_single_seed_and_constant_scores():
    one = summarize_over_seeds([{"a": 0.5, "b": 1.0}], bootstrap_reps=50)
    assert one.num_seeds == 1 and math.isnan(one.sem) and math.isnan(one.per_task_sem["a"])
    flat = summarize_over_seeds([{"a": 0.3, "b": 0.3}] * 4, bootstrap_reps=50)
    assert flat.iqm == pytest.approx(0.3) and flat.iqm_ci == pytest.approx((0.3, 0.3))
    assert flat.sem == 0.0


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ([], "empty"),
        ([{"a": 0.5}, {"b": 0.5}], r"missing \['a'\], extra \['b'\]"),
        ([{"a": 1.5}], r"\[0, 1\]"),
        ([{"a": float("nan")}], r"\[0, 1\]"),
    ],
)
def test_bad_input(runs, message):
    with pytest.raises(ValueError, match=message):
        summarize_over_seeds(runs, bootstrap_reps=10)
