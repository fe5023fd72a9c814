"""Run checkpoints: RNG capture, atomic writes, meta checks (no environments needed)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mtrl_align.checkpointing import CheckpointError
from mtrl_align.config import load_train_config
from mtrl_align.training.checkpoint import (
    capture_rng_states,
    load_run_checkpoint,
    restore_rng_states,
    run_meta,
    save_checkpoint,
)

TASKS = ["reach-v3", "push-v3"]


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_states_round_trip():
    states = capture_rng_states()
    first = [draws() for _ in range(3)]
    restore_rng_states(states)
    assert [draws() for _ in range(3)] == first


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = load_train_config(None)
    path = tmp_path / "latest.pt"
    save_checkpoint({"meta": run_meta(config, TASKS, "latest"), "value": 1}, path)

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"meta": run_meta(config, TASKS, "latest"), "value": 2}, path)
    monkeypatch.undo()
    assert load_run_checkpoint(path, config, TASKS)["value"] == 1
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_meta_checks_name_what_differs(tmp_path):
    config = load_train_config(None, ["aggregation.method=cagrad", "aggregation.options.c=0.4"])
    path = tmp_path / "best.pt"
    save_checkpoint({"meta": run_meta(config, TASKS, "best")}, path)
    assert load_run_checkpoint(path, config, TASKS)["meta"]["method"] == "cagrad"
    # session keys may change
    same = load_train_config(None, ["aggregation.method=cagrad", "aggregation.options.c=0.4",
                                    "device=cpu", "train.total_env_steps=9"])  # fmt: skip
    load_run_checkpoint(path, same, TASKS)
    with pytest.raises(CheckpointError, match="'best' checkpoint, not 'latest'"):
        load_run_checkpoint(path, config, TASKS, kind="latest")
    with pytest.raises(CheckpointError, match=r"trained on tasks \['reach-v3', 'push-v3'\]"):
        load_run_checkpoint(path, config, ["reach-v3"])
    other = load_train_config(None, ["aggregation.method=cagrad", "aggregation.options.c=0.9",
                                     "agent.gamma=0.9"])  # fmt: skip
    with pytest.raises(CheckpointError, match=r"agent.gamma is 0.99 there, 0.9 here.*options"):
        load_run_checkpoint(path, other, TASKS)


def test_foreign_or_missing_files_are_clear_errors(tmp_path):
    config = load_train_config(None)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run_checkpoint(tmp_path / "none.pt", config, TASKS)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="format"):
        load_run_checkpoint(tmp_path / "foreign.pt", config, TASKS)
    (tmp_path / "garbage.pt").write_bytes(b"\x00\x01 not torch")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_run_checkpoint(tmp_path / "garbage.pt", config, TASKS)


def test_checkpoint_from_before_a_config_key_was_added_still_resumes(tmp_path):
    """A key added to the schema later (saved config lacks it, fingerprint differs) counts as
    its default; a real difference is still refused."""
    config = load_train_config(None)
    meta = run_meta(config, TASKS, "latest")
    del meta["config"]["train"]["warmup_env_steps"]  # as if the key did not exist back then
    meta["fingerprint"] = "written-by-older-code"
    path = tmp_path / "latest.pt"
    save_checkpoint({"meta": meta, "value": 3}, path)
    assert load_run_checkpoint(path, config, TASKS)["value"] == 3
    changed = load_train_config(None, ["train.warmup_env_steps=7"])
    with pytest.raises(CheckpointError, match="train.warmup_env_steps is 1500 there, 7 here"):
        load_run_checkpoint(path, changed, TASKS)
