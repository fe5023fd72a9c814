"""PNG plots of a report: learning curves with a SEM band, and per-method intervals."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402

from mtrl_align.sweep.grouping import RunGroup  # noqa: E402
from mtrl_align.sweep.protocol import Protocol  # noqa: E402
from mtrl_align.sweep.results import RowResult  # noqa: E402


def success_curve(group: RunGroup) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean success vs env steps over the seeds of ``group``.

    Uses the evaluation points every seed has (runs of one config evaluate at the same steps).

    Returns:
        ``(env_steps [P], mean [P], sem [P])``; SEM is NaN for a single seed (no band).
    """
    per_run = [{e.env_steps: e.mean_success for e in run.evaluations} for run in group.runs]
    common = sorted(set.intersection(*(set(points) for points in per_run)))
    values = np.array([[points[s] for s in common] for points in per_run], dtype=float)
    values = values.reshape(len(per_run), len(common))  # [seeds, P]
    mean = values.mean(axis=0)
    if len(per_run) > 1:
        sem = values.std(axis=0, ddof=1) / np.sqrt(len(per_run))
    else:
        sem = np.full_like(mean, np.nan)
    return np.array(common, dtype=float), mean, sem


def plot_success_curves(groups: Sequence[RunGroup], protocol: Protocol, path: Path) -> None:
    """Mean success vs env steps per task, one line per row with a ± SEM band."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for group in groups:
        steps, mean, sem = success_curve(group)
        (line,) = ax.plot(steps, mean, label=f"{group.label} ({len(group.runs)} seeds)")
        ax.fill_between(steps, mean - sem, mean + sem, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("env steps per task")
    ax.set_ylabel("mean success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{protocol.benchmark}: success during training (mean ± SEM over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_intervals(rows: Sequence[RowResult], metric: str, path: Path) -> None:
    """Per row: mean ± SEM (left) and IQM with its 95% bootstrap interval (right)."""
    labels = [row.label for row in rows]
    ys = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(9, 1.2 + 0.45 * len(rows)), sharey=True)
    means = np.array([row.mean_success.mean for row in rows])
    sems = np.array([row.mean_success.sem for row in rows])
    axes[0].errorbar(means, ys, xerr=sems, fmt="o", capsize=4)
    axes[0].set_title("mean ± SEM")
    iqms = np.array([row.iqm for row in rows])
    low = iqms - np.array([row.iqm_ci[0] for row in rows])
    high = np.array([row.iqm_ci[1] for row in rows]) - iqms
    axes[1].errorbar(iqms, ys, xerr=np.stack([low, high]), fmt="o", capsize=4)
    axes[1].set_title("IQM, 95% bootstrap CI")
    for ax in axes:
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel(f"success rate ({metric} evaluation)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, labels)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
