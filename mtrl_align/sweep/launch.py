"""Run one training of a sweep as its own process: ``python -m mtrl_align.cli train ...``.

:func:`execute_run` is what every backend runs for a run (in a pool worker, a SLURM job or a
Ray task). It looks at the run directory first, so a job that is requeued after a preemption
resumes instead of starting over, and a finished run is never trained twice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import mtrl_align
from mtrl_align.sweep.plan import RunSpec
from mtrl_align.sweep.state import Action, RunState, decide_action, read_status

LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run of a sweep.

    Attributes:
        name: run name, e.g. ``cagrad/seed_3``.
        run_dir: its run directory.
        action: what was done (``start``, ``resume`` or ``skip``).
        state: state of the run directory afterwards (``finished``, ``failed``, ...).
        returncode: exit code of the training process (``None`` when skipped).
        error: why it failed (the recorded error, or the tail of its log), else ``None``.
        log_path: file holding the training process's stdout and stderr.
        wall_time_s: seconds the training process ran.
    """

    name: str
    run_dir: str
    action: str
    state: str
    returncode: int | None = None
    error: str | None = None
    log_path: str | None = None
    wall_time_s: float = 0.0
    env_steps: int = 0
    extra: dict = field(default_factory=dict)


def failed_start(spec: RunSpec, error: str) -> RunOutcome:
    """The outcome of a run whose worker (pool thread, SLURM job, Ray task) itself failed."""
    return RunOutcome(spec.name, str(spec.run_dir), "start", "failed", error=error)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (``os.kill(pid, 0)``); ids <= 0 are never alive."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def train_command(spec: RunSpec, action: Action, python: str = sys.executable) -> list[str]:
    """The command line that starts (or resumes) ``spec``'s training."""
    if action is Action.RESUME:
        return [python, "-m", "mtrl_align.cli", "train", "--resume", str(spec.run_dir)]
    if action is Action.START:
        return [python, "-m", "mtrl_align.cli", "train", str(spec.config_path), *spec.overrides]
    raise ValueError(f"no command for action '{action.value}'")


def package_root() -> str:
    """The folder that holds the ``mtrl_align`` package (the repository root in a checkout)."""
    return str(Path(mtrl_align.__file__).resolve().parent.parent)


def run_environment(threads: int | None = None, gpu: str | None = None) -> dict[str, str]:
    """Environment of a training process.

    The package's own folder goes first on ``PYTHONPATH`` so the child trains with the same
    code as the sweep (also when the package is not installed). ``threads`` caps the CPU
    threads of torch/BLAS; ``gpu`` (e.g. ``"1"``) pins the run to one GPU.
    """
    env = dict(os.environ)
    root = package_root()
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p != root]])
    env["PYTHONUNBUFFERED"] = "1"
    if threads is not None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(max(1, int(threads)))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def log_path_of(spec: RunSpec) -> Path:
    """Log file of a run: ``<sweep dir>/logs/<method>_seed_<seed>.log``.

    It lives beside, not inside, the run directory, so that starting a run over never loses it.
    """
    sweep_dir = spec.run_dir.parent.parent
    return sweep_dir / "logs" / f"{spec.method}_seed_{spec.seed}.log"


_WARNING_LINE = re.compile(r"^\S.*:\d+: \w*Warning: ")


def _without_warnings(lines: list[str]) -> list[str]:
    """Drop Python warnings (``file:line: XWarning: ...`` and their indented source line)."""
    kept: list[str] = []
    skip_source = False
    for line in lines:
        if _WARNING_LINE.match(line):
            skip_source = True
            continue
        if skip_source and line.startswith((" ", "\t")):
            skip_source = False
            continue
        skip_source = False
        kept.append(line)
    return kept


def _error_from_log(returncode: int, log_path: Path) -> str:
    """The error of a run that died without recording one: the end of its log.

    The last log line (the error message the CLI prints) comes first, then the lines before
    it from this attempt, so a one-line view of the error still says what went wrong.
    """
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    attempt = text.rsplit("\n=== ", 1)[-1].splitlines()[1:]  # drop this attempt's header
    lines = [line for line in _without_warnings(attempt) if line.strip()][-LOG_TAIL_LINES:]
    if not lines:
        return f"training exited with code {returncode} and printed nothing"
    head = f"{lines[-1].strip()} (exit code {returncode})"
    return "\n".join([head, *lines[:-1]]) if len(lines) > 1 else head


def execute_run(
    spec: RunSpec,
    retry_failed: bool = False,
    threads: int | None = None,
    gpu: str | None = None,
    env_overrides: Mapping[str, str] | None = None,
) -> RunOutcome:
    """Bring ``spec`` to the finished state if it is not there yet; never raises for a crash.

    Reads the run directory, then starts, resumes or skips the run (see
    :func:`mtrl_align.sweep.state.decide_action`). A run started over is first cleared (it
    died before its first checkpoint, so it holds nothing to keep). The training process's
    output is appended to :func:`log_path_of`; a failure comes back as an outcome with the
    recorded error or the tail of that log.
    """
    before = read_status(spec.run_dir)
    action = decide_action(before, retry_failed=retry_failed)
    log_path = log_path_of(spec)
    if action is Action.SKIP:
        return RunOutcome(
            spec.name,
            str(spec.run_dir),
            action.value,
            before.state.value,
            error=before.error,
            log_path=str(log_path) if log_path.is_file() else None,
            env_steps=before.env_steps,
        )
    if action is Action.START and spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)
    env = run_environment(threads, gpu)
    env.update(env_overrides or {})
    command = train_command(spec, action)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log_path, "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {action.value}: {command}\n")
        log.flush()
        try:
            returncode = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False
            ).returncode
        except OSError as error:
            returncode = -1
            log.write(f"could not start training: {error}\n")
    wall_time = time.monotonic() - start
    after = read_status(spec.run_dir)
    error = None
    state = after.state
    if returncode != 0 or after.state is not RunState.FINISHED:
        if after.state is RunState.FINISHED:
            # Finished its work but the process failed on the way out: keep it finished.
            error = f"training exited with code {returncode} after finishing"
        elif after.state is RunState.INTERRUPTED and returncode < 0:
            error = f"training was stopped by signal {-returncode}; the next sweep resumes it"
            state = RunState.INTERRUPTED
        else:
            state = RunState.FAILED
            recorded = after.error if after.state is RunState.FAILED else None
            error = recorded or _error_from_log(returncode, log_path)
    return RunOutcome(
        spec.name,
        str(spec.run_dir),
        action.value,
        state.value,
        returncode,
        error,
        str(log_path),
        wall_time,
        after.env_steps,
    )
