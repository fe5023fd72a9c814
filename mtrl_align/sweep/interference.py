"""Task interference of a report's rows: the per-task gradient cosine matrices, averaged.

Runs log, at every logged update, the [T, T] cosines between the per-task gradients of each
network's shared parameters (``interference/<network>/<i>_<j>``, :mod:`mtrl_align.interference`).
Per row and network:

- per run, the mean of each pair's cosine over all logged updates (``whole``) and over those in
  the last 20% of the env steps (``last``);
- then the mean over the row's seeds: the matrix that ``interference.png`` draws and whose
  mean off-diagonal entry (the mean pairwise cosine) the report's table gives, next to the most
  conflicting pair (the most negative entry of the averaged matrix).

Means rather than medians (unlike the stability table): cosines are bounded in [-1, 1].
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtrl_align.interference import draw_heatmap, matrix_from_scalars
from mtrl_align.sweep.grouping import RunGroup
from mtrl_align.sweep.protocol import config_value

NETWORKS = ("critic", "actor")
LAST_FRACTION = 0.2


@dataclass(frozen=True)
class InterferenceRow:
    """Averaged interference of one report row.

    Attributes:
        label: row label.
        seeds: seeds whose runs logged interference.
        whole / last: network -> [T, T] mean over seeds of the per-run mean matrices (over
            all logged updates / the last 20% of the env steps); absent when no run logged it.
    """

    label: str
    seeds: list[int]
    whole: dict[str, np.ndarray] = field(default_factory=dict)
    last: dict[str, np.ndarray] = field(default_factory=dict)


def _nanmean(stack: Sequence[np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings():  # pairs that no run has stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack(stack), axis=0)


def run_mean_matrix(
    rows: Sequence[dict[str, Any]], network: str, num_tasks: int, from_step: float = -math.inf
) -> np.ndarray | None:
    """Mean [T, T] cosine matrix of ``network`` over a run's scalar rows at steps >=
    ``from_step`` (None when none of them has it)."""
    matrices = [
        m
        for row in rows
        if row["step"] >= from_step
        and (m := matrix_from_scalars(row, network, num_tasks)) is not None
    ]
    return _nanmean(matrices) if matrices else None


def interference_rows(
    groups: Sequence[RunGroup],
    scalars: dict[Path, list[dict[str, Any]] | None],
    num_tasks: int,
) -> list[InterferenceRow]:
    """One :class:`InterferenceRow` per group (scalars: run directory -> its scalar rows)."""
    result = []
    for group in groups:
        whole: dict[str, list[np.ndarray]] = {n: [] for n in NETWORKS}
        last: dict[str, list[np.ndarray]] = {n: [] for n in NETWORKS}
        seeds = []
        for run in group.runs:
            rows = scalars.get(run.run_dir) or []
            total = float(config_value(run.config, "train.total_env_steps") or 0)
            found = False
            for network in NETWORKS:
                matrix = run_mean_matrix(rows, network, num_tasks)
                if matrix is None:
                    continue
                found = True
                whole[network].append(matrix)
                tail = run_mean_matrix(rows, network, num_tasks, (1 - LAST_FRACTION) * total)
                if tail is not None:
                    last[network].append(tail)
            if found:
                seeds.append(run.seed)
        result.append(
            InterferenceRow(
                label=group.label,
                seeds=seeds,
                whole={n: _nanmean(m) for n, m in whole.items() if m},
                last={n: _nanmean(m) for n, m in last.items() if m},
            )
        )
    return result


def mean_off_diagonal(matrix: np.ndarray) -> float:
    """Mean of the entries above the diagonal (NaN ones left out)."""
    upper = matrix[np.triu_indices(matrix.shape[0], k=1)]
    upper = upper[np.isfinite(upper)]
    return float(upper.mean()) if upper.size else math.nan


def most_conflicting(matrix: np.ndarray, names: Sequence[str]) -> str:
    """``"task-a / task-b (-0.31)"``: the pair with the smallest averaged cosine."""
    i, j = np.triu_indices(matrix.shape[0], k=1)
    values = matrix[i, j]
    if not np.isfinite(values).any():
        return "n/a"
    k = int(np.nanargmin(values))
    return f"{names[i[k]]} / {names[j[k]]} ({values[k]:.2f})"


def _cell(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def interference_markdown(rows: Sequence[InterferenceRow], names: Sequence[str]) -> str:
    """The ``Task interference`` section of ``report.md``."""
    lines = [
        "## Task interference",
        "",
        "Cosines between the per-task gradients of each network's shared parameters, logged at "
        "every logged update (`interference/<network>/<i>_<j>`). Per run the mean over all "
        f'logged updates ("whole") and over the last {LAST_FRACTION:.0%} of the env steps '
        '("last 20%"), then the mean over seeds; the table gives the mean over task pairs of '
        "that matrix (negative: tasks pull the shared parameters apart on average) and the "
        "most conflicting pair of the whole-training matrix. `interference.png` draws the "
        "whole-training matrices.",
        "",
    ]
    if not any(row.whole for row in rows):
        return "\n".join([*lines, "No run logged interference matrices.", ""]) + "\n"
    header = ["Method", "Seeds"]
    for network in NETWORKS:
        header += [
            f"{network} mean cos, whole",
            f"{network} mean cos, last 20%",
            f"{network} most conflicting",
        ]
    lines += ["| " + " | ".join(header) + " |", "|---|---:|" + "---:|---:|---|" * len(NETWORKS)]
    for row in rows:
        cells = [row.label, str(len(row.seeds))]
        for network in NETWORKS:
            whole, last = row.whole.get(network), row.last.get(network)
            cells += [
                _cell(mean_off_diagonal(whole)) if whole is not None else "n/a",
                _cell(mean_off_diagonal(last)) if last is not None else "n/a",
                most_conflicting(whole, names) if whole is not None else "n/a",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n"


def plot_interference(rows: Sequence[InterferenceRow], names: Sequence[str], path: Path) -> None:
    """Heatmaps of the whole-training matrices: one row of panels per report row, critic and
    actor side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtrl_align.sweep.stability import save_small_png

    shown = [row for row in rows if row.whole]
    fig, axes = plt.subplots(
        len(shown),
        len(NETWORKS),
        figsize=(9.0, 4.2 * len(shown) + 0.4),
        squeeze=False,
        layout="constrained",
    )
    image = None
    for r, row in enumerate(shown):
        for c, network in enumerate(NETWORKS):
            ax = axes[r][c]
            matrix = row.whole.get(network)
            if matrix is None:
                ax.axis("off")
                continue
            seeds = f"{len(row.seeds)} seed{'' if len(row.seeds) == 1 else 's'}"
            title = f"{row.label} ({seeds}): {network}"
            image = draw_heatmap(ax, matrix, names, title)
            if c > 0:  # same tasks as the panel on the left
                ax.set_yticklabels([])
    if image is not None:
        fig.colorbar(image, ax=axes, fraction=0.02, pad=0.02, label="mean cosine")
    fig.suptitle("Cosine between per-task gradients (mean over training and seeds)", fontsize=10)
    save_small_png(fig, path, dpi=80)
    plt.close(fig)
