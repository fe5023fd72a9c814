"""Files of a run directory (the contract the sweep and report tools read).

::

    RUN_DIR/
      config.yaml           resolved config
      status.json           {"state": "running"|"finished"|"failed", "env_steps", "error"}
      eval.jsonl            one JSON object per evaluation
      checkpoints/latest.pt everything needed to resume
      checkpoints/best.pt   agent of the best evaluation so far
      tb/                   TensorBoard events
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from mtrl_align.checkpointing import atomic_write_text

CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
EVAL_FILE = "eval.jsonl"
CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"
BEST = "best.pt"
TB_DIR = "tb"
STATES = ("running", "finished", "failed")


def default_run_name(benchmark: str, method: str, variant: str, seed: int) -> str:
    """``<benchmark>_<method>_<variant>_s<seed>_<YYYYmmdd-HHMMSS>`` (':' made file-safe)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{benchmark.replace(':', '-')}_{method}_{variant}_s{seed}_{stamp}"


class RunFiles:
    """Paths of one run directory plus the small writers that keep it consistent."""

    def __init__(self, run_dir: str | Path) -> None:
        self.root = Path(run_dir)
        self.config = self.root / CONFIG_FILE
        self.status = self.root / STATUS_FILE
        self.evals = self.root / EVAL_FILE
        self.checkpoints = self.root / CHECKPOINT_DIR
        self.latest = self.checkpoints / LATEST
        self.best = self.checkpoints / BEST
        self.tensorboard = self.root / TB_DIR

    def create(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.tensorboard.mkdir(parents=True, exist_ok=True)

    def clear_outputs(self) -> None:
        """Remove evaluations, best checkpoint and TensorBoard events of an earlier attempt
        (only called when starting fresh, i.e. when there is no latest checkpoint)."""
        self.evals.unlink(missing_ok=True)
        self.best.unlink(missing_ok=True)
        for events in self.tensorboard.glob("events.out.tfevents.*"):
            events.unlink()

    # -- status ----------------------------------------------------------------------------
    def write_status(self, state: str, env_steps: int, error: str | None = None) -> None:
        """Write status.json atomically (a reader never sees half a file)."""
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}; choose from: {', '.join(STATES)}")
        payload = {"state": state, "env_steps": int(env_steps), "error": error}
        atomic_write_text(self.status, json.dumps(payload) + "\n")

    def read_status(self) -> dict[str, Any] | None:
        if not self.status.is_file():
            return None
        return json.loads(self.status.read_text())

    # -- evaluations -----------------------------------------------------------------------
    def append_evaluation(self, record: dict[str, Any]) -> None:
        """Append one evaluation as a JSON line (flushed and synced)."""
        with self.evals.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read_evaluations(self) -> list[dict[str, Any]]:
        """All complete evaluation records (a torn last line is ignored)."""
        if not self.evals.is_file():
            return []
        records = []
        for line in self.evals.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return records

    def keep_evaluations(self, count: int) -> None:
        """Keep the first ``count`` records (those a checkpoint knows of) before resuming."""
        records = self.read_evaluations()[:count]
        atomic_write_text(self.evals, "".join(json.dumps(r) + "\n" for r in records))
