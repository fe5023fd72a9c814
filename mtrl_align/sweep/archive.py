"""Keep finished runs in a small form (in git) and put them back on another machine.

A run directory holds checkpoints and TensorBoard events (megabytes) next to the few files a
report and a sweep need. :func:`archive_runs` copies, for every **finished** run under a sweep
folder, only

- ``config.yaml``, ``eval.jsonl`` and ``status.json`` (byte for byte), and
- ``scalars.jsonl``: the training-time stability scalars read from the run's TensorBoard
  events (:data:`SCALAR_PATTERNS`), one JSON object per env step
  (``{"step": 51500, "aggregation/critic/kappa": 12.3, ...}``),

into ``ARCHIVE/<run path relative to the sweep folder>/``. :func:`restore_runs` copies them back
into a sweep folder; ``mtrl-align sweep`` then skips them (a run directory whose
``status.json`` says ``finished`` and whose ``config.yaml`` matches the planned config is
skipped; no checkpoint is needed), and ``mtrl-align report`` reads them (the stability tables
read ``scalars.jsonl`` where there are no TensorBoard events).

Both refuse, with one line and before copying anything, what would mix runs: an archive that
holds an unfinished run, a run whose config differs from the one already at its place, or a
place that holds an unfinished run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtrl_align.interference import PAIR_KEY_PATTERN
from mtrl_align.sweep.runs import CONFIG_FILE, EVAL_FILE, find_run_dirs, path_under
from mtrl_align.sweep.state import STATUS_FILE, RunState, read_status

SCALARS_FILE = "scalars.jsonl"
TB_DIR = "tb"
# Copied verbatim; status.json last, so a half-copied run never reads as finished.
SMALL_FILES = (CONFIG_FILE, EVAL_FILE, STATUS_FILE)
# TensorBoard keys kept in scalars.jsonl (mtrl_align/training/logger.py).
SCALAR_PATTERNS = (
    r"aggregation/[^/]+/(kappa|gms|min_cos|max_norm_ratio|mean_cos)",
    PAIR_KEY_PATTERN,  # the interference matrices (mtrl_align/interference.py)
    r"aggregation/[^/]+/stat/.+",
    r"losses/[^/]+_mean",
    r"perf/env_steps_per_s",
    r"perf/update_ms",
)
_SCALAR_RE = re.compile("^(?:" + "|".join(SCALAR_PATTERNS) + ")$")


class ArchiveError(ValueError):
    """An archive or restore that would lose or mix runs; nothing was copied."""


# --------------------------------------------------------------------------- scalars


def is_archived_key(key: str) -> bool:
    """Whether TensorBoard key ``key`` goes into ``scalars.jsonl``."""
    return bool(_SCALAR_RE.match(key))


def read_tb_scalars(tb_dir: str | Path) -> list[dict[str, Any]]:
    """The archived keys of the TensorBoard events in ``tb_dir`` (all event files in it).

    A resumed run's events from the interrupted session at or after the resume step are
    dropped (the logger writes TensorBoard's ``purge_step``; the resumed session logs those
    steps again). TensorBoard warns of an "out of order event.step" each time it purges; that
    warning is expected here and silenced.

    Returns:
        one dict per step that has any of them, ascending: ``{"step": s, key: value, ...}``.
        A step logged twice (a resumed run) keeps the later value.
    """
    from tensorboard.backend.event_processing import event_accumulator as ea

    guidance = {
        ea.SCALARS: 0,  # keep every point
        ea.TENSORS: 1,
        ea.HISTOGRAMS: 1,
        ea.IMAGES: 1,
        ea.AUDIO: 1,
        ea.COMPRESSED_HISTOGRAMS: 1,
    }
    accumulator = ea.EventAccumulator(str(tb_dir), size_guidance=guidance)
    with _quiet_logger("tensorboard"):
        accumulator.Reload()
    by_step: dict[int, dict[str, Any]] = {}
    for key in sorted(accumulator.Tags().get("scalars", [])):
        if not is_archived_key(key):
            continue
        for event in accumulator.Scalars(key):
            by_step.setdefault(int(event.step), {})[key] = _round(event.value)
    return [{"step": step, **values} for step, values in sorted(by_step.items())]


@contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Logger ``name`` shows errors only inside the block (its level restored after)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _round(value: float) -> float:
    value = float(value)
    return float(f"{value:.7g}") if math.isfinite(value) else value


def _encode(value: Any) -> Any:
    # Strict JSON has no inf/nan (kappa is inf for a rank-deficient Jacobian).
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _decode(value: Any) -> Any:
    return float(value) if value in ("nan", "inf", "-inf") else value


def write_scalars(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` as ``scalars.jsonl`` (non-finite values as the strings inf / nan)."""
    path = Path(path)
    text = "".join(
        json.dumps({k: _encode(v) for k, v in row.items()}, allow_nan=False) + "\n" for row in rows
    )
    _atomic_write_bytes(path, text.encode())


def read_scalars(path: str | Path) -> list[dict[str, Any]]:
    """Read ``scalars.jsonl`` back (the inverse of :func:`write_scalars`)."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number} is not valid JSON: {error}") from None
        rows.append({k: (int(v) if k == "step" else _decode(v)) for k, v in entry.items()})
    return rows


def run_scalars(run_dir: str | Path) -> list[dict[str, Any]] | None:
    """A run's stability scalars: from ``scalars.jsonl`` (an archived or restored run) or else
    its TensorBoard events; ``None`` when it has neither."""
    run_dir = Path(run_dir)
    if (run_dir / SCALARS_FILE).is_file():
        return read_scalars(run_dir / SCALARS_FILE)
    if (run_dir / TB_DIR).is_dir() and any((run_dir / TB_DIR).glob("events.out.tfevents.*")):
        return read_tb_scalars(run_dir / TB_DIR)
    return None


# --------------------------------------------------------------------------- archive / restore


@dataclass
class ArchiveResult:
    """What :func:`archive_runs` did (run paths relative to the sweep folder).

    Attributes:
        copied: runs written into the archive (new or changed).
        up_to_date: finished runs the archive already held unchanged.
        not_finished: ``"path (state)"`` of runs left out because they are not finished.
        without_scalars: archived runs that had neither TensorBoard events nor scalars.jsonl.
    """

    copied: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    not_finished: list[str] = field(default_factory=list)
    without_scalars: list[str] = field(default_factory=list)


@dataclass
class RestoreResult:
    """What :func:`restore_runs` did (run paths relative to the archive).

    Attributes:
        restored: runs copied into the sweep folder.
        already_there: runs the sweep folder already held, finished, with the same config.
    """

    restored: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)


def archive_runs(sweep_dir: str | Path, archive_dir: str | Path) -> ArchiveResult:
    """Copy the small files of every finished run under ``sweep_dir`` into ``archive_dir``.

    Unfinished runs are left out (listed in the result). A run already in the archive with the
    same config and files is left as it is.

    Raises:
        FileNotFoundError: ``sweep_dir`` does not exist.
        ArchiveError: the folders overlap, or the archive holds a run at a run's place with
            another config (nothing is copied then).
    """
    sweep_dir, archive_dir = Path(sweep_dir), Path(archive_dir)
    _check_apart(sweep_dir, archive_dir)
    result = ArchiveResult()
    plan: list[tuple[Path, Path, str]] = []
    for run_dir in find_run_dirs(sweep_dir):
        rel = str(path_under(run_dir, sweep_dir))
        status = read_status(run_dir)
        if status.state is not RunState.FINISHED:
            result.not_finished.append(f"{rel} ({status.state.value})")
            continue
        target = archive_dir / rel
        if (target / CONFIG_FILE).is_file():
            _check_same_config(run_dir, target, f"archive run '{target}'")
            if _same_small_files(run_dir, target) and (target / SCALARS_FILE).is_file():
                result.up_to_date.append(rel)
                continue
        plan.append((run_dir, target, rel))
    for run_dir, target, rel in plan:
        target.mkdir(parents=True, exist_ok=True)
        rows = run_scalars(run_dir)
        if rows is None:
            result.without_scalars.append(rel)
            (target / SCALARS_FILE).unlink(missing_ok=True)
        else:
            write_scalars(target / SCALARS_FILE, rows)
        _copy_small_files(run_dir, target)
        result.copied.append(rel)
    return result


def restore_runs(archive_dir: str | Path, sweep_dir: str | Path) -> RestoreResult:
    """Copy the archived runs of ``archive_dir`` back into ``sweep_dir``.

    A run already in ``sweep_dir``, finished and with the same config, is left as it is.

    Raises:
        FileNotFoundError: ``archive_dir`` does not exist or holds no runs.
        ArchiveError: an archived run is not finished or lacks a file, a run directory in
            ``sweep_dir`` holds a run with another config or an unfinished run, or a sweep is
            running on a folder that would receive runs (nothing is copied then).
    """
    archive_dir, sweep_dir = Path(archive_dir), Path(sweep_dir)
    _check_apart(sweep_dir, archive_dir)
    result = RestoreResult()
    plan: list[tuple[Path, Path, str]] = []
    for archived in find_run_dirs(archive_dir):
        rel = str(path_under(archived, archive_dir))
        missing = [name for name in SMALL_FILES if not (archived / name).is_file()]
        if missing:
            raise ArchiveError(f"archive run '{archived}' lacks {', '.join(missing)}")
        status = read_status(archived)
        if status.state is not RunState.FINISHED:
            raise ArchiveError(
                f"archive run '{archived}' is not finished ({status.state.value}); an archive "
                "holds finished runs only"
            )
        target = sweep_dir / rel
        if (target / CONFIG_FILE).is_file():
            _check_same_config(archived, target, f"run directory '{target}'")
            there = read_status(target)
            if there.state is RunState.FINISHED:
                result.already_there.append(rel)
                continue
            raise ArchiveError(
                f"run directory '{target}' holds an unfinished run ({there.state.value}) of the "
                "same config; not overwritten (delete it to restore the archived finished run)"
            )
        if target.exists() and any(target.iterdir()):
            raise ArchiveError(
                f"run directory '{target}' is not empty but holds no {CONFIG_FILE}; not overwritten"
            )
        plan.append((archived, target, rel))
    for _, target, _ in plan:
        _check_no_live_sweep(target, sweep_dir)
    for archived, target, rel in plan:
        target.mkdir(parents=True, exist_ok=True)
        if (archived / SCALARS_FILE).is_file():
            _atomic_write_bytes(target / SCALARS_FILE, (archived / SCALARS_FILE).read_bytes())
        _copy_small_files(archived, target)
        result.restored.append(rel)
    return result


def _check_apart(sweep_dir: Path, archive_dir: Path) -> None:
    a, b = sweep_dir.resolve(), archive_dir.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise ArchiveError(
            f"the sweep folder '{sweep_dir}' and the archive '{archive_dir}' must not contain "
            "one another"
        )


def _load_config(run_dir: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load((run_dir / CONFIG_FILE).read_text()) or {}
    except yaml.YAMLError as error:
        raise ArchiveError(f"'{run_dir / CONFIG_FILE}' is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ArchiveError(f"'{run_dir / CONFIG_FILE}' does not hold a config mapping")
    return config


def _check_same_config(source: Path, target: Path, what: str) -> None:
    from mtrl_align.sweep.runner import config_differences

    differences = config_differences(_load_config(target), _load_config(source))
    if differences:
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        raise ArchiveError(
            f"{what} holds a run with another config than '{source}' ({shown}); nothing copied"
        )


def _same_small_files(a: Path, b: Path) -> bool:
    for name in SMALL_FILES:
        pa, pb = a / name, b / name
        if pa.is_file() != pb.is_file():
            return False
        if pa.is_file() and pa.read_bytes() != pb.read_bytes():
            return False
    return True


def _copy_small_files(source: Path, target: Path) -> None:
    for name in SMALL_FILES:
        if (source / name).is_file():
            _atomic_write_bytes(target / name, (source / name).read_bytes())


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _check_no_live_sweep(target: Path, sweep_dir: Path) -> None:
    """Refuse to put runs into a sweep folder a live ``mtrl-align sweep`` works on."""
    from mtrl_align.sweep.launch import pid_alive
    from mtrl_align.sweep.runner import LOCK_FILE

    root = sweep_dir.resolve()
    folder = target.resolve()
    for candidate in (folder, *folder.parents):
        lock = candidate / LOCK_FILE
        if lock.is_file():
            try:
                holder = json.loads(lock.read_text())
            except json.JSONDecodeError:
                holder = {}
            if holder.get("host") == socket.gethostname() and pid_alive(int(holder.get("pid", -1))):
                raise ArchiveError(
                    f"a sweep (pid {holder['pid']}) is running on '{candidate}'; restore before "
                    "starting it or after it ends; nothing copied"
                )
        if candidate == root:
            break
