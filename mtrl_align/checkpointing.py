"""Atomic checkpoint files with a clear error for corrupt or mismatched ones."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, or from another setup."""


def _atomic_write(path: str | Path, write: Callable[[IO[Any]], None], mode: str) -> None:
    """Call ``write(handle)`` on a temporary file next to ``path``, then move it into place.

    The temporary file is flushed and fsynced before one ``os.replace`` step, so a crash
    never leaves a half-written ``path``; on any error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_save(state: dict[str, Any], path: str | Path) -> None:
    """Save ``state`` with ``torch.save`` so that a crash never leaves a half-written file."""
    _atomic_write(path, lambda handle: torch.save(state, handle), "wb")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file + ``os.replace``)."""
    _atomic_write(path, lambda handle: handle.write(text), "w")


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 1) -> None:
    """Write ``json.dumps(data, indent=indent)`` to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent))


def load_checkpoint(
    path: str | Path,
    expected: dict[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`atomic_save` and check it matches this setup.

    Args:
        path: checkpoint file.
        expected: entries of ``state["meta"]`` that must be equal (e.g. task names, method);
            a difference raises :class:`CheckpointError` naming the entry and both values.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means corrupt
        raise CheckpointError(f"checkpoint '{path}' is corrupt or unreadable: {error}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint '{path}' does not hold a dict of state")
    meta = state.get("meta", {})
    for key, value in (expected or {}).items():
        if key not in meta:
            raise CheckpointError(
                f"checkpoint '{path}' has no '{key}' entry; written by another tool?"
            )
        if meta[key] != value:
            raise CheckpointError(
                f"checkpoint '{path}' is incompatible: {key} is {meta[key]!r} there, {value!r} here"
            )
    return state
