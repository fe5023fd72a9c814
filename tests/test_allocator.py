"""glibc malloc tuning: applied where glibc exists, skipped on request, never breaks tensors."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import pytest
import torch

from mtrl_align.allocator import keep_freed_memory


def _has_glibc_mallopt() -> bool:
    try:
        return sys.platform.startswith("linux") and hasattr(
            ctypes.CDLL(ctypes.util.find_library("c")), "mallopt"
        )
    except OSError:
        return False


def test_opt_out_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv("MTRL_ALIGN_MALLOC_TUNING", "0")
    assert keep_freed_memory() is False


@pytest.mark.skipif(not _has_glibc_mallopt(), reason="needs glibc's mallopt")
def test_tuning_is_accepted_and_large_tensors_still_work(monkeypatch):
    monkeypatch.delenv("MTRL_ALIGN_MALLOC_TUNING", raising=False)
    assert keep_freed_memory() is True
    for _ in range(3):  # allocate and free blocks around the 32 MiB threshold
        a = torch.ones(10, 800_000)  # 32 MB
        b = torch.full((2, 1_000_000), 2.0)
        assert float(a.sum()) == 8_000_000 and float(b.sum()) == 4_000_000
        del a, b
