"""Training-time stability of a report's rows: per-task gradient statistics, wall time, speed.

During training, every ``train.log_every_updates`` updates, the per-task gradients of the
shared parameters (the Jacobian J [T, n] of the task losses) are summarized as
``aggregation/<network>/{kappa,gms,min_cos,max_norm_ratio}`` (``mtrl_align.aggregation.stats``:
kappa = condition number of J, min_cos = smallest pairwise cosine between task gradients).
They are read from a run's ``scalars.jsonl`` (archived runs) or TensorBoard events
(:func:`mtrl_align.sweep.archive.run_scalars`).

Per row and statistic, two numbers, each as the **median over seeds** with the **[min, max]
over seeds** as spread:

- ``whole training``: per run, the median over every logged update;
- ``last 20%``: per run, the median over the updates logged in the last 20% of the env steps
  (``env steps >= 0.8 * train.total_env_steps``).

Medians, because kappa is heavy-tailed (it is ``inf`` for a rank-deficient J).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtrl_align.sweep.grouping import RunGroup
from mtrl_align.sweep.protocol import config_value

NETWORKS = ("critic", "actor")
STATS = ("kappa", "gms", "min_cos", "max_norm_ratio")
TABLE_STATS = ("kappa", "min_cos")  # in report.md; stability.csv has all of STATS
LAST_FRACTION = 0.2
STAT_LABELS = {"kappa": "κ", "gms": "GMS", "min_cos": "min cos", "max_norm_ratio": "max norm ratio"}
PERF_KEYS = ("perf/env_steps_per_s", "perf/update_ms")


@dataclass(frozen=True)
class Spread:
    """Median over seeds and the smallest and largest seed value (NaN when no seed has one)."""

    median: float
    low: float
    high: float
    num_seeds: int


@dataclass(frozen=True)
class StabilityRow:
    """Stability numbers of one report row.

    Attributes:
        label: row label (as in the success table).
        seeds: seeds of the row.
        seeds_with_scalars: seeds whose run had stability scalars.
        whole: ``(network, stat)`` -> spread of the per-run medians over all logged updates.
        last: ``(network, stat)`` -> spread of the per-run medians over the last 20%.
        per_run_whole / per_run_last: ``(network, stat)`` -> per-run medians, in seed order
            (of ``seeds_with_scalars``; NaN where a run never logged the key).
        wall_time_h: per seed, hours of training wall time at the last evaluation (NaN when
            not logged), in the order of ``seeds``.
        cpu_time_h: per seed, hours of training CPU time (process and env workers) at the
            last evaluation (NaN when not logged), in the order of ``seeds``.
        machines: the machines the row's runs trained on (``machine`` of their evaluations,
            sorted, each once; ``not logged`` for evaluations without it).
        env_steps_per_s / update_ms: spreads over seeds of each run's median speed.
    """

    label: str
    seeds: list[int]
    seeds_with_scalars: list[int]
    whole: dict[tuple[str, str], Spread]
    last: dict[tuple[str, str], Spread]
    per_run_whole: dict[tuple[str, str], list[float]] = field(repr=False)
    per_run_last: dict[tuple[str, str], list[float]] = field(repr=False)
    wall_time_h: list[float]
    cpu_time_h: list[float]
    machines: list[str]
    env_steps_per_s: Spread
    update_ms: Spread


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``key`` in scalar rows, NaN values dropped (+-inf kept)."""
    points = [(r["step"], float(r[key])) for r in rows if key in r]
    if not points:
        return np.zeros(0), np.zeros(0)
    steps, values = (np.array(x, dtype=float) for x in zip(*points, strict=True))
    keep = ~np.isnan(values)
    return steps[keep], values[keep]


def _median(values: Sequence[float] | np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else math.nan


def _spread(values: Sequence[float]) -> Spread:
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if not arr.size:
        return Spread(math.nan, math.nan, math.nan, 0)
    return Spread(float(np.median(arr)), float(arr.min()), float(arr.max()), int(arr.size))


def run_medians(
    rows: Sequence[dict[str, Any]], key: str, total_env_steps: int
) -> tuple[float, float]:
    """A run's median of ``key`` over training and over the last 20% of the env steps."""
    steps, values = _series(rows, key)
    last = values[steps >= (1.0 - LAST_FRACTION) * total_env_steps]
    return _median(values), _median(last)


def _last_hours(run: Any, key: str) -> float:
    """``key`` (seconds) of the run's last evaluation in hours; NaN when not logged."""
    seconds = getattr(run.evaluations[-1], key) if run.evaluations else None
    return math.nan if seconds is None else seconds / 3600.0


def stability_rows(
    groups: Sequence[RunGroup], scalars: dict[Path, list[dict[str, Any]] | None]
) -> list[StabilityRow]:
    """Stability numbers per row.

    Args:
        groups: the report's rows.
        scalars: run directory -> its scalar rows (``None``: none recorded).
    """
    result = []
    for group in groups:
        whole: dict[tuple[str, str], list[float]] = {(n, s): [] for n in NETWORKS for s in STATS}
        last: dict[tuple[str, str], list[float]] = {(n, s): [] for n in NETWORKS for s in STATS}
        speeds: dict[str, list[float]] = {k: [] for k in PERF_KEYS}
        with_scalars = []
        for run in group.runs:
            rows = scalars.get(run.run_dir)
            if not rows:
                continue
            with_scalars.append(run.seed)
            total = int(config_value(run.config, "train.total_env_steps") or 0)
            for network, stat in whole:
                w, tail = run_medians(rows, f"aggregation/{network}/{stat}", total)
                whole[(network, stat)].append(w)
                last[(network, stat)].append(tail)
            for key in PERF_KEYS:
                speeds[key].append(_median(_series(rows, key)[1]))
        wall = [_last_hours(run, "wall_time_s") for run in group.runs]
        cpu = [_last_hours(run, "cpu_time_s") for run in group.runs]
        result.append(
            StabilityRow(
                label=group.label,
                seeds=group.seeds,
                seeds_with_scalars=with_scalars,
                whole={k: _spread(v) for k, v in whole.items()},
                last={k: _spread(v) for k, v in last.items()},
                per_run_whole=whole,
                per_run_last=last,
                wall_time_h=wall,
                cpu_time_h=cpu,
                machines=sorted(
                    {e.machine or "not logged" for run in group.runs for e in run.evaluations}
                ),
                env_steps_per_s=_spread(speeds["perf/env_steps_per_s"]),
                update_ms=_spread(speeds["perf/update_ms"]),
            )
        )
    return result


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 1000:
        return f"{value:.3g}" if abs(value) >= 1e5 else f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"


def _cell(spread: Spread) -> str:
    if spread.num_seeds == 0:
        return "n/a"
    if spread.num_seeds == 1:
        return _fmt(spread.median)
    return f"{_fmt(spread.median)} [{_fmt(spread.low)}, {_fmt(spread.high)}]"


def stability_markdown(rows: Sequence[StabilityRow], log_every_updates: int | None) -> str:
    """The stability and wall-time sections of ``report.md``."""
    every = f"every {log_every_updates:,} updates" if log_every_updates else "periodically"
    lines = [
        "## Gradient stability during training",
        "",
        "Statistics of the per-task gradients of the shared parameters (the Jacobian J [T, n] "
        f"of the task losses), logged {every} (`aggregation/<network>/<stat>`): κ = condition "
        "number of J (large: ill-conditioned, `inf`: rank-deficient), min cos = smallest "
        "pairwise cosine between task gradients (negative: conflicting tasks). Per run, the "
        f'median over all logged updates ("whole") and over the last {LAST_FRACTION:.0%} of '
        'the env steps ("last 20%"); in the table, the median over seeds [min, max over '
        "seeds].",
        "",
    ]
    if not any(row.seeds_with_scalars for row in rows):
        lines += ["No run has stability scalars (scalars.jsonl or TensorBoard events).", ""]
    else:
        for network in NETWORKS:
            header = ["Method", "Seeds"]
            for stat in TABLE_STATS:
                header += [f"{STAT_LABELS[stat]}, whole", f"{STAT_LABELS[stat]}, last 20%"]
            lines += [
                f"### {network.capitalize()}",
                "",
                "| " + " | ".join(header) + " |",
                "|---|---:|" + "---:|" * (len(header) - 2),
            ]
            for row in rows:
                cells = [row.label, str(len(row.seeds_with_scalars))]
                for stat in TABLE_STATS:
                    cells += [_cell(row.whole[(network, stat)]), _cell(row.last[(network, stat)])]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    lines += [
        "## Wall time and speed per run",
        "",
        "Wall time: training wall time at the last evaluation (`wall_time_s` in eval.jsonl; all "
        "sessions of a resumed run together). CPU time: CPU seconds of the training process and "
        "its env workers at the same point (`cpu_time_s`), the cost that other work beside a run "
        "does not inflate; n/a for runs that did not log it. Speed: per run the median of "
        "`perf/*` over training; median over seeds [min, max]. Times and speeds compare only "
        "between runs on the same machine (`machine` in eval.jsonl: CPU model, clock, CPUs, GPU).",
        "",
        "| Method | Seeds | Wall time per run, h: mean [min, max] | Per seed (h) "
        "| CPU time per run, h: mean [min, max] | Env steps/s | Update ms | Machines |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for row in rows:
        per_seed = ", ".join(
            f"s{s}: {'n/a' if math.isnan(h) else f'{h:.2f}'}"
            for s, h in zip(row.seeds, row.wall_time_h, strict=True)
        )
        lines.append(
            f"| {row.label} | {len(row.seeds)} | {_hours_cell(row.wall_time_h)} | {per_seed} | "
            f"{_hours_cell(row.cpu_time_h)} | {_cell(row.env_steps_per_s)} | "
            f"{_cell(row.update_ms)} | {'; '.join(row.machines) or 'n/a'} |"
        )
    return "\n".join(lines) + "\n"


def _hours_cell(hours: Sequence[float]) -> str:
    """mean [min, max] over the seeds that logged the time, with how many when not all."""
    values = np.array(hours, dtype=float)
    known = values[~np.isnan(values)]
    if not known.size:
        return "n/a"
    cell = f"{known.mean():.2f} [{known.min():.2f}, {known.max():.2f}]"
    return cell if known.size == values.size else f"{cell} ({known.size} of {values.size} seeds)"


def _nan_mean(hours: Sequence[float]) -> float | str:
    values = np.array(hours, dtype=float)
    return float(np.nanmean(values)) if (~np.isnan(values)).any() else ""


def stability_csv_rows(rows: Sequence[StabilityRow]) -> list[dict[str, object]]:
    """One flat dict per row for ``stability.csv``."""
    table = []
    for row in rows:
        record: dict[str, object] = {
            "method": row.label,
            "num_seeds": len(row.seeds),
            "seeds_with_scalars": " ".join(map(str, row.seeds_with_scalars)),
            "wall_time_h_mean": _nan_mean(row.wall_time_h),
            "cpu_time_h_mean": _nan_mean(row.cpu_time_h),
            "machines": "; ".join(row.machines),
        }
        for window, spreads in (("whole", row.whole), ("last20", row.last)):
            for network in NETWORKS:
                for stat in STATS:
                    s = spreads[(network, stat)]
                    prefix = f"{network}_{stat}_{window}"
                    record[f"{prefix}_median"] = s.median
                    record[f"{prefix}_min"] = s.low
                    record[f"{prefix}_max"] = s.high
        record["env_steps_per_s_median"] = row.env_steps_per_s.median
        record["update_ms_median"] = row.update_ms.median
        table.append(record)
    return table


def binned_curve(
    runs_rows: Sequence[Sequence[dict[str, Any]]], key: str, total_env_steps: int, bins: int = 50
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``key`` vs env steps over seeds: per run the median in each of ``bins`` equal step bins,
    then the median, min and max over runs. Returns ``(bin centres, median, low, high)``,
    bins without data dropped."""
    edges = np.linspace(0, max(total_env_steps, 1), bins + 1)
    per_run = np.full((len(runs_rows), bins), np.nan)
    for r, rows in enumerate(runs_rows):
        steps, values = _series(rows, key)
        index = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, bins - 1)
        for b in range(bins):
            chosen = values[index == b]
            if chosen.size:
                per_run[r, b] = np.median(chosen)
    keep = (~np.isnan(per_run)).any(axis=0)
    centres = 0.5 * (edges[:-1] + edges[1:])
    with warnings.catch_warnings():  # all-NaN bins (dropped below)
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(per_run, axis=0)
        low, high = np.nanmin(per_run, axis=0), np.nanmax(per_run, axis=0)
    return centres[keep], median[keep], low[keep], high[keep]


def plot_stability(
    groups: Sequence[RunGroup],
    scalars: dict[Path, list[dict[str, Any]] | None],
    total_env_steps: int,
    path: Path,
) -> None:
    """κ and min cos vs env steps, critic and actor panels, one line per row (median over
    seeds, band: min..max over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), sharex=True)
    for col, network in enumerate(NETWORKS):
        for row_index, stat in enumerate(TABLE_STATS):
            ax = axes[row_index][col]
            for g, group in enumerate(groups):
                runs_rows = [scalars[r.run_dir] for r in group.runs if scalars.get(r.run_dir)]
                if not runs_rows:
                    continue
                x, med, low, high = binned_curve(
                    runs_rows, f"aggregation/{network}/{stat}", total_env_steps
                )
                if not x.size:
                    continue
                color = f"C{g % 10}"
                ax.plot(x, med, color=color, lw=1.4, label=f"{group.label} ({len(runs_rows)})")
                if len(runs_rows) > 1:
                    finite = np.isfinite(low) & np.isfinite(high)
                    ax.fill_between(
                        x[finite], low[finite], high[finite], color=color, alpha=0.12, lw=0
                    )
            if stat == "kappa":
                ax.set_yscale("log")
            ax.set_title(f"{network}: {STAT_LABELS[stat]}", fontsize=10)
            ax.grid(alpha=0.3)
            if row_index == len(TABLE_STATS) - 1:
                ax.set_xlabel("env steps per task")
    axes[0][0].set_ylabel("κ (condition number of J)")
    axes[1][0].set_ylabel("min cos between task gradients")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8)
    fig.suptitle(
        "Per-task gradients of the shared parameters (median over seeds, band: min..max)",
        fontsize=10,
    )
    rows_of_legend = math.ceil(len(labels) / 3) if handles else 0
    fig.tight_layout(rect=(0, 0.04 + 0.035 * rows_of_legend, 1, 0.96))
    save_small_png(fig, path, dpi=90)
    plt.close(fig)


def save_small_png(fig: Any, path: Path, dpi: int = 90, colors: int = 96) -> None:
    """Save ``fig`` as a palette PNG (``colors`` colours): a few times smaller than RGBA, so
    the plots can be committed (the study keeps them under 200 KB)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
        palette.save(path, format="PNG", optimize=True)
