"""Training runs end to end on a tiny config (2 Meta-World tasks, 20-step episodes, tiny nets):
run directory contract, determinism, exact resume, NaN stop, CLI."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from envs.replay_buffer import MultiTaskReplayBuffer
from mtrl_align.cli import main
from mtrl_align.config import load_train_config
from mtrl_align.training import NonFiniteTrainingError, RunFiles, train
from mtrl_align.training import loop as loop_module

TINY = {
    "seed": 3,
    "device": "cpu",
    "num_threads": 1,
    "env": {"benchmark": "MT10", "tasks": ["reach-v3", "drawer-close-v3"], "max_episode_steps": 20},
    "agent": {"variant": "multi-head", "actor_hidden": [16, 16], "critic_hidden": [16, 16]},
    "aggregation": {"method": "pcgrad"},
    "train": {
        "total_env_steps": 100,
        "warmup_env_steps": 20,
        "batch_size_per_task": 8,
        "buffer_capacity": 1000,
        "checkpoint_every_env_steps": 40,
        "log_every_updates": 10,
        "progress_bar": False,
    },
    "eval": {"every_env_steps": 60, "episodes_per_task": 1},
}


@pytest.fixture(scope="module")
def tiny_config_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def config_for(path: Path, run_dir: Path, *overrides: str):
    return load_train_config(path, [f"run_dir={run_dir}", *overrides])


def evaluations_without_time(run_dir: Path) -> list[dict]:
    records = RunFiles(run_dir).read_evaluations()
    for record in records:
        record.pop("wall_time_s")
        record.pop("cpu_time_s")
    return records


def final_agent(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)["agent"]


def assert_same_agent(first: dict, second: dict) -> None:
    for network in ("actor", "critic", "critic_target"):
        for key, value in first[network].items():
            assert torch.equal(value, second[network][key]), (network, key)
    assert torch.equal(first["log_alpha"], second["log_alpha"])
    assert first["num_updates"] == second["num_updates"]


@pytest.fixture(scope="module")
def sampled_sizes() -> dict[Path, list[int]]:
    """Per run directory of the module's runs: transitions per task the replay buffer held at
    each ``sample`` call, in order (filled by the run fixtures)."""
    return {}


@contextlib.contextmanager
def recording_sample_sizes() -> Iterator[list[int]]:
    """Record ``size_per_task`` of the replay buffer at every ``sample`` call."""
    sizes: list[int] = []
    original = MultiTaskReplayBuffer.sample

    def sample(self, batch_size_per_task):
        sizes.append(self.size_per_task)
        return original(self, batch_size_per_task)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MultiTaskReplayBuffer, "sample", sample)
        yield sizes


@pytest.fixture(scope="module")
def reference_run(tiny_config_path, tmp_path_factory, sampled_sizes) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    with recording_sample_sizes() as sizes:
        run = train(config_for(tiny_config_path, run_dir))
    sampled_sizes[run] = sizes
    return run


def test_run_directory_follows_the_contract(reference_run):
    files = RunFiles(reference_run)
    status = json.loads(files.status.read_text())
    assert status == {"state": "finished", "env_steps": 100, "error": None}
    saved = yaml.safe_load(files.config.read_text())
    assert saved["aggregation"]["method"] == "pcgrad" and saved["run_dir"] == str(reference_run)
    records = files.read_evaluations()
    assert [r["env_steps"] for r in records] == [60, 100]
    for record in records:
        assert set(record) >= {
            "env_steps", "total_env_steps", "updates", "mean_success", "success",
            "mean_return", "returns", "episodes_per_task", "wall_time_s", "cpu_time_s",
            "machine",
        }  # fmt: skip
        assert record["total_env_steps"] == 2 * record["env_steps"]
        assert set(record["success"]) == {"reach-v3", "drawer-close-v3"}
        rates = list(record["success"].values())
        assert record["mean_success"] == pytest.approx(sum(rates) / len(rates))
    assert records[-1]["updates"] == 100 - 20
    assert records[0]["machine"] == expected_machine()
    assert files.latest.is_file() and files.best.is_file()
    assert any(files.tensorboard.iterdir())


def expected_machine() -> str:
    """The CPU model line of /proc/cpuinfo, the clock (cpufreq's maximum, else the first
    ``cpu MHz``) and the CPUs this process may use, read here."""
    import os
    import re

    info = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    if model is None:
        pytest.skip("no 'model name' in /proc/cpuinfo")
    parts = [" ".join(model.group(1).split())]
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    mhz = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", info, re.MULTILINE)
    if max_freq.is_file():
        parts.append(f"{int(max_freq.read_text()) / 1e6:.1f} GHz")
    elif mhz is not None:
        parts.append(f"{float(mhz.group(1)) / 1000:.1f} GHz")
    return ", ".join([*parts, f"{len(os.sched_getaffinity(0))} CPUs"])


def test_tensorboard_has_documented_keys(reference_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(RunFiles(reference_run).tensorboard))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in (
        "eval/mean_success",
        "eval/success/reach-v3",
        "losses/critic/reach-v3",
        "losses/actor/drawer-close-v3",
        "losses/alpha/reach-v3",
        "temperature/reach-v3",
        "aggregation/critic/kappa",
        "aggregation/actor/min_cos",
        "aggregation/critic/weight/reach-v3",
        "perf/env_steps_per_s",
        "train/episode_return/reach-v3",
    ):
        assert tag in tags, f"missing {tag}; have {sorted(tags)}"


def test_same_seed_gives_the_same_run(reference_run, tiny_config_path, tmp_path):
    again = train(config_for(tiny_config_path, tmp_path / "again"))
    assert evaluations_without_time(again) == evaluations_without_time(reference_run)
    assert_same_agent(final_agent(again), final_agent(reference_run))


def test_run_length_and_log_interval_do_not_change_the_steps_before(
    reference_run, tiny_config_path, tmp_path
):
    """A shorter run with another logging interval is the longer run's beginning: ablations
    read 100k runs at 50k as if they were 50k runs (scripts/ablate_mt10_cpu_efficient.sh)."""
    short = train(
        config_for(
            tiny_config_path,
            tmp_path / "short",
            "train.total_env_steps=60",
            "train.log_every_updates=7",
        )
    )
    (at_60,) = evaluations_without_time(short)
    long_at_60 = [e for e in evaluations_without_time(reference_run) if e["env_steps"] == 60]
    assert at_60["env_steps"] == 60 and long_at_60 == [at_60]


def crash_after_first_checkpoint(config, monkeypatch) -> None:
    """Train ``config`` until its first checkpoint is written, then crash."""
    original = loop_module.Trainer._save_latest

    def save_and_crash(self):
        original(self)
        raise RuntimeError("simulated crash")

    with monkeypatch.context() as patch:
        patch.setattr(loop_module.Trainer, "_save_latest", save_and_crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(config)


def test_interrupted_and_resumed_run_equals_uninterrupted(
    reference_run, tiny_config_path, tmp_path, monkeypatch
):
    run_dir = tmp_path / "interrupted"
    crash_after_first_checkpoint(config_for(tiny_config_path, run_dir), monkeypatch)
    status = RunFiles(run_dir).read_status()
    assert status["state"] == "failed" and "simulated crash" in status["error"]
    assert status["env_steps"] == 40
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert evaluations_without_time(run_dir) == evaluations_without_time(reference_run)
    assert_same_agent(final_agent(run_dir), final_agent(reference_run))
    assert RunFiles(run_dir).read_status()["state"] == "finished"


def cpu_times(run_dir: Path) -> list[float | None]:
    return [record["cpu_time_s"] for record in RunFiles(run_dir).read_evaluations()]


def test_cpu_time_counts_this_process_and_carries_over_a_resume(
    tiny_config_path, tmp_path, monkeypatch
):
    """cpu_time_s grows over a run, never exceeds the CPU time the process spent in train()
    (sync envs: no workers), and a resumed run adds its session to the checkpoint's count;
    a checkpoint from before cpu_time_s was recorded resumes with it unknown (null)."""
    import time

    run_dir = tmp_path / "fresh"
    start = time.process_time()
    train(config_for(tiny_config_path, run_dir))
    spent = time.process_time() - start
    first, last = cpu_times(run_dir)
    assert 0 < first < last <= spent

    resumed = tmp_path / "resumed"
    crash_after_first_checkpoint(config_for(tiny_config_path, resumed), monkeypatch)
    latest = RunFiles(resumed).latest
    state = torch.load(latest, weights_only=False)
    assert 0 < state["counters"]["cpu_time_s"] <= spent
    state["counters"]["cpu_time_s"] = 1000.0  # as if the first session had used 1000 s
    torch.save(state, latest)
    start = time.process_time()
    assert main(["train", "--resume", str(resumed)]) == 0
    spent = time.process_time() - start
    first, last = cpu_times(resumed)
    assert 1000.0 < first < last <= 1000.0 + spent

    old = tmp_path / "old"
    crash_after_first_checkpoint(config_for(tiny_config_path, old), monkeypatch)
    state = torch.load(RunFiles(old).latest, weights_only=False)
    del state["counters"]["cpu_time_s"]
    torch.save(state, RunFiles(old).latest)
    assert main(["train", "--resume", str(old)]) == 0
    assert cpu_times(old) == [None, None]
    assert evaluations_without_time(old) == evaluations_without_time(run_dir)


def test_flush_denormals_holds_during_updates_and_may_change_on_resume(
    tiny_config_path, tmp_path, monkeypatch
):
    """Updates run with subnormals kept (default) or flushed (``flush_denormals=true``), and a
    resumed session may switch: the checkpoint check lets the session setting change."""
    from agents.sac import MultiTaskSAC

    def keeps_subnormals() -> bool:
        return (torch.tensor([1e-39]) * 1.0).item() != 0.0

    seen: list[bool] = []
    original = MultiTaskSAC.update

    def spying_update(self, *args, **kwargs):
        seen.append(keeps_subnormals())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MultiTaskSAC, "update", spying_update)
    run_dir = tmp_path / "switched"
    try:
        torch.set_flush_denormal(True)  # the config, not the caller's state, decides
        crash_after_first_checkpoint(config_for(tiny_config_path, run_dir), monkeypatch)
        first_session = len(seen)
        assert first_session > 0 and all(seen)
        if not torch.set_flush_denormal(False):
            pytest.skip("this CPU cannot flush subnormals")
        assert main(["train", "--resume", str(run_dir), "flush_denormals=true"]) == 0
        assert len(seen) > first_session and not any(seen[first_session:])
    finally:
        torch.set_flush_denormal(False)
    assert RunFiles(run_dir).read_status()["state"] == "finished"


@pytest.mark.parametrize(
    ("overrides", "stop_step"),
    [
        ((), 20 + 3),
        # sync-free: counters are read at logged updates, the 10th (log_every_updates=10)
        (("train.sync_free=on", "aggregation.method=uniform"), 20 + 10),
    ],
    ids=["per-update", "sync-free"],
)
def test_nonfinite_losses_stop_the_run_with_a_clear_message(
    tiny_config_path, tmp_path, monkeypatch, overrides, stop_step
):
    from envs.replay_buffer import MultiTaskReplayBuffer

    original = MultiTaskReplayBuffer.sample

    def poisoned(self, batch_size):
        batch = original(self, batch_size)
        return batch._replace(rewards=torch.full_like(batch.rewards, float("nan")))

    monkeypatch.setattr(MultiTaskReplayBuffer, "sample", poisoned)
    run_dir = tmp_path / "nan"
    config = config_for(tiny_config_path, run_dir, "train.max_consecutive_nonfinite=3", *overrides)
    with pytest.raises(NonFiniteTrainingError, match=r"\d+ updates in a row.*critic_loss"):
        train(config)
    status = RunFiles(run_dir).read_status()
    assert status["state"] == "failed" and "NaN/inf" in status["error"]
    assert status["env_steps"] == stop_step


def test_sync_free_training_is_deterministic_and_logs(tiny_config_path, tmp_path):
    overrides = ("train.sync_free=on", "aggregation.method=uniform")
    first, second = tmp_path / "a", tmp_path / "b"
    train(config_for(tiny_config_path, first, *overrides))
    train(config_for(tiny_config_path, second, *overrides))
    assert evaluations_without_time(first) == evaluations_without_time(second)
    assert_same_agent(final_agent(first), final_agent(second))
    agent = final_agent(first)
    assert agent["num_updates"] == agent["update_calls"] == 100 - 20
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(RunFiles(first).tensorboard))
    events.Reload()
    logged = events.Scalars("losses/critic/reach-v3")
    assert len(logged) == (100 - 20) // 10  # every 10th update, read back only then
    assert events.Scalars("perf/nonfinite_skips")[-1].value == 0.0


def test_corrupt_or_mismatched_checkpoint_is_a_clear_error(reference_run, tmp_path):
    from mtrl_align.checkpointing import CheckpointError

    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)
    config = load_train_config(copy / "config.yaml")
    with pytest.raises(CheckpointError, match="aggregation.method is 'pcgrad' there"):
        train(load_train_config(copy / "config.yaml", ["aggregation.method=uniform"]), copy)
    with pytest.raises(CheckpointError, match="tasks"):
        train(load_train_config(copy / "config.yaml", ["env.tasks=[reach-v3]"]), copy)
    (copy / "checkpoints" / "latest.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        train(config, copy)
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        train(config)


def test_cli_errors_and_evaluate(reference_run, tiny_config_path, tmp_path, capsys):
    assert main(["train", str(tiny_config_path), "train.total_env_step=5"]) == 2
    assert "did you mean 'train.total_env_steps'" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    out_json = tmp_path / "eval.json"
    code = main(
        [
            "evaluate",
            str(reference_run),
            "--episodes",
            "1",
            "--checkpoint",
            "best",
            "--json",
            str(out_json),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "reach-v3" in printed and "mean" in printed
    result = json.loads(out_json.read_text())
    assert result["episodes_per_task"] == 1 and set(result["success_rate"]) == {
        "reach-v3",
        "drawer-close-v3",
    }


def test_buffer_capacity_is_the_total_over_tasks(reference_run):
    """train.buffer_capacity counts transitions of all tasks together (config docstring)."""
    checkpoint = torch.load(RunFiles(reference_run).latest, weights_only=False)
    buffer = checkpoint["buffer"]
    saved = yaml.safe_load(RunFiles(reference_run).config.read_text())
    num_tasks = len(saved["env"]["tasks"])
    assert buffer["num_tasks"] == num_tasks
    assert num_tasks * buffer["capacity_per_task"] == saved["train"]["buffer_capacity"]


OVERLAP = ("env.vector_strategy=async", "env.num_workers=1", "train.overlap_env_steps=true")


@pytest.fixture(scope="module")
def overlap_run(tiny_config_path, tmp_path_factory, sampled_sizes) -> Path:
    run_dir = tmp_path_factory.mktemp("overlap") / "run"
    with recording_sample_sizes() as sizes:
        run = train(config_for(tiny_config_path, run_dir, *OVERLAP))
    sampled_sizes[run] = sizes
    return run


def test_overlapped_env_steps_are_deterministic_and_resume_exactly(
    overlap_run, tiny_config_path, tmp_path, monkeypatch
):
    again = train(config_for(tiny_config_path, tmp_path / "again", *OVERLAP))
    assert evaluations_without_time(again) == evaluations_without_time(overlap_run)
    assert_same_agent(final_agent(again), final_agent(overlap_run))
    run_dir = tmp_path / "interrupted"
    original = loop_module.Trainer._save_latest

    def crash_after_first_checkpoint(self):
        original(self)
        raise RuntimeError("simulated crash")

    with monkeypatch.context() as patch:
        patch.setattr(loop_module.Trainer, "_save_latest", crash_after_first_checkpoint)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(config_for(tiny_config_path, run_dir, *OVERLAP))
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert_same_agent(final_agent(run_dir), final_agent(overlap_run))


def test_overlap_samples_the_buffer_one_transition_behind(
    overlap_run, reference_run, sampled_sizes
):
    """The update after env step k samples a buffer of k transitions per task, or of k - 1
    with overlap (transition k arrives one step later), at every update of the run."""
    warmup, total = TINY["train"]["warmup_env_steps"], TINY["train"]["total_env_steps"]
    steps_with_updates = list(range(warmup + 1, total + 1))  # one update per env step
    assert sampled_sizes[reference_run] == steps_with_updates
    assert sampled_sizes[overlap_run] == [k - 1 for k in steps_with_updates]
    overlap, exact = final_agent(overlap_run), final_agent(reference_run)
    assert overlap["num_updates"] == exact["num_updates"] == len(steps_with_updates)
    assert any(not torch.equal(overlap["critic"][k], exact["critic"][k]) for k in exact["critic"])


def test_overlap_needs_worker_processes(tiny_config_path, tmp_path):
    from mtrl_align.config_io import ConfigError

    with pytest.raises(ConfigError, match="needs env.vector_strategy=async"):
        config_for(tiny_config_path, tmp_path, "train.overlap_env_steps=true")
