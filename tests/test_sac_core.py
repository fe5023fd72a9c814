"""The SAC core against formulas written out here: Bellman targets, critic / actor / temperature
losses and their gradients, per-task separation, gradient clipping and the Polyak schedule.

Oracles: the soft Bellman target, the twin-critic TD loss, the actor loss and the temperature
loss are written in this file from their textbook definitions (Haarnoja et al. 2018, with one
temperature per task); log pi comes from ``torch.distributions`` (Normal + TanhTransform);
clipping from ``torch.nn.utils.clip_grad_norm_``; Adam's first step from its closed form. The
networks' forward passes are used as given (the architectures are checked by hand in
test_architecture_forwards.py and test_agents.py). What the agent writes is read where the
optimisers see it: a step pre-hook records every ``.grad`` just before each optimiser steps.

The policy noise of an update is replayed from a copy of the agent's noise generator: the first
draw [T, B, A] is the next-state action noise of the Bellman target, the second the actor's.
Every test that relies on this also checks the update's reported losses against the hand
computation, so a different draw order fails loudly rather than silently.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from sac_batches import OBS, A, B, Batch, T, make_batch
from torch.distributions import Normal, TanhTransform

import agents.sac
from agents import MultiTaskSAC
from agents.losses import ActorBatch, CriticBatch
from envs.replay_buffer import MultiTaskReplayBuffer
from mtrl_align.config import AgentConfig, AggregationConfig

MLP_VARIANTS = ("shared", "task-encoder", "multi-head")
GAMMA = 0.9  # not the default 0.99, so a hard-coded discount fails
TARGET_ENTROPY = -0.7  # not the default -|A|
LOG_ALPHA = (math.log(0.5), math.log(0.05), math.log(2.0))  # a different temperature per task


def make_agent(variant: str = "shared", method: str = "uniform", **agent_kw: Any) -> MultiTaskSAC:
    settings = {
        "variant": variant,
        "actor_hidden": [16, 16],
        "critic_hidden": [16, 16],
        "gamma": GAMMA,
        "target_entropy": TARGET_ENTROPY,
        **agent_kw,
    }
    sync_free = settings.pop("sync_free", False)
    agent = MultiTaskSAC(
        AgentConfig(**settings),
        AggregationConfig(method=method),
        T,
        OBS,
        A,
        seed=0,
        sync_free=sync_free,
    )
    with torch.no_grad():
        agent.log_alpha.copy_(torch.tensor(LOG_ALPHA))
    return agent


def separate_target_critic(agent: MultiTaskSAC, seed: int = 5) -> None:
    """Move the target critics away from the online ones (a fresh agent starts with copies)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in agent.critic_target.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))


def mixed_dones_batch(seed: int = 0) -> Batch:
    """A batch whose every task has terminal and non-terminal transitions."""
    batch = make_batch(seed)
    dones = torch.zeros(T, B)
    dones[:, ::2] = 1.0
    return batch._replace(dones=dones)


def replayed_noise(agent: MultiTaskSAC) -> tuple[torch.Tensor, torch.Tensor]:
    """The (target, actor) policy noise [T, B, A] of the agent's next update."""
    g = torch.Generator()
    g.set_state(agent.noise_generator.get_state())
    return torch.randn(T, B, A, generator=g), torch.randn(T, B, A, generator=g)


def tanh_gaussian(mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor):
    """Action tanh(mean + std * noise) and log pi(a) [...] by torch.distributions (in float64:
    with std ~ 1e-4 the density of pre - mean loses digits in float32)."""
    mean, log_std, noise = mean.double(), log_std.double(), noise.double()
    pre = mean + log_std.exp() * noise
    action = torch.tanh(pre)
    log_prob = Normal(mean, log_std.exp()).log_prob(pre)
    log_prob = log_prob - TanhTransform().log_abs_det_jacobian(pre, action)
    return action.float(), log_prob.sum(-1).float()


def pair_reduced(q1: torch.Tensor, q2: torch.Tensor, reduction: str) -> torch.Tensor:
    """min_i Q_i (SAC) or (Q_1 + Q_2) / 2 (BRC's ensemble mean), elementwise."""
    if reduction == "min":
        return torch.where(q1 < q2, q1, q2)
    return torch.stack([q1, q2]).mean(0)


def hand_targets(
    actor,
    critic_target,
    batch: Batch,
    noise: torch.Tensor,
    log_alpha: torch.Tensor,
    reduction: str = "min",
) -> torch.Tensor:
    """y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha_t log pi(a'|s')), [T, B]
    (the mean of the Q'_i for ``reduction="mean"``)."""
    tasks = torch.arange(T)
    with torch.no_grad():
        mean, log_std, _ = actor(batch.next_obs, tasks)
        next_action, next_log_prob = tanh_gaussian(mean, log_std, noise)
        q1 = critic_target.q1(batch.next_obs, next_action, tasks)[0].squeeze(-1)
        q2 = critic_target.q2(batch.next_obs, next_action, tasks)[0].squeeze(-1)
        alpha = log_alpha.exp()[:, None]
        soft_value = pair_reduced(q1, q2, reduction) - alpha * next_log_prob
        return batch.rewards + GAMMA * (1.0 - batch.dones) * soft_value


def hand_critic_losses(critic, batch: Batch, targets: torch.Tensor) -> torch.Tensor:
    """Per task: sum over the two critics of the mean squared TD error, [T]."""
    tasks = torch.arange(T)
    q1 = critic.q1(batch.obs, batch.actions, tasks)[0].squeeze(-1)
    q2 = critic.q2(batch.obs, batch.actions, tasks)[0].squeeze(-1)
    return ((q1 - targets) ** 2).mean(-1) + ((q2 - targets) ** 2).mean(-1)


def hand_actor_losses(actor, critic, batch: Batch, noise, log_alpha, reduction: str = "min"):
    """Per task: mean over samples of alpha_t log pi(a|s) - min_i Q_i(s, a), a ~ pi (mean_i
    for ``reduction="mean"``); and the per-task mean log pi [T]. The critic is a constant here
    (only the actor is differentiated)."""
    tasks = torch.arange(T)
    mean, log_std, _ = actor(batch.obs, tasks)
    action, log_prob = tanh_gaussian(mean, log_std, noise)
    q1 = critic.q1(batch.obs, action, tasks)[0].squeeze(-1)
    q2 = critic.q2(batch.obs, action, tasks)[0].squeeze(-1)
    alpha = log_alpha.exp()[:, None]
    losses = (alpha * log_prob - pair_reduced(q1, q2, reduction)).mean(-1)
    return losses, log_prob.detach().mean(-1)


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(module).requires_grad_(False)


class GradientRecorder:
    """Records every parameter's ``.grad`` as each optimiser is about to step (on the sync-free
    path, as ``masked_adam_step`` is called with it)."""

    def __init__(self, agent: MultiTaskSAC, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
        self.grads: dict[str, list[torch.Tensor]] = {}
        names = {id(getattr(agent, f"{n}_optimizer")): n for n in ("critic", "actor", "alpha")}
        if agent.sync_free:
            assert monkeypatch is not None, "the sync-free path needs monkeypatch"
            original = agents.sac.masked_adam_step

            def recording_step(optimizer, ok):
                if id(optimizer) in names:  # another recorder's optimisers pass through
                    self._record(names[id(optimizer)], optimizer)
                return original(optimizer, ok)

            monkeypatch.setattr(agents.sac, "masked_adam_step", recording_step)
            return
        for name in names.values():
            optimizer = getattr(agent, f"{name}_optimizer")
            optimizer.register_step_pre_hook(
                lambda opt, args, kwargs, name=name: self._record(name, opt)
            )

    def _record(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.grads[name] = [p.grad.detach().clone() for p in params]


def assert_grads_close(actual: list, expected: list, what: str) -> None:
    assert len(actual) == len(expected), what
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6, msg=f"{what}[{i}]")


# -- 1. Bellman targets ------------------------------------------------------------------------
@pytest.mark.parametrize("variant", MLP_VARIANTS)
@pytest.mark.parametrize("reduction", ["min", "mean"])
def test_bellman_targets_follow_the_soft_bellman_equation(variant, reduction):
    agent = make_agent(variant, q_reduction=reduction)
    separate_target_critic(agent)
    batch = mixed_dones_batch()
    target_noise, _ = replayed_noise(agent)
    expected = hand_targets(
        agent.actor, agent.critic_target, batch, target_noise, torch.tensor(LOG_ALPHA), reduction
    )
    targets = agent._bellman_targets(batch, agent.log_alpha.detach().exp())
    torch.testing.assert_close(targets, expected, rtol=1e-5, atol=1e-6)
    # terminal transitions: exactly the reward; the others bootstrap
    done = batch.dones.bool()
    assert torch.equal(targets[done], batch.rewards[done])
    assert (targets[~done] - batch.rewards[~done]).abs().min() > 1e-4


def test_truncation_bootstraps_and_termination_does_not():
    """Through the replay buffer: only ``terminated`` becomes the done mask of the target."""
    buffer = MultiTaskReplayBuffer(T, OBS, A, capacity=T * 4, seed=0)
    g = torch.Generator().manual_seed(1)
    flags = [(False, False), (True, False), (False, True), (True, True)]  # (terminated, truncated)
    for terminated, truncated in flags:
        one_hot = torch.eye(T)
        buffer.add(
            torch.cat([torch.randn(T, OBS - T, generator=g), one_hot], -1).numpy(),
            (torch.rand(T, A, generator=g) * 2 - 1).numpy(),
            torch.randn(T, generator=g).numpy(),
            torch.cat([torch.randn(T, OBS - T, generator=g), one_hot], -1).numpy(),
            torch.full((T,), terminated).numpy(),
            torch.full((T,), truncated).numpy(),
        )
    # the four stored transitions of every task, in order, as a batch [T, 4, ...]
    batch = Batch(
        obs=buffer.obs.clone(),
        actions=buffer.actions.clone(),
        rewards=buffer.rewards.clone(),
        next_obs=buffer.next_obs.clone(),
        dones=buffer.terminated.float(),
    )
    sampled = buffer.sample(64)  # every sampled done equals its transition's terminated flag
    pairs = zip(batch.rewards.flatten(), batch.dones.flatten(), strict=True)
    terminated_of = {float(r): d for r, d in pairs}
    for r, d in zip(sampled.rewards.flatten(), sampled.dones.flatten(), strict=True):
        assert d == terminated_of[float(r)]
    agent = make_agent()
    separate_target_critic(agent)
    noise = torch.randn(T, 4, A, generator=g)
    targets = agent._soft_targets(
        batch.next_obs, batch.rewards, batch.dones, noise, agent.log_alpha.detach().exp()
    )
    bootstrap = targets - batch.rewards  # [T, 4]
    assert torch.equal(bootstrap[:, [1, 3]], torch.zeros(T, 2))  # terminated
    assert (bootstrap[:, [0, 2]].abs() > 1e-4).all()  # running and truncated-only
    expected = hand_targets(agent.actor, agent.critic_target, batch, noise, torch.tensor(LOG_ALPHA))
    torch.testing.assert_close(targets, expected, rtol=1e-5, atol=1e-6)


# -- 2. one update: critic, actor and temperature against the formulas ------------------------
@pytest.mark.parametrize("variant", MLP_VARIANTS)
@pytest.mark.parametrize("reduction", ["min", "mean"])
def test_update_losses_and_gradients_match_the_formulas(variant, reduction):
    agent = make_agent(variant, q_reduction=reduction)
    separate_target_critic(agent)
    batch = mixed_dones_batch(1)
    target_noise, actor_noise = replayed_noise(agent)
    actor, critic = copy.deepcopy(agent.actor), copy.deepcopy(agent.critic)
    critic_target, log_alpha = frozen(agent.critic_target), agent.log_alpha.detach().clone()
    recorder = GradientRecorder(agent)
    result = agent.update(batch)
    assert not result.skipped

    targets = hand_targets(actor, critic_target, batch, target_noise, log_alpha, reduction)
    critic_losses = hand_critic_losses(critic, batch, targets)
    torch.testing.assert_close(
        result.metrics["critic_loss"], critic_losses.detach(), rtol=1e-5, atol=1e-6
    )
    expected = torch.autograd.grad(critic_losses.sum(), list(critic.parameters()))
    assert_grads_close(recorder.grads["critic"], list(expected), "critic grad")

    # the actor sees the critic of before this update's step, as a constant
    actor_losses, mean_log_prob = hand_actor_losses(
        actor, frozen(critic), batch, actor_noise, log_alpha, reduction
    )
    torch.testing.assert_close(
        result.metrics["actor_loss"], actor_losses.detach(), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(result.metrics["log_prob"], mean_log_prob, rtol=1e-5, atol=1e-6)
    expected = torch.autograd.grad(actor_losses.sum(), list(actor.parameters()))
    assert_grads_close(recorder.grads["actor"], list(expected), "actor grad")

    # temperature: d/d log_alpha_t of -log_alpha_t (E log pi_t + target entropy), task by task
    (alpha_grad,) = recorder.grads["alpha"]
    torch.testing.assert_close(alpha_grad, -(mean_log_prob + TARGET_ENTROPY), rtol=1e-5, atol=1e-6)
    # and Adam's first step moves each log_alpha_t by lr * g_t / (|g_t| + eps)
    lr, eps = agent.config.alpha_lr, agent.config.adam_eps
    moved = log_alpha - lr * alpha_grad / (alpha_grad.abs() + eps)
    torch.testing.assert_close(agent.log_alpha.detach(), moved, rtol=0, atol=1e-7)


@pytest.mark.parametrize("variant", MLP_VARIANTS)
@pytest.mark.parametrize("network", ["critic", "actor"])
def test_task_t_loss_has_no_gradient_on_another_tasks_data(variant, network):
    """The all-task losses [T]: loss t reaches task t's inputs, never task s's."""
    agent = make_agent(variant)
    batch = make_batch(2)
    g = torch.Generator().manual_seed(3)
    if network == "critic":
        inputs = [batch.obs.clone(), batch.actions.clone(), torch.randn(T, B, generator=g)]
        for x in inputs:
            x.requires_grad_(True)
        params = dict(agent.critic.named_parameters())
        losses, _ = agent.losses.critic_loss(params, CriticBatch(*inputs), agent.task_index)
    else:
        inputs = [batch.obs.clone(), torch.randn(T, B, A, generator=g)]
        for x in inputs:
            x.requires_grad_(True)
        params = dict(agent.actor.named_parameters())
        critic = {n: p.detach() for n, p in agent.critic.named_parameters()}
        actor_batch = ActorBatch(*inputs, agent.log_alpha.detach().exp())
        losses, _ = agent.losses.actor_loss(params, actor_batch, agent.task_index, critic)
    assert losses.shape == (T,)
    for t in range(T):
        grads = torch.autograd.grad(losses[t], inputs, retain_graph=True)
        others = [s for s in range(T) if s != t]
        for i, grad in enumerate(grads):
            assert grad[t].abs().sum() > 0, f"input {i}: task {t}'s loss ignores its own data"
            assert torch.count_nonzero(grad[others]) == 0, f"input {i}: task {t} reads others"


@pytest.mark.parametrize("variant", MLP_VARIANTS)
def test_per_task_gradient_rows_ignore_the_other_tasks_batches(variant):
    """The fused per-task gradients (the aggregators' Jacobian): row t stays the same when every
    other task's batch changes."""
    agent = make_agent(variant, method="aligned-mtl")
    batch = mixed_dones_batch(3)
    other = mixed_dones_batch(4)
    targets = torch.randn(T, B, generator=torch.Generator().manual_seed(6))
    rule = agent.gradients["critic"]
    first, _, _ = rule.per_task_gradients(
        CriticBatch(batch.obs, batch.actions, targets), agent.task_index, ()
    )
    for t in range(T):
        keep = torch.zeros(T, 1, 1, dtype=torch.bool)
        keep[t] = True
        mixed = CriticBatch(
            torch.where(keep, batch.obs, other.obs),
            torch.where(keep, batch.actions, other.actions),
            torch.where(keep[:, :, 0], targets, targets + 1.0),
        )
        second, _, _ = rule.per_task_gradients(mixed, agent.task_index, ())
        for name in first:
            torch.testing.assert_close(second[name][t], first[name][t], rtol=1e-6, atol=1e-7)
        changed = [not torch.equal(second[n][(t + 1) % T], first[n][(t + 1) % T]) for n in first]
        assert any(changed), "the other tasks' rows should follow their new batches"


# -- 3. gradient clipping ----------------------------------------------------------------------
# K of `MultiTaskSAC._clip_gradients` / `clip_norms` (docstring, 2026-12-05): agent.grad_clip c
# is in units of the mean-reduced loss, so the critic is clipped at 2 T c and the actor at T c.
CLIP_FACTOR = {"critic": 2 * T, "actor": T}


@pytest.mark.parametrize("sync_free", [False, True])
@pytest.mark.parametrize("clip", [2e-3, 1e6])
def test_gradient_clipping_is_clip_grad_norm_of_each_network(clip, sync_free, monkeypatch):
    batch = mixed_dones_batch(5)
    clipped_agent = make_agent(grad_clip=clip, sync_free=sync_free)
    plain_agent = make_agent(sync_free=sync_free)
    clipped = GradientRecorder(clipped_agent, monkeypatch)
    plain = GradientRecorder(plain_agent, monkeypatch)
    clipped_agent.update(batch)
    plain_agent.update(batch)
    for network, factor in CLIP_FACTOR.items():
        holders = [torch.nn.Parameter(torch.zeros_like(g)) for g in plain.grads[network]]
        for holder, grad in zip(holders, plain.grads[network], strict=True):
            holder.grad = grad.clone()
        norm = torch.nn.utils.clip_grad_norm_(holders, clip * factor)
        if clip < 1:
            assert norm > 3 * clip * factor, f"{network}: the clip would not be active"
        expected = [h.grad for h in holders]
        assert_grads_close(clipped.grads[network], expected, f"{network} clipped grad")
    assert torch.equal(clipped.grads["alpha"][0], plain.grads["alpha"][0])  # never clipped


# -- 4. Polyak schedule ------------------------------------------------------------------------
@pytest.mark.parametrize("sync_free", [False, True])
def test_polyak_schedule_with_target_update_every(sync_free):
    tau, every = 0.25, 3
    agent = make_agent(tau=tau, target_update_every=every, sync_free=sync_free)
    separate_target_critic(agent)
    hand = [p.detach().clone() for p in agent.critic_target.parameters()]
    for k in range(1, 8):
        before = [p.detach().clone() for p in agent.critic_target.parameters()]
        agent.update(make_batch(10 + k))
        online = [p.detach() for p in agent.critic.parameters()]  # after this update's step
        now = list(agent.critic_target.parameters())
        if k % every == 0:
            hand = [x + tau * (o - x) for x, o in zip(hand, online, strict=True)]
            for i, (x, y) in enumerate(zip(now, hand, strict=True)):
                torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7, msg=f"update {k} [{i}]")
        else:
            for i, (x, y) in enumerate(zip(now, before, strict=True)):
                assert torch.equal(x, y), f"target moved at update {k} [{i}]"
    assert agent.num_updates == 7
