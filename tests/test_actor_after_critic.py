"""``agent.actor_after_critic_step``: the update order of metaworld-algorithms' MTSAC and BRC.

The critic steps first and the actor's loss sees the stepped critic. Oracles: the hand-written
SAC formulas of test_sac_core.py, evaluated with the critic read back after the update (the
actor's step does not touch it), and the per-update (host-checked) agent for the sync-free
path.
"""

from __future__ import annotations

import copy

import pytest
import torch
from sac_batches import T, assert_same_state, learning_state, make_batch
from test_sac_core import (
    LOG_ALPHA,
    MLP_VARIANTS,
    TARGET_ENTROPY,
    GradientRecorder,
    assert_grads_close,
    frozen,
    hand_actor_losses,
    hand_critic_losses,
    hand_targets,
    make_agent,
    mixed_dones_batch,
    replayed_noise,
    separate_target_critic,
)
from test_sync_free_update import assert_close_state

from agents.gradients import NetworkStep
from mtrl_align.config import ConfigError, load_train_config


@pytest.mark.parametrize("variant", MLP_VARIANTS)
@pytest.mark.parametrize("method", ["uniform", "aligned-mtl"])
def test_the_actor_loss_sees_the_stepped_critic(variant, method):
    agent = make_agent(variant, method, actor_after_critic_step=True, grad_clip=0.5)
    separate_target_critic(agent)
    batch = mixed_dones_batch(2)
    target_noise, actor_noise = replayed_noise(agent)
    actor, critic = copy.deepcopy(agent.actor), copy.deepcopy(agent.critic)
    critic_target, log_alpha = frozen(agent.critic_target), agent.log_alpha.detach().clone()
    recorder = GradientRecorder(agent)
    result = agent.update(batch)
    assert not result.skipped and agent.num_updates == 1

    # the critic's step is the usual one
    targets = hand_targets(actor, critic_target, batch, target_noise, log_alpha)
    critic_losses = hand_critic_losses(critic, batch, targets)
    torch.testing.assert_close(result.metrics["critic_loss"], critic_losses.detach())

    # the actor's loss and gradient: with the critic after its step, not before
    stepped = frozen(agent.critic)
    losses, mean_log_prob = hand_actor_losses(actor, stepped, batch, actor_noise, log_alpha)
    torch.testing.assert_close(result.metrics["actor_loss"], losses.detach(), rtol=1e-5, atol=1e-6)
    norm = agent.clip_norms()["actor"]
    expected = list(torch.autograd.grad(losses.sum(), list(actor.parameters())))
    if method == "uniform":
        total = torch.linalg.vector_norm(torch.stack([g.norm() for g in expected]))
        expected = [g * min(1.0, norm / (float(total) + 1e-6)) for g in expected]
        assert_grads_close(recorder.grads["actor"], expected, "actor grad")
    before, _ = hand_actor_losses(actor, frozen(critic), batch, actor_noise, log_alpha)
    assert (before - losses).abs().max() > 1e-4  # the critic's step does show in the loss

    # temperatures from the same actor pass
    (alpha_grad,) = recorder.grads["alpha"]
    torch.testing.assert_close(alpha_grad, -(mean_log_prob + TARGET_ENTROPY), rtol=1e-5, atol=1e-6)


def test_the_default_order_is_unchanged_and_differs_from_after_critic():
    batches = [make_batch(seed) for seed in range(3)]
    default, after = make_agent(), make_agent(actor_after_critic_step=True)
    for batch in batches:
        default.update(batch)
        after.update(batch)
    # same critic step on the first update only; the actors differ from the first update on
    assert not torch.allclose(
        torch.cat([p.flatten() for p in default.actor.parameters()]),
        torch.cat([p.flatten() for p in after.actor.parameters()]),
    )
    again = make_agent(actor_after_critic_step=True)
    for batch in batches:
        again.update(batch)
    assert_same_state(after.state_dict(), again.state_dict())  # deterministic


def _nonfinite_actor(agent, monkeypatch, unchecked: bool) -> None:
    """Make every actor step report NaN losses (the critic's stays finite)."""
    gradients = agent.gradients["actor"]
    name = "compute_unchecked" if unchecked else "compute"
    original = getattr(gradients, name)

    def poisoned(*args, **kwargs) -> NetworkStep:
        step = original(*args, **kwargs)
        step.losses = step.losses * float("nan")
        step.finite = False
        return step

    monkeypatch.setattr(gradients, name, poisoned)


@pytest.mark.parametrize("sync_free", [False, True])
def test_a_nonfinite_actor_step_keeps_the_critic_step_and_skips_the_rest(sync_free, monkeypatch):
    agent = make_agent(actor_after_critic_step=True, sync_free=sync_free)
    agent.update(make_batch(0))
    before = learning_state(agent)
    _nonfinite_actor(agent, monkeypatch, unchecked=sync_free)
    result = agent.update(make_batch(1))
    assert bool(result.skipped)
    after = learning_state(agent)
    for key in ("actor", "actor_optimizer", "log_alpha", "alpha_optimizer"):
        assert_same_state(before[key], after[key], key)
    for key in ("critic", "critic_target"):
        with pytest.raises(AssertionError):
            assert_same_state(before[key], after[key], key)
    assert (agent.nonfinite_skips, agent.consecutive_nonfinite, agent.num_updates) == (1, 1, 2)


@pytest.mark.parametrize("sync_free", [False, True])
def test_a_nonfinite_critic_step_changes_nothing(sync_free):
    agent = make_agent(actor_after_critic_step=True, sync_free=sync_free)
    agent.update(make_batch(0))
    before = learning_state(agent)
    batch = make_batch(1)
    poisoned = batch._replace(
        rewards=batch.rewards.clone().index_fill_(0, torch.tensor([1]), float("inf"))
    )
    assert bool(agent.update(poisoned).skipped)
    assert_same_state(before, learning_state(agent))
    assert (agent.nonfinite_skips, agent.num_updates) == (1, 1)


@pytest.mark.parametrize("variant", ["shared", "multi-head"])
def test_the_sync_free_path_matches_the_checked_one(variant):
    checked = make_agent(variant, actor_after_critic_step=True, grad_clip=1.0)
    sync_free = make_agent(variant, actor_after_critic_step=True, grad_clip=1.0, sync_free=True)
    for seed in range(3):
        checked.update(make_batch(seed))
        sync_free.update(make_batch(seed))
    assert_close_state(checked.state_dict(), sync_free.state_dict())


def test_paco_masks_need_the_simultaneous_order():
    with pytest.raises(ConfigError, match="actor_after_critic_step=true needs agent.extreme"):
        load_train_config(None, ["agent.variant=paco", "agent.actor_after_critic_step=true"])
    config = load_train_config(
        None,
        ["agent.variant=paco", "agent.extreme_tasks=off", "agent.actor_after_critic_step=true"],
    )
    assert config.agent.actor_after_critic_step
    assert T == len(LOG_ALPHA)
