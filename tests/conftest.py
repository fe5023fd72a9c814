"""Fixtures shared by several test files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mtrl_align.device import torch_threads


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run the test with one torch CPU thread and restore the previous count afterwards."""
    with torch_threads(1):
        yield


REPO_RUNS = Path(__file__).resolve().parents[1] / "runs"


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


@pytest.fixture(autouse=True, scope="session")
def tests_write_only_to_temporary_directories() -> Iterator[None]:
    """Fail the session if a test left a new entry in the repository's ``runs/`` folder (every
    test must write under ``tmp_path``)."""
    before = _entries(REPO_RUNS)
    yield
    new = sorted(_entries(REPO_RUNS) - before)
    if new:
        pytest.fail(f"tests wrote into {REPO_RUNS}: {new}; write under tmp_path instead")
