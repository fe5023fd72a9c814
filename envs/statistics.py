"""Success rates summarised over seeds: mean ± SEM per task and overall, and IQM with a CI.

- Per task: mean over seeds and its standard error (sample std with ddof=1 / sqrt(n)).
- Overall: each seed's mean over tasks, then mean and SEM of those over seeds (the
  "mean ± SEM over seeds" that MT10 tables report).
- IQM: interquartile mean (25 % trimmed mean) of all seed x task scores, with a 95 %
  *stratified* bootstrap percentile interval: each replicate resamples the seeds with
  replacement independently within every task (the estimator of rliable, Agarwal et al.
  2021, ``StratifiedBootstrap`` with ``task_bootstrap=False``).

The interval is computed with ``scipy.stats.bootstrap`` given one sample per task (SciPy
resamples each sample independently, which is exactly the stratification above) and an
explicit generator, so it is reproducible and touches no global RNG. rliable itself is not
called: rliable 1.2 needs ``arch<8``, and arch 7.2 fails to import with pandas 3, while
rliable's ``StratifiedBootstrap`` draws from NumPy's global RNG whatever ``random_state``
says. The IQM point estimate equals ``rliable.metrics.aggregate_iqm``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.stats


@dataclass
class SeedSummary:
    """Statistics of per-task success rates over ``num_seeds`` seeds.

    Attributes:
        num_seeds: seeds summarised.
        tasks: task names, in the order of the first seed's dict.
        per_task_mean, per_task_sem: mean and SEM over seeds, per task.
        mean, sem: mean and SEM over seeds of each seed's mean over tasks.
        iqm: interquartile mean of all seed x task scores.
        iqm_ci: (low, high) stratified bootstrap interval of the IQM at ``confidence``.
        confidence: interval coverage (0.95 by default).
        bootstrap_reps: bootstrap replications used.
    """

    num_seeds: int
    tasks: list[str]
    per_task_mean: dict[str, float]
    per_task_sem: dict[str, float]
    mean: float
    sem: float
    iqm: float
    iqm_ci: tuple[float, float]
    confidence: float
    bootstrap_reps: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        out = asdict(self)
        out["iqm_ci"] = list(self.iqm_ci)
        return out

    def format(self) -> str:
        """One line: ``mean ± SEM, IQM [low, high] (n seeds)``."""
        low, high = self.iqm_ci
        return (
            f"success {self.mean:.3f} ± {self.sem:.3f} (mean ± SEM), "
            f"IQM {self.iqm:.3f} [{low:.3f}, {high:.3f}] ({self.confidence:.0%} CI), "
            f"n={self.num_seeds} seeds"
        )


def standard_error(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Standard error of the mean along ``axis`` (ddof=1); NaN for a single value."""
    n = values.shape[axis]
    if n < 2:
        return np.full(np.delete(values.shape, axis), math.nan)
    return values.std(axis=axis, ddof=1) / math.sqrt(n)


def _iqm(scores: np.ndarray, axis: tuple[int, ...] | None = None) -> np.ndarray:
    """Interquartile mean (25 % trimmed mean) over ``axis`` (all axes by default)."""
    if axis is None:
        return scipy.stats.trim_mean(scores, 0.25, axis=None)
    moved = np.moveaxis(scores, axis, tuple(range(-len(axis), 0)))
    flat = moved.reshape(*moved.shape[: -len(axis)], -1)
    return scipy.stats.trim_mean(flat, 0.25, axis=-1)


def _percentile_interval(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    confidence: float,
    reps: int,
    seed: int,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a vectorized ``statistic(*samples, axis)``.

    SciPy resamples every sample on its own (with replacement), from a generator seeded with
    ``seed``: no global RNG is touched.
    """
    result = scipy.stats.bootstrap(
        samples,
        statistic,
        n_resamples=reps,
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def iqm_interval(
    scores: np.ndarray, confidence: float = 0.95, reps: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Stratified bootstrap percentile interval of the IQM of ``scores`` [num_seeds, num_tasks]."""
    if np.ptp(scores, axis=0).max() == 0.0:  # every resample is identical
        point = float(_iqm(scores))
        return point, point

    def statistic(*task_samples: np.ndarray, axis: int = -1) -> np.ndarray:
        stacked = np.stack([np.moveaxis(x, axis, -1) for x in task_samples], axis=-1)
        return _iqm(stacked, axis=(-2, -1))  # [..., seeds, tasks] -> [...]

    return _percentile_interval(tuple(scores.T), statistic, confidence, reps, seed)


def scores_matrix(
    per_seed_success: Sequence[Mapping[str, float]],
) -> tuple[np.ndarray, list[str]]:
    """Stack per-seed ``{task: success}`` dicts into scores [num_seeds, num_tasks].

    Raises:
        ValueError: no seeds, seeds with different task sets, or values outside [0, 1]
            or non-finite.
    """
    if len(per_seed_success) == 0:
        raise ValueError("per_seed_success is empty; pass one {task: success rate} per seed")
    tasks = list(per_seed_success[0])
    if not tasks:
        raise ValueError("the first seed's success dict has no tasks")
    rows = []
    for index, seed_result in enumerate(per_seed_success):
        if set(seed_result) != set(tasks):
            missing = sorted(set(tasks) - set(seed_result))
            extra = sorted(set(seed_result) - set(tasks))
            raise ValueError(
                f"seed #{index} has other tasks than seed #0 (missing {missing}, extra {extra})"
            )
        rows.append([float(seed_result[t]) for t in tasks])
    scores = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(scores).all() or (scores < 0).any() or (scores > 1).any():
        bad = scores[~np.isfinite(scores) | (scores < 0) | (scores > 1)]
        raise ValueError(f"success rates must be finite and in [0, 1]; got {bad.tolist()}")
    return scores, tasks


def summarize_over_seeds(
    per_seed_success: Sequence[Mapping[str, float]],
    confidence: float = 0.95,
    bootstrap_reps: int = 10_000,
    seed: int = 0,
) -> SeedSummary:
    """Summarise per-task success rates of several seeds (one dict per seed).

    Args:
        per_seed_success: ``[{task: success rate in [0, 1]}, ...]``, one dict per seed
            (e.g. ``EvaluationResult.success_rate`` of each seed's final or best evaluation).
        confidence: coverage of the IQM interval.
        bootstrap_reps: stratified bootstrap replications.
        seed: seed of the bootstrap (results are reproducible).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if (
        isinstance(bootstrap_reps, bool)
        or not isinstance(bootstrap_reps, int)
        or bootstrap_reps < 1
    ):
        raise ValueError(f"bootstrap_reps must be a positive int, got {bootstrap_reps!r}")
    scores, tasks = scores_matrix(per_seed_success)
    per_seed_mean = scores.mean(axis=1)
    low, high = iqm_interval(scores, confidence, bootstrap_reps, seed)
    return SeedSummary(
        num_seeds=scores.shape[0],
        tasks=tasks,
        per_task_mean=dict(zip(tasks, scores.mean(axis=0).tolist(), strict=True)),
        per_task_sem=dict(zip(tasks, standard_error(scores).tolist(), strict=True)),
        mean=float(per_seed_mean.mean()),
        sem=float(standard_error(per_seed_mean[:, None])[0]),
        iqm=float(_iqm(scores)),
        iqm_ci=(low, high),
        confidence=confidence,
        bootstrap_reps=bootstrap_reps,
    )


def _check_two_samples(x: np.ndarray, y: np.ndarray, ndim: int, what: str) -> None:
    for name, sample in (("x", x), ("y", y)):
        if sample.ndim != ndim:
            raise ValueError(f"{name} must be {what}; got shape {tuple(sample.shape)}")
        if sample.shape[0] < 2:
            raise ValueError(
                f"{name} has {sample.shape[0]} seed(s); an interval needs >= 2 seeds per sample"
            )
        if not np.isfinite(sample).all():
            raise ValueError(f"{name} has non-finite values: {sample[~np.isfinite(sample)]}")
    if ndim == 2 and x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} tasks but y has {y.shape[1]}; they must match")


def mean_difference_interval(
    x: np.ndarray, y: np.ndarray, confidence: float = 0.95, reps: int = 10_000, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """``mean(x) - mean(y)`` of two independent samples, with a percentile bootstrap interval.

    Args:
        x, y: one value per seed, [n] and [m] (e.g. each seed's mean success over tasks);
            n, m >= 2.
        confidence, reps, seed: interval coverage, bootstrap replications, generator seed.

    Returns:
        ``(difference, (low, high))``; each replicate resamples the seeds of x and of y with
        replacement, each sample on its own.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    _check_two_samples(x, y, 1, "one value per seed, shape [seeds]")
    point = float(x.mean() - y.mean())
    if np.ptp(x) == 0.0 and np.ptp(y) == 0.0:  # every resample is identical
        return point, (point, point)

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return a.mean(axis=axis) - b.mean(axis=axis)

    return point, _percentile_interval((x, y), statistic, confidence, reps, seed)


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) of x [..., n, T] over y [..., m, T], ties half, mean over tasks -> [...]."""
    a, b = x[..., :, None, :], y[..., None, :, :]
    wins = (a > b).astype(np.float64) + 0.5 * (a == b)
    return wins.mean(axis=(-3, -2)).mean(axis=-1)


def probability_of_improvement(
    x_scores: np.ndarray,
    y_scores: np.ndarray,
    confidence: float = 0.95,
    reps: int = 10_000,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """Probability of improvement P(X > Y) (Agarwal et al. 2021, rliable), with its interval.

    Per task, the chance that a random seed of X scores higher than a random seed of Y (ties
    count half: the Mann-Whitney U statistic / (n m)); then the mean over tasks. 0.5 means no
    ordering; 1 means every seed of X beats every seed of Y on every task.

    Args:
        x_scores, y_scores: success per seed and task, [n, T] and [m, T]; n, m >= 2.
        confidence, reps, seed: interval coverage, bootstrap replications, generator seed.

    Returns:
        ``(probability, (low, high))``; the interval is a stratified percentile bootstrap:
        every replicate resamples the seeds within every task, independently for X and Y.
    """
    x_scores = np.asarray(x_scores, dtype=np.float64)
    y_scores = np.asarray(y_scores, dtype=np.float64)
    _check_two_samples(x_scores, y_scores, 2, "success per seed and task, shape [seeds, tasks]")
    point = float(_improvement(x_scores, y_scores))
    if np.ptp(x_scores, axis=0).max() == 0.0 and np.ptp(y_scores, axis=0).max() == 0.0:
        return point, (point, point)
    tasks = x_scores.shape[1]

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        columns = [np.moveaxis(s, axis, -1) for s in samples]  # each [..., seeds]
        return _improvement(np.stack(columns[:tasks], axis=-1), np.stack(columns[tasks:], axis=-1))

    samples = tuple(x_scores.T) + tuple(y_scores.T)
    return point, _percentile_interval(samples, statistic, confidence, reps, seed)
