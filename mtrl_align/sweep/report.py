"""``mtrl-align report``: runs on disk -> Markdown table, CSV and PNG plots.

Only finished runs enter the numbers; the others are listed as left out. All reported runs
must share one evaluation protocol (:mod:`mtrl_align.sweep.protocol`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtrl_align.sweep.grouping import group_runs
from mtrl_align.sweep.plots import plot_intervals, plot_success_curves
from mtrl_align.sweep.protocol import Protocol, common_protocol
from mtrl_align.sweep.results import METRICS, RowResult, summarize_group
from mtrl_align.sweep.runs import load_runs
from mtrl_align.sweep.state import RunState
from mtrl_align.sweep.tables import csv_rows, markdown_report, write_csv

MARKDOWN_NAME = "report.md"
CSV_NAME = "report.csv"
CURVES_NAME = "success_curves.png"
INTERVALS_NAME = "success_intervals.png"


@dataclass(frozen=True)
class Report:
    """A written report.

    Attributes:
        rows: one per method configuration.
        protocol: the runs' common protocol.
        metric: ``final`` or ``best``.
        excluded: runs left out, one line each.
        markdown: path of the Markdown report.
        csv: path of the CSV table.
        plots: paths of the PNG plots.
    """

    rows: list[RowResult]
    protocol: Protocol
    metric: str
    excluded: list[str]
    markdown: Path
    csv: Path
    plots: list[Path]


def build_report(
    runs_dir: str | Path,
    out_dir: str | Path | None = None,
    metric: str = "final",
    bootstrap_seed: int = 0,
    with_plots: bool = True,
) -> Report:
    """Read every run under ``runs_dir`` and write the report into ``out_dir``.

    Args:
        runs_dir: folder holding run directories at any depth (e.g. a sweep directory).
        out_dir: where ``report.md``, ``report.csv`` and the plots go (default
            ``runs_dir/report``).
        metric: ``final`` (last evaluation) or ``best`` (best evaluation over training).
        bootstrap_seed: seed of the IQM bootstrap.
        with_plots: also draw the PNG plots.

    Raises:
        FileNotFoundError: no runs under ``runs_dir``.
        ValueError: no finished run, runs of different protocols, a duplicated seed, or a
            malformed log; the message says which.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}'; choose from: {', '.join(METRICS)}")
    runs_dir = Path(runs_dir)
    out_dir = Path(out_dir) if out_dir is not None else runs_dir / "report"
    runs = load_runs(runs_dir)
    finished = [r for r in runs if r.state is RunState.FINISHED and r.evaluations]
    excluded = [
        f"{r.run_dir} ({r.state.value}, {len(r.evaluations)} evaluations)"
        for r in runs
        if r not in finished
    ]
    if not finished:
        states = ", ".join(sorted({r.state.value for r in runs}))
        raise ValueError(
            f"no finished runs under '{runs_dir}' ({len(runs)} runs, states: {states}); "
            "a report only uses finished runs"
        )
    protocol = common_protocol(finished)
    groups = group_runs(finished)
    rows = [summarize_group(g, protocol.tasks, metric, seed=bootstrap_seed) for g in groups]
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    if with_plots:
        plots = [out_dir / CURVES_NAME, out_dir / INTERVALS_NAME]
        plot_success_curves(groups, protocol, plots[0])
        plot_intervals(rows, metric, plots[1])
    markdown_path = out_dir / MARKDOWN_NAME
    markdown_path.write_text(
        markdown_report(rows, protocol, metric, excluded, [p.name for p in plots])
    )
    csv_path = out_dir / CSV_NAME
    write_csv(csv_path, csv_rows(rows, protocol, metric))
    return Report(rows, protocol, metric, excluded, markdown_path, csv_path, plots)
