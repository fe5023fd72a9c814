"""Run checkpoints: what they hold, how they are checked, and the global RNG states.

``checkpoints/latest.pt`` holds everything needed to continue a run exactly: the agent
(networks, target critics, optimisers, temperatures, aggregator states, noise generator,
counters), the replay buffer, the training env (its per-task RNG checkpoints), the global RNG
states (python, numpy, torch CPU and CUDA), the loop counters, the reward normaliser's state
(``agent.reward_normalization``; None without it) and the resolved config.
``checkpoints/best.pt`` holds only the agent of the best evaluation (for ``evaluate``).

Every checkpoint carries a ``meta`` dict (format, tasks, method, variant, config fingerprint);
loading one written for other tasks or another config raises ``CheckpointError`` naming the
differences.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrl_align.checkpointing import CheckpointError, atomic_save, load_checkpoint
from mtrl_align.config import TrainConfig, config_fingerprint
from mtrl_align.config_io import to_dict

FORMAT = "mtrl-align-train/1"
_SESSION_KEYS = {
    "run_dir",
    "runs_root",
    "device",
    "num_threads",
    "flush_denormals",
    "env.num_workers",
}
_SESSION_LOOP_KEYS = {"progress_bar", "total_env_steps", "log_every_updates", "compile"}


def run_meta(config: TrainConfig, task_names: list[str], kind: str) -> dict[str, Any]:
    """The ``meta`` entry of a checkpoint (``kind``: "latest" or "best")."""
    return {
        "format": FORMAT,
        "kind": kind,
        "tasks": list(task_names),
        "method": config.aggregation.method,
        "variant": config.agent.variant,
        "fingerprint": config_fingerprint(config),
        "config": to_dict(config),
    }


def capture_rng_states() -> dict[str, Any]:
    """Global RNG states of python, numpy and torch (CPU and every CUDA device)."""
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"].cpu())
    if "torch_cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["torch_cuda"]])


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write atomically: a crash while writing leaves the previous file intact."""
    atomic_save(state, path)


def _config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            if isinstance(value, dict) and value and not prefix.startswith("aggregation.options"):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    saved_flat, current_flat = flat(saved), flat(current)
    defaults = flat(to_dict(TrainConfig()))  # a key added after the checkpoint: its default
    lines = []
    for key in sorted(set(saved_flat) | set(current_flat)):
        top, _, rest = key.partition(".")
        if key in _SESSION_KEYS or (top == "train" and rest in _SESSION_LOOP_KEYS):
            continue
        there = saved_flat.get(key, defaults.get(key, "<absent>"))
        here = current_flat.get(key, defaults.get(key, "<absent>"))
        if there != here:
            lines.append(f"{key} is {there!r} there, {here!r} here")
    return lines


def load_run_checkpoint(
    path: str | Path,
    config: TrainConfig,
    task_names: list[str],
    map_location: str | torch.device = "cpu",
    kind: str | None = None,
) -> dict[str, Any]:
    """Load a run checkpoint and check that it belongs to this config and task set.

    Raises:
        CheckpointError: missing, corrupt, not a training checkpoint, other tasks, other
            method/variant or any other difference in the config (each one named).
    """
    state = load_checkpoint(path, expected={"format": FORMAT}, map_location=map_location)
    meta = state["meta"]
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(
            f"checkpoint '{path}' is a {meta.get('kind')!r} checkpoint, not {kind!r}"
        )
    if meta.get("tasks") != list(task_names):
        raise CheckpointError(
            f"checkpoint '{path}' is incompatible: it was trained on tasks {meta.get('tasks')}, "
            f"this config has {list(task_names)}"
        )
    if meta.get("fingerprint") != config_fingerprint(config):
        # The fingerprint also changes when config keys were added since (at defaults that
        # keep the old behaviour); only real differences of the saved config count.
        differences = _config_differences(meta.get("config") or {}, to_dict(config))
        if differences or not meta.get("config"):
            shown = "; ".join(differences[:6]) or "config fingerprint differs"
            raise CheckpointError(f"checkpoint '{path}' was written with another config: {shown}")
    return state
