"""Run a planned sweep on a backend: check the configs, skip/resume/start runs, list failures.

Before anything trains, every run's config is resolved once (a typo in a key, a bad value or
an unknown method stops the whole sweep with one clear message instead of N crashed jobs), and
every existing run directory is checked to hold the same config, so that running a sweep again
with other settings never mixes them into old runs.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from mtrl_align.checkpointing import atomic_write_json
from mtrl_align.sweep.launch import RunOutcome, pid_alive
from mtrl_align.sweep.plan import RunSpec
from mtrl_align.sweep.state import Action, RunState, RunStatus, decide_action, read_status

BACKENDS = ("local", "submitit", "ray")
SUMMARY_FILE = "sweep_summary.json"
LOCK_FILE = ".sweep.lock"
LOG_LINES_IN_SUMMARY = 3
SUBMITIT_FOLDER = "submitit"
ACTIVE = "active"  # outcome state of a run whose cluster job is still pending or running
# Keys that may differ between the planned config and a run's saved config.
_KEYS_FREE_ON_RESUME = (
    "run_dir",  # a sweep directory may be moved
    "device",
    "num_threads",
    "flush_denormals",  # rounding of values below ~1e-38 only, like the thread count
    "env.num_workers",
    "runs_root",
    "train.progress_bar",
    "train.compile",
    "train.log_every_updates",
)


@dataclass(frozen=True)
class SweepSummary:
    """Result of one sweep invocation.

    Attributes:
        outcomes: one per planned run (skipped runs included).
        sweep_dir: the sweep directory.
    """

    outcomes: list[RunOutcome]
    sweep_dir: Path

    def with_state(self, state: str) -> list[RunOutcome]:
        """Outcomes whose run ended in ``state`` (``finished``, ``failed``, ...)."""
        return [o for o in self.outcomes if o.state == state]

    @property
    def all_finished(self) -> bool:
        return all(o.state == RunState.FINISHED.value for o in self.outcomes)


def resolve_run_config(spec: RunSpec) -> dict[str, Any]:
    """The full config ``spec`` will train with, as a plain dict (raises on a bad config)."""
    from mtrl_align.config import load_train_config
    from mtrl_align.config_io import to_dict

    return to_dict(load_train_config(spec.config_path, list(spec.overrides)))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree}


def default_config_flat() -> dict[str, Any]:
    """Dotted leaves of the default ``TrainConfig`` (YAML round trip, as saved configs are)."""
    from mtrl_align.config import TrainConfig
    from mtrl_align.config_io import to_dict

    return _flatten(yaml.safe_load(yaml.safe_dump(to_dict(TrainConfig()))))


def config_differences(saved: dict[str, Any], planned: dict[str, Any]) -> list[str]:
    """``"key: A there, B here"`` per leaf where two configs differ (run-time keys aside).

    A key that one config lacks counts as its default value: config keys added after a run was
    saved (at defaults that keep the old behaviour) do not make it another run.
    """
    # YAML round trip so tuples/lists and other representation details compare equal.
    saved_flat = _flatten(yaml.safe_load(yaml.safe_dump(saved)))
    planned_flat = _flatten(yaml.safe_load(yaml.safe_dump(planned)))
    defaults: dict[str, Any] | None = None
    lines = []
    for key in sorted(set(saved_flat) | set(planned_flat)):
        if key in _KEYS_FREE_ON_RESUME:
            continue
        there, here = saved_flat.get(key, "<absent>"), planned_flat.get(key, "<absent>")
        if there != here and "<absent>" in (there, here):
            defaults = default_config_flat() if defaults is None else defaults
            if key in defaults:
                there = defaults[key] if key not in saved_flat else there
                here = defaults[key] if key not in planned_flat else here
        if there != here:
            lines.append(f"{key}: {there!r} there, {here!r} here")
    return lines


def check_specs(
    specs: Sequence[RunSpec],
    resolve: Callable[[RunSpec], dict[str, Any]] = resolve_run_config,
) -> None:
    """Resolve every run's config and compare it with the run directory's saved one.

    Raises:
        ValueError: a run's config does not load (the message names the run), or an existing
            run directory was made with a different config.
    """
    for spec in specs:
        try:
            planned = resolve(spec)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"run {spec.name}: {error}") from None
        saved_path = spec.run_dir / "config.yaml"
        if not saved_path.is_file():
            continue
        saved = yaml.safe_load(saved_path.read_text()) or {}
        differences = config_differences(saved, planned)
        if differences:
            shown = "; ".join(differences[:5]) + ("; ..." if len(differences) > 5 else "")
            raise ValueError(
                f"run directory '{spec.run_dir}' holds a run with another config ({shown}); "
                "use another --out for these settings, or delete that run directory"
            )


@contextmanager
def sweep_lock(sweep_dir: Path):
    """Refuse to run two sweeps on one directory at the same time from this host."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    lock = sweep_dir / LOCK_FILE
    host = socket.gethostname()
    if lock.is_file():
        try:
            holder = json.loads(lock.read_text())
        except json.JSONDecodeError:
            holder = {}
        if holder.get("host") == host and pid_alive(int(holder.get("pid", -1))):
            raise ValueError(
                f"another sweep (pid {holder['pid']}) is running on '{sweep_dir}'; wait for it "
                f"or stop it (remove {lock} if that process is gone)"
            )
    lock.write_text(json.dumps({"host": host, "pid": os.getpid(), "since": time.time()}))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _progress_printer(total: int, stream: TextIO) -> Callable[[RunOutcome], None]:
    done = [0]

    def report(outcome: RunOutcome) -> None:
        done[0] += 1
        line = f"[{done[0]}/{total}] {outcome.name}: {outcome.state}"
        if outcome.wall_time_s:
            line += f" after {outcome.wall_time_s:.0f}s ({outcome.action})"
        if outcome.error and outcome.state != RunState.FINISHED.value:
            line += f" - {outcome.error.splitlines()[0]}"
        print(line, file=stream, flush=True)

    return report


def run_sweep(
    specs: Sequence[RunSpec],
    sweep_dir: str | Path,
    backend: str = "local",
    retry_failed: bool = False,
    dry_run: bool = False,
    backend_options: dict[str, Any] | None = None,
    resolve: Callable[[RunSpec], dict[str, Any]] = resolve_run_config,
    stream: TextIO | None = None,
) -> SweepSummary:
    """Check, then run the unfinished runs of a sweep on ``backend``.

    Args:
        specs: the planned runs (:func:`mtrl_align.sweep.plan.plan_sweep`).
        sweep_dir: the sweep directory (lock, logs, summary, submitit folder).
        backend: ``local``, ``submitit`` or ``ray``.
        retry_failed: rerun runs that failed before instead of only listing them.
        dry_run: print what would be done and stop.
        backend_options: keyword arguments of the backend's run function
            (:func:`~mtrl_align.sweep.local_backend.run_local`,
            :func:`~mtrl_align.sweep.submitit_backend.run_submitit`,
            :func:`~mtrl_align.sweep.ray_backend.run_ray`).
        resolve: resolves a run's config (replaceable in tests).
        stream: where progress lines go (default: standard output).

    Returns:
        the summary, also written to ``sweep_dir/sweep_summary.json``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}'; choose from: {', '.join(BACKENDS)}")
    stream = stream if stream is not None else sys.stdout
    sweep_dir = Path(sweep_dir)
    check_specs(specs, resolve)
    earlier_failures = _earlier_failures(sweep_dir)
    statuses = {}
    for spec in specs:
        status = read_status(spec.run_dir)
        if spec.name in earlier_failures and status.state in (RunState.NEW, RunState.INTERRUPTED):
            # It crashed before writing its status (a bad option, a checkpoint that does not
            # load): keep it listed as failed instead of retrying it on every sweep.
            status = RunStatus(
                RunState.FAILED,
                status.env_steps,
                earlier_failures[spec.name],
                status.has_checkpoint,
            )
        statuses[spec.name] = status
    actions = {name: decide_action(s, retry_failed) for name, s in statuses.items()}
    active = _active_jobs(sweep_dir)
    for spec in specs:
        if spec.name in active and actions[spec.name] is not Action.SKIP:
            print(
                f"  {spec.name}: still running as job {active[spec.name]}, left alone", file=stream
            )
            actions[spec.name] = Action.SKIP
    to_run = [spec for spec in specs if actions[spec.name] is not Action.SKIP]
    counts = {a.value: sum(1 for x in actions.values() if x is a) for a in Action}
    print(
        f"sweep {sweep_dir}: {len(specs)} runs - {counts['start']} to start, "
        f"{counts['resume']} to resume, {counts['skip']} to skip; backend {backend}",
        file=stream,
        flush=True,
    )
    for spec in specs:
        status = statuses[spec.name]
        if status.state is RunState.FAILED and actions[spec.name] is Action.SKIP:
            print(
                f"  {spec.name}: failed before, not rerun (--retry-failed reruns it): "
                f"{(status.error or '').splitlines()[0] if status.error else ''}",
                file=stream,
            )
    if dry_run:
        for spec in specs:
            print(f"  {spec.name}: {actions[spec.name].value}", file=stream)
        return SweepSummary([], sweep_dir)
    with sweep_lock(sweep_dir):
        ran = _dispatch(to_run, sweep_dir, backend, retry_failed, backend_options or {}, stream)
        summary = _collect(specs, ran, statuses, active, sweep_dir)
        _write_summary(summary)
    _print_summary(summary, stream)
    return summary


def _collect(
    specs: Sequence[RunSpec],
    ran: list[RunOutcome],
    statuses: dict[str, RunStatus],
    active: dict[str, str],
    sweep_dir: Path,
) -> SweepSummary:
    """One outcome per planned run: those that ran, and the skipped ones as found."""
    by_name = {o.name: o for o in ran}
    outcomes = []
    for spec in specs:
        if spec.name in by_name:
            outcomes.append(by_name[spec.name])
        else:
            status = statuses[spec.name]
            outcomes.append(
                RunOutcome(
                    spec.name,
                    str(spec.run_dir),
                    Action.SKIP.value,
                    ACTIVE if spec.name in active else status.state.value,
                    error=None if spec.name in active else status.error,
                    env_steps=status.env_steps,
                    extra={"job_id": active[spec.name]} if spec.name in active else {},
                )
            )
    return SweepSummary(outcomes, sweep_dir)


def _active_jobs(sweep_dir: Path) -> dict[str, str]:
    """Runs of this sweep whose submitit job is still pending or running."""
    if not (sweep_dir / SUBMITIT_FOLDER).is_dir():
        return {}
    from mtrl_align.sweep.submitit_backend import active_jobs

    return active_jobs(sweep_dir / SUBMITIT_FOLDER)


def _earlier_failures(sweep_dir: Path) -> dict[str, str]:
    """Run name -> error of the runs the last sweep in ``sweep_dir`` saw fail."""
    path = sweep_dir / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        runs = json.loads(path.read_text()).get("runs", [])
    except (json.JSONDecodeError, AttributeError):
        return {}
    return {
        r["name"]: r.get("error") or "failed"
        for r in runs
        if isinstance(r, dict) and r.get("state") == RunState.FAILED.value and "name" in r
    }


def _dispatch(
    specs: list[RunSpec],
    sweep_dir: Path,
    backend: str,
    retry_failed: bool,
    options: dict[str, Any],
    stream: TextIO,
) -> list[RunOutcome]:
    if not specs:
        return []
    progress = _progress_printer(len(specs), stream)
    if backend == "local":
        from mtrl_align.sweep.local_backend import run_local

        return run_local(specs, retry_failed=retry_failed, on_outcome=progress, **options)
    if backend == "submitit":
        from mtrl_align.sweep.submitit_backend import run_submitit

        options = {"folder": sweep_dir / SUBMITIT_FOLDER, **options}
        return run_submitit(specs, retry_failed=retry_failed, on_outcome=progress, **options)
    from mtrl_align.sweep.ray_backend import run_ray

    return run_ray(specs, retry_failed=retry_failed, on_outcome=progress, **options)


def _write_summary(summary: SweepSummary) -> None:
    path = summary.sweep_dir / SUMMARY_FILE
    data = {
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "runs": [asdict(o) for o in summary.outcomes],
    }
    atomic_write_json(path, data, indent=1)


def _print_summary(summary: SweepSummary, stream: TextIO) -> None:
    counts: dict[str, int] = {}
    for outcome in summary.outcomes:
        counts[outcome.state] = counts.get(outcome.state, 0) + 1
    text = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    print(f"sweep done: {text}", file=stream)
    failed = [o for o in summary.outcomes if o.state != RunState.FINISHED.value]
    for outcome in failed:
        print(f"  {outcome.state}: {outcome.name} ({outcome.run_dir})", file=stream)
        if outcome.error:
            lines = outcome.error.splitlines()
            for line in lines[:LOG_LINES_IN_SUMMARY]:
                print(f"    {line}", file=stream)
            if len(lines) > LOG_LINES_IN_SUMMARY:
                print(f"    ... (full error in {SUMMARY_FILE})", file=stream)
        if outcome.log_path:
            print(f"    log: {outcome.log_path}", file=stream)
    print(f"summary: {summary.sweep_dir / SUMMARY_FILE}", file=stream)
