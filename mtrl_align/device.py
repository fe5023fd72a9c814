"""Device selection shared by everything that trains."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("cpu", "cuda", "auto")


def resolve_device(name: str) -> torch.device:
    """Turn ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` into a ``torch.device``.

    ``auto`` picks CUDA when available, else CPU. Asking for CUDA on a machine without
    it is an error rather than a silent fallback.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device '{name}' requested but CUDA is not available; use cpu or auto"
            )
        return torch.device(name)
    raise ValueError(f"unknown device '{name}'; choose from: {', '.join(DEVICE_CHOICES)}, cuda:N")
