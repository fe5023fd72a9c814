"""Read finished training runs from disk: resolved config, evaluation log and status.

A run directory (see the training contract) holds ``config.yaml``, ``eval.jsonl`` (one JSON
object per evaluation) and ``status.json``. :func:`find_run_dirs` finds them under a folder at
any depth, so a report can be pointed at one sweep or at a folder of sweeps.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from mtrl_align.sweep.state import RunState, read_status

CONFIG_FILE = "config.yaml"
EVAL_FILE = "eval.jsonl"
_REQUIRED_EVAL_KEYS = ("env_steps", "mean_success", "success")


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a run.

    Attributes:
        env_steps: env steps per task when it was taken.
        mean_success: success rate averaged over tasks, in [0, 1].
        success: success rate of each task, in [0, 1].
        episodes_per_task: evaluation episodes per task.
        wall_time_s: training wall time when it was taken (all sessions of a resumed run
            together), ``None`` when not logged.
        returns: mean undiscounted evaluation return of each task, ``None`` when not logged.
        cpu_time_s: training CPU time when it was taken (process and env workers, all
            sessions together), ``None`` when not logged.
        machine: what the session that took it trained on (CPU model, clock, CPUs, GPU), ``None``
            when not logged.
    """

    env_steps: int
    mean_success: float
    success: dict[str, float]
    episodes_per_task: int | None
    wall_time_s: float | None = None
    returns: dict[str, float] | None = None
    cpu_time_s: float | None = None
    machine: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """A run directory as read from disk.

    Attributes:
        run_dir: the directory.
        config: its resolved config (nested dict from ``config.yaml``).
        evaluations: its evaluations in the order of training (ascending ``env_steps``).
        state: ``finished``, ``interrupted`` (still running or killed), ``failed`` or ``new``.
    """

    run_dir: Path
    config: dict[str, Any]
    evaluations: list[Evaluation]
    state: RunState

    @property
    def method(self) -> str:
        return str(self.config.get("aggregation", {}).get("method", "?"))

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", -1))

    @property
    def task_names(self) -> list[str]:
        return list(self.evaluations[-1].success) if self.evaluations else []


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every directory under ``root`` (``root`` included) that holds a ``config.yaml``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"runs folder '{root}' does not exist")
    return sorted(path.parent for path in root.rglob(CONFIG_FILE))


def path_under(path: str | Path, root: str | Path) -> PurePosixPath:
    """``path`` relative to ``root`` (both resolved), e.g. ``efficient/uniform/seed_0``.

    Raises:
        ValueError: ``path`` is not ``root`` or below it; the message names both.
    """
    try:
        return PurePosixPath(Path(path).resolve().relative_to(Path(root).resolve()).as_posix())
    except ValueError:
        raise ValueError(f"'{path}' is not under '{root}'") from None


def read_evaluations(path: Path) -> list[Evaluation]:
    """Parse ``eval.jsonl``; a truncated last line (run killed mid-write) is ignored."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    evaluations = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number} is not valid JSON: {error}") from None
        missing = [k for k in _REQUIRED_EVAL_KEYS if k not in entry]
        if missing:
            raise ValueError(
                f"{path}:{number} lacks {', '.join(missing)}; not a training eval log?"
            )
        success = {str(k): float(v) for k, v in entry["success"].items()}
        evaluations.append(
            Evaluation(
                env_steps=int(entry["env_steps"]),
                mean_success=float(entry["mean_success"]),
                success=success,
                episodes_per_task=entry.get("episodes_per_task"),
                wall_time_s=(
                    float(entry["wall_time_s"]) if entry.get("wall_time_s") is not None else None
                ),
                returns=(
                    {str(k): float(v) for k, v in entry["returns"].items()}
                    if isinstance(entry.get("returns"), dict)
                    else None
                ),
                cpu_time_s=(
                    float(entry["cpu_time_s"]) if entry.get("cpu_time_s") is not None else None
                ),
                machine=str(entry["machine"]) if entry.get("machine") is not None else None,
            )
        )
    evaluations.sort(key=lambda e: e.env_steps)
    return evaluations


def load_run(run_dir: str | Path) -> RunRecord:
    """Read one run directory."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    try:
        config = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"'{config_path}' is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"'{config_path}' does not hold a config mapping")
    evaluations = read_evaluations(run_dir / EVAL_FILE)
    return RunRecord(run_dir, config, evaluations, read_status(run_dir).state)


def load_runs(root: str | Path) -> list[RunRecord]:
    """Read every run directory under ``root``."""
    dirs = find_run_dirs(root)
    if not dirs:
        raise FileNotFoundError(f"no run directories (with {CONFIG_FILE}) under '{root}'")
    return [load_run(d) for d in dirs]


def truncate_run(run: RunRecord, env_steps: int) -> RunRecord:
    """``run`` as if it had been trained for ``env_steps`` per task: its evaluations up to
    ``env_steps``, ``train.total_env_steps`` set to it, and finished when it has an
    evaluation at exactly ``env_steps`` (whatever its own state; a run stopped before or
    evaluated elsewhere keeps its state, so a report leaves it out).

    Raises:
        ValueError: ``env_steps`` < 1.
    """
    if env_steps < 1:
        raise ValueError(f"env_steps must be >= 1, got {env_steps}")
    kept = [e for e in run.evaluations if e.env_steps <= env_steps]
    reached = bool(kept) and kept[-1].env_steps == env_steps
    config = copy.deepcopy(run.config)
    config.setdefault("train", {})["total_env_steps"] = env_steps
    state = RunState.FINISHED if reached else run.state
    if not reached and run.state is RunState.FINISHED:
        state = RunState.INTERRUPTED
    return dataclasses.replace(run, config=config, evaluations=kept, state=state)
