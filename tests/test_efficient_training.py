"""Training with every efficient-critic option on (categorical HL-Gauss critic, BRC reward
normalisation, BroNet critic, LayerNorm actor, task encoder, orthogonal init, the reference
MT-SAC options, two updates per env step, PCGrad), and again with every BRC detail that is an
option (c51 target, twin-critic mean, actor after the critic step, AdamW, one temperature, BRC's
task embedding, BroNet actor): same seed gives the same run, an interrupted run resumes bit for
bit, and the logs hold the interference matrices and reward scales."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sac_batches import assert_same_state
from test_training import TINY, config_for, crash_after_first_checkpoint, evaluations_without_time

from mtrl_align.cli import main
from mtrl_align.sweep.archive import read_tb_scalars
from mtrl_align.training import RunFiles, train
from mtrl_align.training import loop as loop_module

# test_training's tiny run (2 tasks, 20-step episodes, tiny nets, PCGrad) with everything on
EVERYTHING = copy.deepcopy(TINY)
EVERYTHING["seed"] = 5
EVERYTHING["agent"] = {
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
}
EVERYTHING["train"].update(total_env_steps=80, updates_per_env_step=2)
EVERYTHING["eval"]["every_env_steps"] = 40
# and with every BRC detail that is an option (the efficient-brc ablation arm)
BRC = copy.deepcopy(EVERYTHING)
BRC["agent"].update(
    critic_loss="c51",
    q_reduction="mean",
    actor_after_critic_step=True,
    weight_decay=1e-4,
    shared_temperature=True,
    alpha_beta1=0.5,
    shared_task_embedding=True,
    task_embedding_dim=8,
    actor_trunk="bronet",
    actor_hidden=[16],
    log_std_bound="tanh",
    log_std_min=-10.0,
    grad_clip=None,
)


@pytest.fixture(scope="module", params=["efficient", "brc"])
def config_path(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / f"{request.param}.yaml"
    path.write_text(yaml.safe_dump(EVERYTHING if request.param == "efficient" else BRC))
    return path


@pytest.fixture(scope="module")
def reference_run(config_path, tmp_path_factory) -> Path:
    return train(config_for(config_path, tmp_path_factory.mktemp("runs") / "reference"))


def final_state(run_dir: Path) -> dict:
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)
    return {"agent": state["agent"], "reward_normalizer": state["reward_normalizer"]}


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
    again = train(config_for(config_path, tmp_path / "again"))
    assert evaluations_without_time(again) == evaluations_without_time(reference_run)
    assert_same_state(final_state(again), final_state(reference_run))


def test_interrupted_run_resumes_bit_for_bit(reference_run, config_path, tmp_path, monkeypatch):
    run_dir = tmp_path / "interrupted"
    crash_after_first_checkpoint(config_for(config_path, run_dir), monkeypatch)
    assert RunFiles(run_dir).read_status()["env_steps"] == 40
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert evaluations_without_time(run_dir) == evaluations_without_time(reference_run)
    assert_same_state(final_state(run_dir), final_state(reference_run))


def test_every_update_sees_each_tasks_rewards_times_its_scale(config_path, tmp_path):
    config = config_for(config_path, tmp_path / "scaled")
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
