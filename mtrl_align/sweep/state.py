"""Where a run stands, read from its run directory, and what a sweep does with it.

Training writes ``status.json`` (``{"state": "running"|"finished"|"failed", "env_steps",
"error"}``) atomically and ``checkpoints/latest.pt`` as it goes. From those a sweep tells:

- ``new``: nothing there yet -> start it;
- ``finished`` -> skip it;
- ``interrupted``: ``running`` in ``status.json`` but no process behind it (killed, preempted,
  machine lost), or stopped with Ctrl-C (recorded as ``failed`` with an error starting with
  "interrupted") -> resume it from ``checkpoints/latest.pt``, or start over when it died before
  its first checkpoint;
- ``failed``: training stopped with an error -> list it with that error (rerun on request).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from pathlib import Path

STATUS_FILE = "status.json"
LATEST_CHECKPOINT = Path("checkpoints") / "latest.pt"
# Training records a Ctrl-C as state "failed" with an error starting with this word.
_INTERRUPTED_PREFIX = "interrupted"


class RunState(str, enum.Enum):
    """State of one run directory."""

    NEW = "new"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class Action(str, enum.Enum):
    """What a sweep does with a run."""

    START = "start"
    RESUME = "resume"
    SKIP = "skip"


@dataclass(frozen=True)
class RunStatus:
    """The state of a run directory and the facts it was read from.

    Attributes:
        state: see :class:`RunState`.
        env_steps: per-task env steps reached (0 when unknown).
        error: the recorded error of a failed run, else ``None``.
        has_checkpoint: whether ``checkpoints/latest.pt`` exists.
    """

    state: RunState
    env_steps: int = 0
    error: str | None = None
    has_checkpoint: bool = False


def read_status(run_dir: str | Path) -> RunStatus:
    """Read the state of ``run_dir`` (which need not exist yet)."""
    run_dir = Path(run_dir)
    has_checkpoint = (run_dir / LATEST_CHECKPOINT).is_file()
    status_path = run_dir / STATUS_FILE
    if not status_path.is_file():
        # Died before writing its first status (or never started).
        state = RunState.INTERRUPTED if has_checkpoint else RunState.NEW
        return RunStatus(state, has_checkpoint=has_checkpoint)
    try:
        status = json.loads(status_path.read_text())
        state_name = status["state"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        return RunStatus(
            RunState.FAILED,
            error=f"unreadable {status_path}: {error}",
            has_checkpoint=has_checkpoint,
        )
    env_steps = int(status.get("env_steps") or 0)
    if state_name == "finished":
        return RunStatus(RunState.FINISHED, env_steps, None, has_checkpoint)
    if state_name == "failed":
        error = str(status.get("error") or "failed without a recorded error")
        if error.startswith(_INTERRUPTED_PREFIX):
            # Stopped by Ctrl-C (KeyboardInterrupt): nothing went wrong, resume it.
            return RunStatus(RunState.INTERRUPTED, env_steps, None, has_checkpoint)
        return RunStatus(RunState.FAILED, env_steps, error, has_checkpoint)
    if state_name == "running":
        return RunStatus(RunState.INTERRUPTED, env_steps, None, has_checkpoint)
    return RunStatus(
        RunState.FAILED,
        env_steps,
        f"unknown state {state_name!r} in {status_path} (expected running, finished or failed)",
        has_checkpoint,
    )


def decide_action(status: RunStatus, retry_failed: bool = False) -> Action:
    """The sweep's action for a run in ``status``.

    Failed runs are skipped (and listed) unless ``retry_failed``; a retried or interrupted run
    resumes from its latest checkpoint when it has one, else starts over.
    """
    if status.state is RunState.FINISHED:
        return Action.SKIP
    if status.state is RunState.FAILED and not retry_failed:
        return Action.SKIP
    if status.state is RunState.NEW:
        return Action.START
    return Action.RESUME if status.has_checkpoint else Action.START
