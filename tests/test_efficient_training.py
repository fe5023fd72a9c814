"""Training with every efficient-critic option on (categorical HL-Gauss critic, BRC reward
normalisation, BroNet critic, LayerNorm actor, task encoder, orthogonal init, the reference
MT-SAC options, two updates per env step, PCGrad): same seed gives the same run, an interrupted
run resumes bit for bit, and the logs hold the interference matrices and reward scales."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sac_batches import assert_same_state

from mtrl_align.cli import main
from mtrl_align.config import load_train_config
from mtrl_align.sweep.archive import read_tb_scalars
from mtrl_align.training import RunFiles, train
from mtrl_align.training import loop as loop_module

TASKS = ["reach-v3", "drawer-close-v3"]
EVERYTHING = {
    "seed": 5,
    "device": "cpu",
    "num_threads": 1,
    "env": {"benchmark": "MT10", "tasks": TASKS, "max_episode_steps": 20},
    "agent": {
        "variant": "task-encoder",
        "actor_hidden": [16, 16],
        "critic_hidden": [16],
        "critic_trunk": "bronet",
        "critic_blocks": 1,
        "layer_norm": True,
        "critic_loss": "hl-gauss",
        "num_bins": 11,
        "reward_normalization": True,
        "init": "orthogonal",
        "grad_clip": 1.0,
        "log_std_bound": "clip",
        "adam_eps": 1e-5,
    },
    "aggregation": {"method": "pcgrad"},
    "train": {
        "total_env_steps": 80,
        "warmup_env_steps": 20,
        "batch_size_per_task": 8,
        "buffer_capacity": 1000,
        "updates_per_env_step": 2,
        "checkpoint_every_env_steps": 40,
        "log_every_updates": 10,
        "progress_bar": False,
    },
    "eval": {"every_env_steps": 40, "episodes_per_task": 1},
}


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "everything.yaml"
    path.write_text(yaml.safe_dump(EVERYTHING))
    return path


def run_config(path: Path, run_dir: Path):
    return load_train_config(path, [f"run_dir={run_dir}"])


@pytest.fixture(scope="module")
def reference_run(config_path, tmp_path_factory) -> Path:
    return train(run_config(config_path, tmp_path_factory.mktemp("runs") / "reference"))


def final_state(run_dir: Path) -> dict:
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)
    return {"agent": state["agent"], "reward_normalizer": state["reward_normalizer"]}


def evaluations(run_dir: Path) -> list[dict]:
    records = RunFiles(run_dir).read_evaluations()
    for record in records:
        record.pop("wall_time_s")
    return records


def test_logs_hold_interference_matrices_and_reward_scales(reference_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(RunFiles(reference_run).tensorboard), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {"interference/critic", "interference/actor"}
    image = events.Images("interference/critic")[-1]
    assert image.width > 100 and image.height > 100
    tags = set(events.Tags()["scalars"])
    for tag in (
        "interference/critic/0_1",
        "interference/actor/0_1",
        "aggregation/critic/mean_cos",
        "reward_norm/scale/reach-v3",
        "reward_norm/return_bound/drawer-close-v3",
    ):
        assert tag in tags, f"missing {tag}"
    # 60 learning steps x 2 updates, logged every 10 updates
    assert len(events.Scalars("interference/critic/0_1")) == 12
    for event in events.Scalars("interference/critic/0_1"):
        assert -1.0 <= event.value <= 1.0
    archived = read_tb_scalars(RunFiles(reference_run).tensorboard)
    assert sum("interference/critic/0_1" in row for row in archived) == 12
    normalizer = final_state(reference_run)["reward_normalizer"]
    assert np.isfinite(normalizer["max_return"]).all()
    assert RunFiles(reference_run).read_evaluations()[-1]["updates"] == 2 * (80 - 20)


def test_same_seed_gives_the_same_run(reference_run, config_path, tmp_path):
    again = train(run_config(config_path, tmp_path / "again"))
    assert evaluations(again) == evaluations(reference_run)
    assert_same_state(final_state(again), final_state(reference_run))


def test_interrupted_run_resumes_bit_for_bit(reference_run, config_path, tmp_path, monkeypatch):
    run_dir = tmp_path / "interrupted"
    original = loop_module.Trainer._save_latest

    def crash_after_first_checkpoint(self):
        original(self)
        raise RuntimeError("simulated crash")

    with monkeypatch.context() as patch:
        patch.setattr(loop_module.Trainer, "_save_latest", crash_after_first_checkpoint)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(run_config(config_path, run_dir))
    assert RunFiles(run_dir).read_status()["env_steps"] == 40
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert evaluations(run_dir) == evaluations(reference_run)
    assert_same_state(final_state(run_dir), final_state(reference_run))


def test_every_update_sees_each_tasks_rewards_times_its_scale(config_path, tmp_path):
    config = run_config(config_path, tmp_path / "scaled")
    trainer = loop_module.Trainer(config)
    raw: list[torch.Tensor] = []
    checked: list[bool] = []
    sample, update = trainer.buffer.sample, trainer.agent.update

    def recording_sample(batch_size):
        batch = sample(batch_size)
        raw.append(batch.rewards.clone())
        return batch

    def checking_update(batch, collect_stats=False):
        scales = trainer.reward_normalizer.scales(trainer.agent.temperatures())
        assert bool((scales < 1).all())  # Meta-World returns exceed v_max = 10
        torch.testing.assert_close(batch.rewards, raw[-1] * scales[:, None], rtol=0, atol=0)
        checked.append(True)
        return update(batch, collect_stats)

    trainer.buffer.sample, trainer.agent.update = recording_sample, checking_update
    try:
        for _ in range(24):  # warm-up 20, then 2 updates per step
            trainer._step()
    finally:
        trainer.close()
    assert len(checked) == 2 * 4
