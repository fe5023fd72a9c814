"""``mtrl-align report``: runs on disk -> Markdown table, CSV and PNG plots.

Only finished runs enter the numbers; the others are listed as left out. All reported runs
must share one evaluation protocol (:mod:`mtrl_align.sweep.protocol`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtrl_align.sweep.grouping import group_runs
from mtrl_align.sweep.plots import plot_intervals, plot_success_curves
from mtrl_align.sweep.protocol import Protocol, common_protocol
from mtrl_align.sweep.results import METRICS, RowResult, summarize_group
from mtrl_align.sweep.runs import RunRecord, load_runs, path_under, truncate_run
from mtrl_align.sweep.state import RunState
from mtrl_align.sweep.tables import csv_rows, markdown_report, write_csv

MARKDOWN_NAME = "report.md"
CSV_NAME = "report.csv"
CURVES_NAME = "success_curves.png"
INTERVALS_NAME = "success_intervals.png"
STABILITY_PLOT_NAME = "stability.png"
STABILITY_CSV_NAME = "stability.csv"
INTERFERENCE_PLOT_NAME = "interference.png"


@dataclass(frozen=True)
class Report:
    """A written report.

    Attributes:
        rows: one per method configuration.
        protocol: the runs' common protocol.
        metric: ``final``, ``best`` or ``last3``.
        excluded: runs left out, one line each.
        markdown: path of the Markdown report.
        csv: path of the CSV table.
        plots: paths of the PNG plots.
        stability: gradient stability, wall time and speed per row
            (:mod:`mtrl_align.sweep.stability`); empty when not computed.
        stability_csv: path of ``stability.csv``, when written.
        comparisons: every row against the baseline
            (:class:`mtrl_align.sweep.comparison.Comparison`); empty when not computed.
    """

    rows: list[RowResult]
    protocol: Protocol
    metric: str
    excluded: list[str]
    markdown: Path
    csv: Path
    plots: list[Path]
    stability: list = field(default_factory=list)
    stability_csv: Path | None = None
    comparisons: list = field(default_factory=list)


def build_report(
    runs_dir: str | Path,
    out_dir: str | Path | None = None,
    metric: str = "final",
    bootstrap_seed: int = 0,
    with_plots: bool = True,
    with_stability: bool = True,
    baseline: str | None = None,
    with_comparison: bool = True,
    at_env_steps: int | None = None,
    labels: str = "settings",
) -> Report:
    """Read every run under ``runs_dir`` and write the report into ``out_dir``.

    Args:
        runs_dir: folder holding run directories at any depth (e.g. a sweep directory).
        out_dir: where ``report.md``, ``report.csv`` and the plots go (default
            ``runs_dir/report``).
        metric: ``final`` (last evaluation), ``best`` (best evaluation over training) or
            ``last3`` (mean of the last three evaluations).
        bootstrap_seed: seed of the IQM bootstrap.
        with_plots: also draw the PNG plots.
        with_stability: also add the gradient-stability, task-interference and wall-time
            sections (from each run's ``scalars.jsonl`` or TensorBoard events),
            ``stability.csv`` and, with ``with_plots``, ``stability.png`` when any run has
            stability scalars and ``interference.png`` when any run logged interference
            matrices (:mod:`mtrl_align.sweep.interference`).
        baseline: the row the others are compared with (a full row label, or a method with
            one row; :mod:`mtrl_align.sweep.comparison`). None: ``uniform`` when it names
            exactly one row; otherwise the section says why there is no comparison.
        with_comparison: also add the ``Differences from <baseline>`` section.
        at_env_steps: read every run as if it ended at this many env steps per task
            (:func:`mtrl_align.sweep.runs.truncate_run`): longer runs and runs still in
            progress that have reached it count, shorter ones are left out; e.g. runs of
            50k and 100k steps in one table at 50k.
        labels: how rows are labelled: ``settings`` (the method and the settings that set a
            row apart) or ``folders`` (the folder of the row's seed directories under
            ``runs_dir``, e.g. ``efficient/uniform``; the settings go to the "Runs" list);
            :mod:`mtrl_align.sweep.grouping`.

    Raises:
        FileNotFoundError: no runs under ``runs_dir``.
        ValueError: no finished run, runs of different protocols, a duplicated seed, or a
            malformed log; the message says which.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}'; choose from: {', '.join(METRICS)}")
    runs_dir = Path(runs_dir)
    out_dir = Path(out_dir) if out_dir is not None else runs_dir / "report"
    loaded = load_runs(runs_dir)
    runs = loaded
    if at_env_steps is not None:
        runs = [truncate_run(r, at_env_steps) for r in loaded]
    finished = [r for r in runs if r.state is RunState.FINISHED and r.evaluations]
    excluded = [
        _exclusion_note(original, run, at_env_steps, runs_dir)
        for original, run in zip(loaded, runs, strict=True)
        if run not in finished
    ]
    if not finished:
        states = ", ".join(sorted({r.state.value for r in runs}))
        raise ValueError(
            f"no finished runs under '{runs_dir}' ({len(runs)} runs, states: {states}); "
            "a report only uses finished runs"
        )
    protocol = common_protocol(finished)
    groups = group_runs(finished, labels=labels, root=runs_dir)
    rows = [summarize_group(g, protocol.tasks, metric, seed=bootstrap_seed) for g in groups]
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    if with_plots:
        plots = [out_dir / CURVES_NAME, out_dir / INTERVALS_NAME]
        plot_success_curves(groups, protocol, plots[0])
        plot_intervals(rows, metric, plots[1])
    sections: list[str] = []
    comparisons: list = []
    if with_comparison:
        comparisons, section = _comparison_section(rows, baseline, bootstrap_seed)
        sections.append(section)
    stability: list = []
    stability_csv: Path | None = None
    if with_stability:
        from mtrl_align.sweep.archive import run_scalars
        from mtrl_align.sweep.stability import (
            plot_stability,
            stability_csv_rows,
            stability_markdown,
            stability_rows,
        )

        scalars = {
            run.run_dir: _scalars_up_to(run_scalars(run.run_dir), at_env_steps) for run in finished
        }
        stability = stability_rows(groups, scalars)
        every = finished[0].config.get("train", {}).get("log_every_updates")
        sections.append(stability_markdown(stability, every))
        stability_csv = out_dir / STABILITY_CSV_NAME
        write_csv(stability_csv, stability_csv_rows(stability))
        if with_plots and any(s.num_seeds for row in stability for s in row.whole.values()):
            plots.append(out_dir / STABILITY_PLOT_NAME)
            plot_stability(groups, scalars, protocol.env_steps, plots[-1])
        sections.append(_interference_section(groups, scalars, protocol, out_dir, with_plots))
        if with_plots and (out_dir / INTERFERENCE_PLOT_NAME).is_file():
            plots.append(out_dir / INTERFERENCE_PLOT_NAME)
    markdown_path = out_dir / MARKDOWN_NAME
    markdown_path.write_text(
        markdown_report(rows, protocol, metric, excluded, [p.name for p in plots], sections)
    )
    csv_path = out_dir / CSV_NAME
    write_csv(csv_path, csv_rows(rows, protocol, metric))
    return Report(
        rows,
        protocol,
        metric,
        excluded,
        markdown_path,
        csv_path,
        plots,
        stability,
        stability_csv,
        comparisons,
    )


def _scalars_up_to(
    records: list[dict[str, Any]] | None, env_steps: int | None
) -> list[dict[str, Any]] | None:
    """A run's training scalars logged at or before ``env_steps`` per task (all when None), so
    that a report ``--at-steps`` reads stability, interference and speed over the same steps
    as the success rates."""
    if records is None or env_steps is None:
        return records
    return [record for record in records if record.get("step", 0) <= env_steps]


def _interference_section(
    groups: list, scalars: dict, protocol: Protocol, out_dir: Path, with_plots: bool
) -> str:
    """The task-interference section; draws ``interference.png`` (or removes a stale one)."""
    from mtrl_align.sweep.interference import (
        interference_markdown,
        interference_rows,
        plot_interference,
    )

    rows = interference_rows(groups, scalars, len(protocol.tasks))
    path = out_dir / INTERFERENCE_PLOT_NAME
    path.unlink(missing_ok=True)
    if with_plots and any(row.whole for row in rows):
        plot_interference(rows, protocol.tasks, path)
    return interference_markdown(rows, protocol.tasks)


def _comparison_section(rows: list[RowResult], baseline: str | None, seed: int) -> tuple[list, str]:
    from mtrl_align.sweep.comparison import (
        DEFAULT_BASELINE,
        choose_baseline,
        compare_rows,
        comparison_markdown,
    )

    try:
        chosen = choose_baseline(rows, baseline if baseline is not None else DEFAULT_BASELINE)
    except ValueError as error:
        if baseline is not None:  # asked for by name: a mistake to report
            raise
        return [], f"## Differences\n\nNo comparison: {error} (`--baseline LABEL`)."
    comparisons = compare_rows(rows, chosen, seed=seed)
    return comparisons, comparison_markdown(comparisons, chosen)


def _exclusion_note(
    original: RunRecord, run: RunRecord, at_env_steps: int | None, runs_dir: Path
) -> str:
    """Why a run is not in the tables: its state, or that it finished before ``at_env_steps``.

    The run is named by its folder under ``runs_dir`` (the report's own input), so that a
    committed report does not carry the path of the machine it was made on.
    """
    name = _relative_name(run.run_dir, runs_dir)
    if (
        at_env_steps is not None
        and original.state is RunState.FINISHED
        and run.state is not RunState.FINISHED
    ):
        last = original.evaluations[-1].env_steps if original.evaluations else 0
        return f"{name} (finished at {last:,} env steps, before {at_env_steps:,})"
    count = len(run.evaluations)
    return f"{name} ({_state_label(run.state)}, {count} evaluation{'' if count == 1 else 's'})"


def _relative_name(run_dir: Path, runs_dir: Path) -> str:
    """``run_dir`` relative to ``runs_dir`` when it lies below it, else ``run_dir`` as given."""
    try:
        relative = path_under(run_dir, runs_dir)
    except ValueError:
        return str(run_dir)
    return str(relative) if relative.parts else str(run_dir)


def _state_label(state: RunState) -> str:
    """How a left-out run is described: a run dir cannot tell a live run from a killed one."""
    return "running or interrupted" if state is RunState.INTERRUPTED else state.value
