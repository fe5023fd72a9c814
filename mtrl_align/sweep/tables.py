"""Write report rows as a Markdown document and a CSV file."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from mtrl_align.sweep.protocol import Protocol
from mtrl_align.sweep.results import METRIC_DESCRIPTIONS, Estimate, RowResult


def _pm(mean: float, sem: float, digits: int = 3) -> str:
    if math.isnan(sem):  # a single seed has no standard error
        return f"{mean:.{digits}f} ± n/a"
    return f"{mean:.{digits}f} ± {sem:.{digits}f}"


def markdown_report(
    rows: Sequence[RowResult],
    protocol: Protocol,
    metric: str,
    excluded: Sequence[str] = (),
    plots: Sequence[str] = (),
    sections: Sequence[str] = (),
) -> str:
    """The report as Markdown: protocol stamp, summary table, per-task table, notes.

    Args:
        rows: one per method configuration.
        protocol: the runs' common protocol.
        metric: ``final``, ``best`` or ``last3``.
        excluded: one line per run left out (unfinished, failed), shown at the end.
        plots: file names of the plots, linked at the end.
        sections: further Markdown sections, put before the plots.
    """
    lines = [
        "# Multi-task success over seeds",
        "",
        f"- Protocol: {protocol.stamp()}.",
        f"- Reported number: **{METRIC_DESCRIPTIONS[metric]}** (`--metric {metric}`).",
        "- Success is the fraction of evaluation episodes that reached the goal; mean ± SEM "
        "over seeds (SEM = sample standard deviation / sqrt(seeds)); IQM = interquartile mean "
        "with a 95% stratified bootstrap interval.",
        "",
        "| Method | Seeds | Mean success (± SEM) | IQM [95% CI] |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {len(row.seeds)} | {_pm(row.mean_success.mean, row.mean_success.sem)}"
            f" | {row.iqm:.3f} [{row.iqm_ci[0]:.3f}, {row.iqm_ci[1]:.3f}] |"
        )
    tasks = list(protocol.tasks)
    lines += [
        "",
        "## Per-task success (mean ± SEM over seeds)",
        "",
        "| Task | " + " | ".join(row.label for row in rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for task in tasks:
        cells = [_pm(row.per_task[task].mean, row.per_task[task].sem) for row in rows]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    if rows and all(row.per_task_return for row in rows):
        lines += [
            "",
            "## Per-task return (mean ± SEM over seeds)",
            "",
            "Undiscounted evaluation return per episode, from the same evaluation(s) as the "
            "success rates: it shows progress on tasks whose success is still 0.",
            "",
            "| Task | " + " | ".join(row.label for row in rows) + " |",
            "|---|" + "---:|" * len(rows),
        ]
        for task in tasks:
            cells = [
                _pm(row.per_task_return[task].mean, row.per_task_return[task].sem, digits=1)
                for row in rows
            ]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "## Runs", ""]
    for row in rows:
        steps = sorted(set(row.reported_env_steps))
        where = (
            f"at {steps[0]:,} env steps"
            if len(steps) == 1
            else f"at {min(steps):,} to {max(steps):,} env steps"
        )
        line = f"- {row.label}: seeds {', '.join(map(str, row.seeds))}; evaluations {where}"
        if row.detail:
            line += f"; {row.method} with {row.detail}"
        lines.append(line)
    if excluded:
        lines += ["", "Left out (not finished):", ""]
        lines += [f"- {line}" for line in excluded]
    for section in sections:
        lines += ["", section.rstrip("\n")]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def csv_rows(rows: Sequence[RowResult], protocol: Protocol, metric: str) -> list[dict[str, object]]:
    """One flat dict per row: method, seeds, mean/SEM, IQM/CI, per-task mean/SEM, protocol."""
    table = []
    for row in rows:
        record: dict[str, object] = {
            "method": row.label,
            "aggregation_method": row.method,
            "metric": metric,
            "num_seeds": len(row.seeds),
            "seeds": " ".join(map(str, row.seeds)),
            "mean_success": row.mean_success.mean,
            "mean_success_sem": row.mean_success.sem,
            "iqm": row.iqm,
            "iqm_ci_low": row.iqm_ci[0],
            "iqm_ci_high": row.iqm_ci[1],
        }
        for task in protocol.tasks:
            record[f"{task}_mean"] = row.per_task[task].mean
            record[f"{task}_sem"] = row.per_task[task].sem
        for task in protocol.tasks:
            estimate = row.per_task_return.get(task, Estimate(float("nan"), float("nan")))
            record[f"{task}_return_mean"] = estimate.mean
            record[f"{task}_return_sem"] = estimate.sem
        record.update(protocol.as_row())
        table.append(record)
    return table


def write_csv(path: Path, records: Sequence[dict[str, object]]) -> None:
    """Write ``records`` (dicts with the same keys) as CSV."""
    if not records:
        raise ValueError("no rows to write")
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
