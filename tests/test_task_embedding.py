"""BRC's task embedding (``agent.shared_task_embedding``): one unit-norm table in the critic,
read by both Q networks and, as a constant, by the actor.

Oracles: the Q networks and the actor network applied by hand to the state joined to the
row divided by its norm (``torch.linalg.vector_norm``), and autograd for where gradients go.
"""

from __future__ import annotations

import copy

import pytest
import torch
from sac_batches import OBS, A, B, T, assert_same_state, make_batch

from agents import MultiTaskSAC
from agents.losses import ActorBatch, CriticBatch
from mtrl_align.config import AgentConfig, AggregationConfig, ConfigError, load_train_config

D = 4
STATE = OBS - T


def make_agent(method: str = "uniform", **kw) -> MultiTaskSAC:
    config = AgentConfig(
        variant="task-encoder",
        actor_hidden=[8],
        critic_hidden=[8],
        task_embedding_dim=D,
        shared_task_embedding=True,
        **kw,
    )
    return MultiTaskSAC(config, AggregationConfig(method=method), T, OBS, A, seed=3)


def unit_rows(agent: MultiTaskSAC) -> torch.Tensor:
    table = agent.critic.task_embedding.table.detach()
    return table / torch.linalg.vector_norm(table, dim=-1, keepdim=True)  # [T, D]


def by_hand_inputs(obs: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """[T, N, STATE + D]: each task's states joined to its unit row."""
    return torch.cat([obs[..., :STATE], unit[:, None, :].expand(T, obs.shape[1], D)], -1)


def test_both_critics_and_the_actor_read_the_same_unit_rows():
    agent = make_agent()
    batch = make_batch(0)
    tasks = torch.arange(T)
    unit = unit_rows(agent)
    assert not torch.allclose(agent.critic.task_embedding.table.norm(dim=-1), torch.ones(T))
    inputs = by_hand_inputs(batch.obs, unit)
    with torch.no_grad():
        q, _ = agent.critic(batch.obs, batch.actions, tasks)
        q1, _ = agent.critic.q1(inputs, batch.actions, tasks)
        q2, _ = agent.critic.q2(inputs, batch.actions, tasks)
        torch.testing.assert_close(q, torch.stack([q1.squeeze(-1), q2.squeeze(-1)]))
        mean, log_std, _ = agent.actor(batch.obs, tasks)
        out, _ = agent.actor.net(inputs, None, tasks)
        torch.testing.assert_close(mean, out[..., :A])
        # one task at a time (the per-task vmapped path) reads that task's row
        one_mean, _, _ = agent.actor(batch.obs[1], torch.tensor(1))
        torch.testing.assert_close(one_mean, mean[1])
    # the table is the critic's alone: one copy of it, in the critic's optimiser
    actor_names = [n for n, _ in agent.actor.named_parameters()]
    assert not any("embedding" in n for n in actor_names)
    critic_params = [id(p) for g in agent.critic_optimizer.param_groups for p in g["params"]]
    assert id(agent.critic.task_embedding.table) in critic_params
    assert agent.critic.is_task_specific("task_embedding.table")


def test_the_actor_loss_sends_no_gradient_to_the_embedding_and_the_critic_row_by_row():
    agent = make_agent()
    batch = make_batch(1)
    tasks = torch.arange(T)
    table = agent.critic.task_embedding.table
    noise = torch.randn(T, B, A, generator=torch.Generator().manual_seed(0))
    actor_batch = ActorBatch(batch.obs, noise, torch.full((T,), 0.2))
    critic_params = {n: p.detach() for n, p in agent.critic.named_parameters()}
    actor_params = dict(agent.actor.named_parameters())
    losses, _ = agent.losses.actor_loss(actor_params, actor_batch, tasks, critic_params)
    (grad,) = torch.autograd.grad(losses.sum(), [table], allow_unused=True)
    assert grad is None  # the actor reads the row as a constant
    # the critic loss of task t moves row t only
    targets = agent._bellman_targets(batch, agent.temperatures())
    params = dict(agent.critic.named_parameters())
    critic_losses, _ = agent.losses.critic_loss(
        params, CriticBatch(batch.obs, batch.actions, targets), tasks
    )
    for t in range(T):
        (row_grad,) = torch.autograd.grad(
            critic_losses[t], [params["task_embedding.table"]], retain_graph=True
        )
        others = [u for u in range(T) if u != t]
        assert row_grad[t].abs().sum() > 0 and row_grad[others].abs().sum() == 0
        # unit rows: the gradient is orthogonal to the row (the norm is not learned)
        torch.testing.assert_close(
            (row_grad[t] * table[t].detach()).sum(), torch.tensor(0.0), atol=1e-6, rtol=0
        )


@pytest.mark.parametrize("method", ["uniform", "pcgrad"])
def test_updates_learn_the_table_and_are_deterministic(method):
    agent, twin = make_agent(method), make_agent(method)
    before = agent.critic.task_embedding.table.detach().clone()
    for seed in range(3):
        assert not agent.update(make_batch(seed)).skipped
        twin.update(make_batch(seed))
    assert not torch.allclose(agent.critic.task_embedding.table, before)
    assert_same_state(agent.state_dict(), twin.state_dict())
    # a resumed agent reads its critic's table (the actor's link survives load_state_dict)
    resumed = make_agent(method)
    resumed.load_state_dict(copy.deepcopy(agent.state_dict()))
    tasks = torch.arange(T)
    with torch.no_grad():
        torch.testing.assert_close(
            resumed.actor(make_batch(5).obs, tasks)[0], agent.actor(make_batch(5).obs, tasks)[0]
        )


def test_the_option_needs_the_task_encoder():
    with pytest.raises(ConfigError, match="shared_task_embedding=true needs agent.variant=task"):
        load_train_config(None, ["agent.shared_task_embedding=true"])
    config = load_train_config(
        None, ["agent.variant=task-encoder", "agent.shared_task_embedding=true"]
    )
    assert config.agent.shared_task_embedding
