"""The numbers of a report: per row, success over seeds (mean ± SEM, IQM with a 95% CI).

Which evaluation of a run counts is explicit (``metric``):

- ``final``: the last evaluation, taken at the end of training;
- ``best``: the evaluation with the highest mean success over training (per-task rates from
  that same evaluation). This is how the CARE/Aligned-MTL MT10 tables were made; it is
  optimistic, since it picks the maximum of noisy evaluations;
- ``last3``: the mean of the last three evaluations (per task, then over tasks; fewer when a
  run has fewer): less noisy than ``final``, still an end-of-training reading.

The statistics over seeds come from :func:`envs.statistics.summarize_over_seeds`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mtrl_align.sweep.grouping import RunGroup
from mtrl_align.sweep.runs import Evaluation, RunRecord

METRICS = ("final", "best", "last3")
LAST_EVALUATIONS = 3
"""Evaluations averaged by the ``last3`` metric."""
METRIC_DESCRIPTIONS = {
    "final": "final evaluation (the last one, at the end of training)",
    "best": (
        "best evaluation over training (per run, the evaluation with the highest mean success; "
        "optimistic, as in the CARE/Aligned-MTL MT10 tables)"
    ),
    "last3": "mean of the last three evaluations (per task; less noisy than the final one)",
}


@dataclass(frozen=True)
class Estimate:
    """Mean over seeds and its standard error (SEM = sample std / sqrt(seeds); NaN for one seed)."""

    mean: float
    sem: float


@dataclass(frozen=True)
class RowResult:
    """One table row.

    Attributes:
        label: row label (method and the settings that set it apart).
        method: aggregation method.
        seeds: seeds of the row's runs.
        tasks: task names, in table order.
        per_task: success rate of each task over seeds.
        mean_success: mean-over-tasks success over seeds.
        iqm: interquartile mean of success.
        iqm_ci: 95% stratified bootstrap interval of the IQM, ``(low, high)``.
        per_seed_mean: each seed's mean success, in the order of ``seeds``.
        reported_env_steps: env steps per task of the evaluation used, per seed.
        per_seed_scores: success per seed and task, [seeds, tasks] in the order of ``seeds``
            and ``tasks``.
        settings: the row's dotted config leaves as labels show them (``RunGroup.settings``).
        per_task_return: mean undiscounted evaluation return of each task over seeds, from the
            same evaluation(s) as the success rates; empty when a run did not log returns.
        detail: ``RunGroup.detail`` (with folder labels, the settings that set the row apart).
    """

    label: str
    method: str
    seeds: list[int]
    tasks: list[str]
    per_task: dict[str, Estimate]
    mean_success: Estimate
    iqm: float
    iqm_ci: tuple[float, float]
    per_seed_mean: list[float]
    reported_env_steps: list[int]
    per_seed_scores: list[list[float]]
    settings: tuple[tuple[str, str], ...] = ()
    per_task_return: dict[str, Estimate] = field(default_factory=dict)
    detail: str = ""


def pick_evaluation(run: RunRecord, metric: str) -> Evaluation:
    """The evaluation of ``run`` that ``metric`` reports (ties in ``best``: the earliest)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}'; choose from: {', '.join(METRICS)}")
    if not run.evaluations:
        raise ValueError(f"run '{run.run_dir}' has no evaluations in eval.jsonl")
    if metric == "final":
        return run.evaluations[-1]
    if metric == "last3":
        return mean_of_evaluations(run.evaluations[-LAST_EVALUATIONS:])
    best = run.evaluations[0]
    for evaluation in run.evaluations[1:]:
        if evaluation.mean_success > best.mean_success:
            best = evaluation
    return best


def mean_of_evaluations(evaluations: Sequence[Evaluation]) -> Evaluation:
    """One evaluation whose success rates are the per-task means of ``evaluations`` (same
    tasks in each), dated at the last one."""
    tasks = list(evaluations[-1].success)
    success = {t: sum(e.success[t] for e in evaluations) / len(evaluations) for t in tasks}
    returns = None
    if all(e.returns is not None and set(tasks) <= set(e.returns) for e in evaluations):
        returns = {t: sum(e.returns[t] for e in evaluations) / len(evaluations) for t in tasks}  # type: ignore[index]
    last = evaluations[-1]
    return Evaluation(
        env_steps=last.env_steps,
        mean_success=sum(success.values()) / len(success),
        success=success,
        episodes_per_task=last.episodes_per_task,
        wall_time_s=last.wall_time_s,
        returns=returns,
        cpu_time_s=last.cpu_time_s,
        machine=last.machine,
    )


def summarize_group(group: RunGroup, tasks: Sequence[str], metric: str, seed: int = 0) -> RowResult:
    """Statistics over the seeds of one row.

    Args:
        group: the row's runs.
        tasks: task names (every run must have evaluated all of them).
        metric: one of :data:`METRICS`.
        seed: seed of the bootstrap resampling (fixed, so a report is reproducible).
    """
    from envs.statistics import standard_error, summarize_over_seeds

    picked = [pick_evaluation(run, metric) for run in group.runs]
    per_seed: list[dict[str, float]] = []
    for run, evaluation in zip(group.runs, picked, strict=True):
        missing = [t for t in tasks if t not in evaluation.success]
        if missing:
            raise ValueError(f"run '{run.run_dir}' has no success rate for {', '.join(missing)}")
        per_seed.append({t: evaluation.success[t] for t in tasks})
    stats = summarize_over_seeds(per_seed, seed=seed)
    per_task_return: dict[str, Estimate] = {}
    if all(e.returns is not None and set(tasks) <= set(e.returns) for e in picked):
        for task in tasks:
            values = np.array([e.returns[task] for e in picked])  # type: ignore[index]
            per_task_return[task] = Estimate(float(values.mean()), float(standard_error(values)))
    return RowResult(
        label=group.label,
        method=group.method,
        seeds=group.seeds,
        tasks=list(tasks),
        per_task={t: Estimate(stats.per_task_mean[t], stats.per_task_sem[t]) for t in tasks},
        mean_success=Estimate(stats.mean, stats.sem),
        iqm=stats.iqm,
        iqm_ci=(stats.iqm_ci[0], stats.iqm_ci[1]),
        per_seed_mean=[sum(s.values()) / len(s) for s in per_seed],
        reported_env_steps=[e.env_steps for e in picked],
        per_seed_scores=[[s[t] for t in tasks] for s in per_seed],
        settings=group.settings,
        per_task_return=per_task_return,
        detail=group.detail,
    )
