"""Keep freed CPU tensor memory inside the process (glibc ``malloc`` tuning).

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves blocks above a
dynamic threshold (128 KiB at start, raised to the largest block freed so far) with fresh
``mmap`` pages and returns them to the OS on ``free``; every update then page-faults its
activations and per-task gradients in again (an MT10 update allocates ~2-7 MB blocks dozens of
times). Fixing the mmap threshold at 32 MiB and the trim threshold at 1 GiB keeps those blocks
in the heap for reuse: measured on the benchmark machine (one thread), a full-size MT10 SAC
update took 188 ms instead of 204 ms with ``uniform`` and 225 ms instead of 269 ms with
``aligned-mtl``. The price is that freed memory stays reserved by the process (its peak heap).

:func:`keep_freed_memory` is called by the trainers and the benchmark; set the environment
variable ``MTRL_ALIGN_MALLOC_TUNING=0`` to leave ``malloc`` alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 2**20  # glibc's maximum on 64-bit systems
TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Apply the tuning; True if glibc accepted it (False on other platforms/C libraries,
    or when ``MTRL_ALIGN_MALLOC_TUNING=0``)."""
    if os.environ.get("MTRL_ALIGN_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith(
        "linux"
    ):
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
