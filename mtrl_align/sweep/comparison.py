"""Each report row against a baseline row: is the difference outside seed noise?

Per row, two numbers with 95% bootstrap intervals (:mod:`envs.statistics`):

- Δ mean success: the row's mean success over seeds minus the baseline's; the seeds of the
  two rows are resampled independently;
- probability of improvement P(row > baseline) (rliable's): per task, the chance that a
  random seed of the row beats a random seed of the baseline (ties half), averaged over tasks;
  stratified bootstrap over seeds within tasks.

A difference is read as "inside the interval" (not shown by these seeds) when the Δ interval
contains 0. Both rows need >= 3 seeds: two seeds have only three distinct resamples, whose
percentile interval is far too narrow to mean anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtrl_align.sweep.results import RowResult

DEFAULT_BASELINE = "uniform"
MIN_SEEDS = 3


@dataclass(frozen=True)
class Comparison:
    """One row against the baseline.

    Attributes:
        label: the row's label.
        seeds: the row's number of seeds.
        difference: mean success of the row minus the baseline's.
        difference_ci: 95% interval of ``difference``; None with < ``MIN_SEEDS`` seeds in a row.
        improvement: probability of improvement P(row > baseline); None with < ``MIN_SEEDS`` seeds.
        improvement_ci: its 95% interval; None with < ``MIN_SEEDS`` seeds.
    """

    label: str
    seeds: int
    difference: float
    difference_ci: tuple[float, float] | None
    improvement: float | None
    improvement_ci: tuple[float, float] | None

    @property
    def reading(self) -> str:
        """``inside the interval``, ``higher``, ``lower`` or ``n/a`` (too few seeds)."""
        if self.difference_ci is None:
            return f"n/a (needs >= {MIN_SEEDS} seeds in both rows)"
        low, high = self.difference_ci
        if low <= 0.0 <= high:
            return "inside the interval"
        return "higher" if low > 0.0 else "lower"


def choose_baseline(rows: Sequence[RowResult], spec: str) -> RowResult:
    """The row ``spec`` names: an exact label, a label's settings, or a method with one row.

    ``spec`` may be written as a label, ``method (key=value, ...)``, and match a row whose label
    leaves the settings out: a label names only the settings in which the rows of a method
    differ, so ``uniform (agent.variant=shared)`` is just ``uniform`` while no multi-head row
    has finished. Such a match checks every named setting against the row's config.

    Raises:
        ValueError: no row or several rows match; the message lists the labels to choose from.
    """
    labels = [row.label for row in rows]
    exact = [row for row in rows if row.label == spec]
    if exact:
        return exact[0]
    method, wanted = _parse_label(spec)
    if wanted:
        by_settings = [
            row for row in rows if row.method == method and set(wanted) <= set(row.settings)
        ]
        if len(by_settings) == 1:
            return by_settings[0]
    by_method = [row for row in rows if row.method == spec]
    if len(by_method) == 1:
        return by_method[0]
    choices = "; ".join(f"'{label}'" for label in labels)
    if by_method:
        several = "; ".join(f"'{row.label}'" for row in by_method)
        raise ValueError(
            f"baseline '{spec}' matches {len(by_method)} rows ({several}); "
            "name one by its full label"
        )
    raise ValueError(f"baseline '{spec}' matches no row; rows: {choices}")


def _parse_label(spec: str) -> tuple[str, list[tuple[str, str]]]:
    """``'m (a=1, b=[2,3])'`` -> ``('m', [('a', '1'), ('b', '[2,3]')])``; no settings: ``[]``."""
    head, _, rest = spec.partition(" (")
    if not rest.endswith(")"):
        return spec, []
    pairs = []
    for part in rest[:-1].split(", "):
        key, sep, value = part.partition("=")
        if not sep:
            return spec, []
        pairs.append((key.strip(), value.strip()))
    return head, pairs


def compare_rows(rows: Sequence[RowResult], baseline: RowResult, seed: int = 0) -> list[Comparison]:
    """Every row except ``baseline`` against it, in the order of ``rows``."""
    from envs.statistics import mean_difference_interval, probability_of_improvement

    base_scores = np.asarray(baseline.per_seed_scores)
    comparisons = []
    for row in rows:
        if row is baseline:
            continue
        difference = row.mean_success.mean - baseline.mean_success.mean
        if min(len(row.seeds), len(baseline.seeds)) < MIN_SEEDS:
            comparisons.append(Comparison(row.label, len(row.seeds), difference, None, None, None))
            continue
        difference, difference_ci = mean_difference_interval(
            np.asarray(row.per_seed_mean), np.asarray(baseline.per_seed_mean), seed=seed
        )
        improvement, improvement_ci = probability_of_improvement(
            np.asarray(row.per_seed_scores), base_scores, seed=seed
        )
        comparisons.append(
            Comparison(
                row.label, len(row.seeds), difference, difference_ci, improvement, improvement_ci
            )
        )
    return comparisons


def comparison_markdown(comparisons: Sequence[Comparison], baseline: RowResult) -> str:
    """The ``## Differences from <baseline>`` section of a report."""
    lines = [
        f"## Differences from {baseline.label}",
        "",
        f"Baseline: {baseline.label} ({_seeds(len(baseline.seeds))}). Δ = mean success of the row "
        "minus the baseline's, with a 95% bootstrap interval (the seeds of each row resampled "
        "on their own); P(row > baseline) = probability of improvement (per task, the chance "
        "that a random seed of the row beats a random seed of the baseline, ties half; mean "
        "over tasks; 0.5 = no ordering) with a 95% stratified bootstrap interval. "
        '"inside the interval": the Δ interval contains 0, so these seeds do not show a '
        "difference. With few seeds the bootstrap intervals are rough (5 seeds have 126 "
        "distinct resamples).",
        "",
        "| Method | Seeds | Δ mean success [95% CI] | P(row > baseline) [95% CI] | Reading |",
        "|---|---:|---:|---:|---|",
    ]
    for c in comparisons:
        if c.difference_ci is None:
            delta, improvement = f"{c.difference:+.3f} [n/a]", "n/a"
        else:
            delta = f"{c.difference:+.3f} [{c.difference_ci[0]:+.3f}, {c.difference_ci[1]:+.3f}]"
            low, high = c.improvement_ci
            improvement = f"{c.improvement:.2f} [{low:.2f}, {high:.2f}]"
        lines.append(f"| {c.label} | {c.seeds} | {delta} | {improvement} | {c.reading} |")
    return "\n".join(lines)


def _seeds(count: int) -> str:
    return f"{count} seed" if count == 1 else f"{count} seeds"
