"""Delta_m: the mean relative change of a multi-task model against single-task baselines.

For metric k of task t with model value M and baseline B, the relative change is
``r = s * (M - B) / B * 100`` with ``s = -1`` for higher-is-better metrics and ``+1`` for
lower-is-better ones, so that a POSITIVE r means WORSE than the baseline. Two conventions:

* ``metric-weighted``: mean of r over all metrics that have a baseline (the convention of
  MTAN / CAGrad / Nash-MTL tables; tasks with many metrics, e.g. normals, weigh more);
* ``task-weighted``: mean of r over each task's metrics first, then mean over tasks (the
  convention the Aligned-MTL paper prefers).

Lower is better in both; e.g. -4.93 means 4.93 % better than the single-task models on average.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mtrl_align.vision.specs import DatasetSpec

CONVENTIONS = ("metric-weighted", "task-weighted")


@dataclass(frozen=True)
class DeltaM:
    """Both Delta_m conventions (percent, lower is better) and the per-metric changes."""

    metric_weighted: float
    task_weighted: float
    relative_changes: dict[str, float]
    """``{"<task>/<metric>": r}`` in percent, positive = worse than the baseline."""

    def to_dict(self) -> dict:
        return {
            "delta_m_metric_weighted": self.metric_weighted,
            "delta_m_task_weighted": self.task_weighted,
            "relative_changes": dict(self.relative_changes),
            "convention": "percent; positive = worse than single-task baselines; "
            "metric-weighted = mean over metrics, task-weighted = mean over tasks of the "
            "per-task mean",
        }


def resolve_baselines(
    spec: DatasetSpec, overrides: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The dataset's default baselines, replaced entirely by ``overrides`` when given.

    Keys are ``<task>/<metric>`` of ``spec.metrics``; unknown keys and non-positive values are
    errors (a relative change needs a non-zero baseline).
    """
    baselines = dict(overrides) if overrides else dict(spec.baselines)
    valid = {m.key for m in spec.metrics}
    for key, value in baselines.items():
        if key not in valid:
            raise ValueError(
                f"unknown baseline metric '{key}' for {spec.name}; "
                f"choose from: {', '.join(sorted(valid))}"
            )
        if not isinstance(value, (int, float)) or value == 0:
            raise ValueError(f"baseline for '{key}' must be a non-zero number, got {value!r}")
    if not baselines:
        raise ValueError(f"no single-task baselines given for {spec.name}")
    return {key: float(value) for key, value in baselines.items()}


def delta_m(
    metrics: Mapping[str, float], spec: DatasetSpec, baselines: Mapping[str, float] | None = None
) -> DeltaM:
    """Delta_m of ``metrics`` (``{"<task>/<metric>": value}``) against ``baselines``
    (default: ``spec.baselines``) in both conventions."""
    baselines = resolve_baselines(spec, baselines)
    changes: dict[str, float] = {}
    for key, base in baselines.items():
        if key not in metrics:
            raise ValueError(f"metric '{key}' has a baseline but no value; have {sorted(metrics)}")
        sign = -1.0 if spec.metric(key).higher_is_better else 1.0
        changes[key] = sign * (float(metrics[key]) - base) / base * 100.0
    per_task: dict[str, list[float]] = {}
    for key, change in changes.items():
        per_task.setdefault(key.split("/", 1)[0], []).append(change)
    metric_weighted = sum(changes.values()) / len(changes)
    task_weighted = sum(sum(v) / len(v) for v in per_task.values()) / len(per_task)
    return DeltaM(metric_weighted, task_weighted, changes)
