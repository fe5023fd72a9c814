"""Device selection shared by everything that trains."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

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


def _cpuinfo_value(keys: tuple[str, ...]) -> str | None:
    """The first non-empty value of any of ``keys`` in /proc/cpuinfo (Linux), else None."""
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys and value.strip():
            return " ".join(value.split())
    return None


def cpu_model() -> str:
    """The CPU's model name (Linux: ``model name`` in /proc/cpuinfo), else what ``platform``
    reports, else ``unknown CPU``."""
    import platform

    model = _cpuinfo_value(("model name", "Model", "Processor"))
    return model or platform.processor() or platform.machine() or "unknown CPU"


def cpu_clock_ghz() -> float | None:
    """The CPU's clock in GHz: its maximum frequency where Linux's cpufreq reports one (steady
    under frequency scaling), else the first ``cpu MHz`` of /proc/cpuinfo (a virtual machine's
    fixed clock), else None. Two machines with one model name can differ here (the study met
    Intel Xeons at 2.1 and 2.6 GHz)."""
    from pathlib import Path

    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(max_freq.read_text().strip()) / 1e6  # kHz
    except (OSError, ValueError):
        pass
    mhz = _cpuinfo_value(("cpu MHz",))
    try:
        return float(mhz) / 1000 if mhz is not None else None
    except ValueError:
        return None


def describe_machine(device: torch.device) -> str:
    """One line naming what a run trains on, e.g. ``Intel(R) Xeon(R) Processor, 2.6 GHz,
    2 CPUs`` or ``AMD EPYC 7R13 Processor, 3.7 GHz, 16 CPUs, NVIDIA H100 80GB HBM3``: the CPU
    model, its clock (:func:`cpu_clock_ghz`, where known), the CPUs this process may use, and
    the GPU for a CUDA device. Wall and CPU times of runs compare only on the same machine;
    reports show this line beside them."""
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [cpu_model()]
    clock = cpu_clock_ghz()
    if clock is not None:
        parts.append(f"{clock:.1f} GHz")
    parts.append(f"{cpus} CPUs")
    if device.type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
    return ", ".join(parts)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """``count`` torch CPU threads inside (the study's runs train on one), the previous count
    after, also when the body raises."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def set_flush_denormals(enabled: bool) -> bool:
    """Flush subnormal floats to zero on the CPU (``enabled``) or keep them; True if it holds.

    ``torch.set_flush_denormal`` sets the calling thread's floating-point control (threads it
    starts later inherit it). A CPU without the SSE3 control refuses: then a warning says so
    and training goes on with subnormals.
    """
    done = torch.set_flush_denormal(enabled)
    if enabled and not done:
        warnings.warn(
            "flush_denormals=true: this CPU cannot flush subnormal floats to zero; "
            "training keeps them (results unchanged, only slower)",
            RuntimeWarning,
            stacklevel=2,
        )
    return done
