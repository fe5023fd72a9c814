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


def pooled_bootstrap_ci(scores: np.ndarray, reps: int, seed: int) -> tuple[float, float]:
    """The non-stratified interval (whole seeds resampled, all tasks together): the wrong
    estimator, written here to show the test can tell the two apart."""
    rng = np.random.default_rng(seed)
    stats = np.empty(reps)
    for r in range(reps):
        stats[r] = interquartile_mean(scores[rng.integers(0, len(scores), size=len(scores))])
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


@pytest.fixture(scope="module")
def seed_correlated_scores() -> np.ndarray:
    """Scores with a strong seed effect shared by all tasks: resampling whole seeds keeps it,
    stratifying by task averages it out, so the two intervals differ by a factor of ~2."""
    rng = np.random.default_rng(3)
    level = rng.uniform(0.1, 0.9, size=8)
    noise = rng.normal(0, 0.03, size=(8, len(TASKS)))
    return np.clip(level[:, None] + noise + np.linspace(-0.05, 0.05, len(TASKS)), 0, 1).round(3)


def test_iqm_and_its_bootstrap_interval(scores, seed_correlated_scores):
    for data in (scores, seed_correlated_scores):
        summary = summarize_over_seeds(per_seed_dicts(data), bootstrap_reps=4000, seed=1)
        assert summary.iqm == pytest.approx(interquartile_mean(data))
        assert summary.iqm == pytest.approx(metrics.aggregate_iqm(data))  # rliable's IQM
        low, high = stratified_bootstrap_ci(data, reps=4000, seed=2)
        # Two independent Monte Carlo estimates of the same percentiles.
        assert summary.iqm_ci[0] == pytest.approx(low, abs=0.015)
        assert summary.iqm_ci[1] == pytest.approx(high, abs=0.015)
        assert summary.iqm_ci[0] <= summary.iqm <= summary.iqm_ci[1]
        assert summary.iqm_ci[1] - summary.iqm_ci[0] > 0.01
    # On the seed-correlated scores the pooled (non-stratified) interval is far off the
    # stratified one, beyond the tolerance above: a pooled bootstrap would fail this test.
    pooled = pooled_bootstrap_ci(seed_correlated_scores, reps=4000, seed=2)
    stratified = stratified_bootstrap_ci(seed_correlated_scores, reps=4000, seed=2)
    assert abs(pooled[0] - stratified[0]) > 0.05 and abs(pooled[1] - stratified[1]) > 0.05


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


# --- two rows against each other: Δ mean success and probability of improvement ---


def exact_bootstrap_difference_ci(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Percentiles of mean(x*) - mean(y*) over *every* equally likely pair of resamples."""
    import itertools

    x_means = [np.mean(c) for c in itertools.product(x, repeat=len(x))]
    y_means = [np.mean(c) for c in itertools.product(y, repeat=len(y))]
    differences = np.subtract.outer(np.asarray(x_means), np.asarray(y_means)).ravel()
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(low), float(high)


def test_mean_difference_matches_the_exact_bootstrap_distribution():
    from envs.statistics import mean_difference_interval

    x = np.array([0.30, 0.45, 0.25])
    y = np.array([0.20, 0.10, 0.35, 0.15])
    difference, (low, high) = mean_difference_interval(x, y, reps=40_000, seed=3)
    assert difference == pytest.approx(x.mean() - y.mean())
    exact_low, exact_high = exact_bootstrap_difference_ci(x, y)
    assert low == pytest.approx(exact_low, abs=0.01)
    assert high == pytest.approx(exact_high, abs=0.01)
    assert mean_difference_interval(x, y, seed=5) == mean_difference_interval(x, y, seed=5)


def stratified_improvement_ci(
    x: np.ndarray, y: np.ndarray, reps: int, seed: int
) -> tuple[float, float]:
    """Percentile interval of P(X > Y), seeds resampled within every task, X and Y apart."""
    rng = np.random.default_rng(seed)
    tasks = x.shape[1]
    stats = np.empty(reps)
    for r in range(reps):
        xs = x[rng.integers(0, len(x), size=(len(x), tasks)), np.arange(tasks)]
        ys = y[rng.integers(0, len(y), size=(len(y), tasks)), np.arange(tasks)]
        # (sign + 1) / 2 is 1 for a win, 1/2 for a tie, 0 for a loss
        stats[r] = ((np.sign(xs[:, None, :] - ys[None, :, :]) + 1) / 2).mean()
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def test_probability_of_improvement_matches_rliable_and_mann_whitney(scores):
    from envs.statistics import probability_of_improvement

    rng = np.random.default_rng(11)
    other = np.clip(scores[:5] + rng.normal(0.05, 0.1, size=(5, len(TASKS))), 0, 1).round(1)
    point, (low, high) = probability_of_improvement(other, scores, reps=4000, seed=2)
    assert point == pytest.approx(metrics.probability_of_improvement(other, scores))
    u = [scipy.stats.mannwhitneyu(other[:, t], scores[:, t]).statistic for t in range(len(TASKS))]
    assert point == pytest.approx(np.mean(u) / (len(other) * len(scores)))
    reverse, _ = probability_of_improvement(scores, other)
    assert point + reverse == pytest.approx(1.0)  # ties count half for both
    loop_low, loop_high = stratified_improvement_ci(other, scores, reps=4000, seed=9)
    assert low == pytest.approx(loop_low, abs=0.03)
    assert high == pytest.approx(loop_high, abs=0.03)
    assert low <= point <= high


def test_dominating_and_constant_rows():
    from envs.statistics import mean_difference_interval, probability_of_improvement

    rng = np.random.default_rng(1)
    low_scores = rng.uniform(0.0, 0.4, size=(4, 3))
    high_scores = rng.uniform(0.6, 1.0, size=(3, 3))
    # every seed beats every seed on every task, so every resample does too
    assert probability_of_improvement(high_scores, low_scores) == (1.0, (1.0, 1.0))
    difference, (low, _) = mean_difference_interval(high_scores.mean(1), low_scores.mean(1))
    assert low > 0.0 and difference > low
    same = np.full((3, 2), 0.5)
    assert probability_of_improvement(same, same) == (0.5, (0.5, 0.5))
    assert mean_difference_interval(same[:, 0], same[:, 0]) == (0.0, (0.0, 0.0))


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.ones((1, 3)), np.ones((3, 3)), "x has 1 seed"),
        (np.ones((3, 3)), np.ones((3, 2)), "x has 3 tasks but y has 2"),
        (np.ones(3), np.ones((3, 3)), r"shape \[seeds, tasks\]; got shape \(3,\)"),
        (np.array([[0.1, np.nan]] * 2), np.ones((2, 2)), "non-finite"),
    ],
)
def test_comparison_bad_input(x, y, message):
    from envs.statistics import probability_of_improvement

    with pytest.raises(ValueError, match=message):
        probability_of_improvement(x, y)
