"""Multi-task SAC agent: per-task gradients, where gradients flow, aggregation, NaN handling.

Every check compares against an independent computation: per-task gradients from a plain
autograd loop, the aggregator applied by hand to that Jacobian, torch.distributions for the
tanh-Gaussian log-probability.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from sac_batches import OBS, A, B, Batch, T, loop_gradients, make_batch

from agents import MultiTaskSAC, representation_jacobian, sample_tanh_gaussian
from agents.losses import ActorBatch, CriticBatch
from mtrl_align import aggregation
from mtrl_align.config import AgentConfig, AggregationConfig


def make_agent(variant="shared", method="uniform", networks=None, **agent_kw):
    config = AgentConfig(variant=variant, actor_hidden=[16, 16], critic_hidden=[16, 16], **agent_kw)
    agg = AggregationConfig(method=method, networks=None if networks is None else list(networks))
    return MultiTaskSAC(config, agg, T, OBS, A, device="cpu", seed=0)


def critic_inputs(agent: MultiTaskSAC, batch: Batch) -> CriticBatch:
    targets = agent._bellman_targets(batch, agent.log_alpha.detach().exp())
    return CriticBatch(batch.obs, batch.actions, targets)


@pytest.mark.parametrize("variant", ["shared", "task-encoder", "multi-head"])
def test_vmapped_per_task_gradients_match_autograd_loop(variant):
    agent = make_agent(variant)
    batch = make_batch()
    cb = critic_inputs(agent, batch)
    critic = agent.gradients["critic"]
    fused, losses, _ = critic.per_task_gradients(cb, agent.task_index, ())
    oracle = loop_gradients(agent.losses.critic_loss, agent.critic, cb)
    for name in oracle:
        torch.testing.assert_close(fused[name], oracle[name], rtol=1e-4, atol=1e-6)
    ab = ActorBatch(batch.obs, torch.randn(T, B, A), agent.log_alpha.detach().exp())
    extra = ({n: p.detach() for n, p in agent.critic.named_parameters()},)
    fused, _, _ = agent.gradients["actor"].per_task_gradients(ab, agent.task_index, extra)
    oracle = loop_gradients(agent.losses.actor_loss, agent.actor, ab, extra)
    for name in oracle:
        torch.testing.assert_close(fused[name], oracle[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", ["task-encoder", "multi-head"])
def test_task_specific_parameters_only_receive_their_own_task(variant):
    agent = make_agent(variant)
    cb = critic_inputs(agent, make_batch())
    grads, _, _ = agent.gradients["critic"].per_task_gradients(cb, agent.task_index, ())
    specific = agent.gradients["critic"].specific_names
    assert specific, "variant should have task-specific parameters"
    for name in specific:
        for t in range(T):
            others = [s for s in range(T) if s != t]
            assert grads[name][t][t].abs().sum() > 0, f"{name}: task {t} gives its own row nothing"
            assert grads[name][t][others].abs().sum() == 0, f"{name}: task {t} leaks into others"


def test_shared_variant_has_no_task_specific_parameters():
    agent = make_agent("shared")
    assert agent.gradients["critic"].specific_names == []
    assert agent.gradients["actor"].specific_names == []


@pytest.mark.parametrize("variant", ["shared", "multi-head"])
def test_aggregated_update_writes_aggregator_direction(variant):
    agent = make_agent(variant, method="aligned-mtl")
    cb = critic_inputs(agent, make_batch())
    rule = agent.gradients["critic"]
    assert rule.mode == "jacobian"
    oracle = loop_gradients(agent.losses.critic_loss, agent.critic, cb)
    params = dict(agent.critic.named_parameters())
    J = torch.cat([oracle[n].reshape(T, -1) for n in rule.shared_names], dim=1)
    params_losses, _ = agent.losses.critic_loss(params, cb, agent.task_index)
    expected = aggregation.make("aligned-mtl")(J, params_losses.detach())
    agent._zero_grads()
    step = rule.compute(cb, agent.task_index)
    assert step.finite
    written = torch.cat([params[n].grad.reshape(-1) for n in rule.shared_names])
    torch.testing.assert_close(written, expected, rtol=1e-4, atol=1e-6)
    for name in rule.specific_names:  # heads: plain sum of per-task gradients = own task's
        torch.testing.assert_close(params[name].grad, oracle[name].sum(0), rtol=1e-4, atol=1e-6)


def test_sum_mode_equals_weighted_sum_of_task_gradients():
    agent = make_agent("multi-head", method="uniform")
    weights = torch.tensor([0.5, 2.0, 1.0])
    rule = agent.gradients["critic"]
    rule.task_weights = weights
    cb = critic_inputs(agent, make_batch())
    oracle = loop_gradients(agent.losses.critic_loss, agent.critic, cb)
    agent._zero_grads()
    rule.compute(cb, agent.task_index)
    for name, p in agent.critic.named_parameters():
        expected = torch.einsum("t,t...->...", weights, oracle[name])
        torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-6)


def test_not_aggregated_network_uses_plain_sum():
    agent = make_agent("shared", method="aligned-mtl", networks=("critic",))
    assert agent.gradients["critic"].mode == "jacobian"
    assert agent.gradients["actor"].mode == "sum"
    assert set(agent.aggregators) == {"critic"}


def test_representation_mode_weights_and_gradient_flow():
    agent = make_agent("multi-head", method="aligned-mtl-ub")
    rule = agent.gradients["critic"]
    assert rule.mode == "representation"
    cb = critic_inputs(agent, make_batch())
    params = dict(agent.critic.named_parameters())
    losses, _, features = agent.losses.critic_terms(params, cb, agent.task_index)
    # explicit block-diagonal Jacobian w.r.t. the representation (both critics' features)
    grads = torch.autograd.grad(losses.sum(), list(features), retain_graph=True)
    rows = torch.cat([g.reshape(T, -1) for g in grads], dim=1)  # [T, m]
    block = torch.zeros(T, T, rows.shape[1])
    block[torch.arange(T), torch.arange(T)] = rows
    explicit = aggregation.make("aligned-mtl-ub")
    explicit(block.reshape(T, -1), losses.detach())
    compact = aggregation.make("aligned-mtl-ub")
    compact(representation_jacobian(grads), losses.detach())
    torch.testing.assert_close(compact.last_weights, explicit.last_weights, rtol=1e-5, atol=1e-7)
    alpha = explicit.last_weights
    oracle = loop_gradients(agent.losses.critic_loss, agent.critic, cb)
    agent._zero_grads()
    step = rule.compute(cb, agent.task_index)
    torch.testing.assert_close(step.weights, alpha, rtol=1e-5, atol=1e-7)
    for name in rule.shared_names:  # shared: sum_t alpha_t g_t
        expected = torch.einsum("t,t...->...", alpha, oracle[name])
        torch.testing.assert_close(params[name].grad, expected, rtol=1e-4, atol=1e-6)
    for name in rule.specific_names:  # heads: their own, unweighted gradient
        torch.testing.assert_close(params[name].grad, oracle[name].sum(0), rtol=1e-4, atol=1e-6)


def test_actor_and_critic_gradients_stay_in_their_network():
    agent = make_agent("shared", method="aligned-mtl")
    batch = make_batch()
    cb = critic_inputs(agent, batch)
    agent._zero_grads()
    agent.gradients["critic"].compute(cb, agent.task_index)
    assert all(p.grad is None for p in agent.actor.parameters())
    agent._zero_grads()
    ab = ActorBatch(batch.obs, torch.randn(T, B, A), agent.log_alpha.detach().exp())
    extra = ({n: p.detach() for n, p in agent.critic.named_parameters()},)
    agent.gradients["actor"].compute(ab, agent.task_index, extra)
    assert all(p.grad is None for p in agent.critic.parameters())
    assert all(p.grad is not None for p in agent.actor.parameters())


def test_temperature_gradient_is_per_task():
    """Through ``agent.update``: log_alpha_t's gradient is -(mean log pi_t + target entropy),
    Adam moves each log_alpha_t against its own gradient, and another batch for task 1 changes
    task 1's entry only."""
    batch = make_batch()
    agent = make_agent()
    before = agent.log_alpha.detach().clone()
    result = agent.update(batch)
    grad = agent.log_alpha.grad.clone()
    assert agent.target_entropy == -A
    torch.testing.assert_close(grad, -(result.metrics["log_prob"] + agent.target_entropy))
    moved = agent.log_alpha.detach() - before
    assert torch.equal(torch.sign(moved), -torch.sign(grad)) and (moved != 0).all()
    changed = batch._replace(obs=batch.obs.clone().index_fill_(0, torch.tensor([1]), 0.3))
    other = make_agent()  # same seed: same weights and policy noise
    other.update(changed)
    assert other.log_alpha.grad[1] != grad[1]
    assert torch.equal(other.log_alpha.grad[[0, 2]], grad[[0, 2]])


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    mean, log_std = torch.randn(6, A, generator=g), torch.randn(6, A, generator=g) * 0.5
    noise = torch.randn(6, A, generator=g)
    action, log_prob = sample_tanh_gaussian(mean, log_std, noise)
    pre = mean + log_std.exp() * noise
    expected = (
        torch.distributions.Normal(mean, log_std.exp()).log_prob(pre)
        - torch.distributions.TanhTransform().log_abs_det_jacobian(pre, torch.tanh(pre))
    ).sum(-1)
    torch.testing.assert_close(action, torch.tanh(pre))
    torch.testing.assert_close(log_prob, expected, rtol=1e-5, atol=1e-5)


def test_update_changes_weights_and_polyak_targets():
    agent = make_agent("task-encoder", method="aligned-mtl")
    before = copy.deepcopy(agent.critic.state_dict())
    target_before = copy.deepcopy(agent.critic_target.state_dict())
    result = agent.update(make_batch(), collect_stats=True)
    assert not result.skipped
    after = agent.critic.state_dict()
    for name in before:
        assert not torch.equal(before[name], after[name]), name
        expected = target_before[name] + agent.config.tau * (after[name] - target_before[name])
        torch.testing.assert_close(agent.critic_target.state_dict()[name], expected)
    assert {"kappa", "gms", "min_cos", "max_norm_ratio"} <= set(result.stats["critic"])
    assert result.weights["critic"].shape == (T,)
    for key in ("critic_loss", "actor_loss", "alpha_loss", "alpha"):
        assert result.metrics[key].shape == (T,)


def test_nonfinite_batch_skips_update_and_counts():
    agent = make_agent("shared", method="aligned-mtl")
    snapshot = copy.deepcopy(agent.state_dict())
    batch = make_batch()
    bad = batch._replace(rewards=batch.rewards.clone().index_fill_(1, torch.tensor([0]), math.nan))
    for expected in (1, 2):
        result = agent.update(bad)
        assert result.skipped
        assert agent.nonfinite_skips == expected and agent.consecutive_nonfinite == expected
    for name in ("actor", "critic", "critic_target"):
        for key, value in snapshot[name].items():
            assert torch.equal(getattr(agent, name).state_dict()[key], value), (name, key)
    assert torch.equal(agent.log_alpha.detach(), snapshot["log_alpha"])
    assert agent.num_updates == 0
    assert agent.update(batch).skipped is False
    assert agent.consecutive_nonfinite == 0 and agent.nonfinite_skips == 2


def test_state_dict_round_trip_continues_identically():
    first = make_agent("multi-head", method="pcgrad")
    first.update(make_batch(0))
    second = make_agent("multi-head", method="pcgrad")
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    for agent in (first, second):
        agent.update(make_batch(1))
    for key, value in first.actor.state_dict().items():
        assert torch.equal(second.actor.state_dict()[key], value)
    obs = make_batch(2).obs[:, 0]
    assert torch.equal(first.act(obs), second.act(obs))


def test_state_dict_of_other_shape_is_a_clear_error():
    agent = make_agent("shared")
    other = MultiTaskSAC(
        AgentConfig(actor_hidden=[8], critic_hidden=[8]), AggregationConfig(), T, OBS, A
    )
    with pytest.raises(ValueError, match="does not fit"):
        agent.load_state_dict(other.state_dict())


def test_eval_protocol_and_input_checks():
    agent = make_agent("task-encoder")
    obs = make_batch().obs[:, 0].numpy()
    actions = agent.eval_action(obs)
    assert isinstance(actions, np.ndarray) and actions.shape == (T, A)
    assert np.array_equal(actions, agent.eval_action(obs))  # deterministic
    assert np.all(np.abs(actions) < 1)
    agent.reset(np.ones(T, dtype=bool))
    with pytest.raises(ValueError, match=r"\[T, obs_dim\]"):
        agent.act(np.zeros((T + 1, OBS)))
    batch = make_batch()
    with pytest.raises(ValueError, match="batch.rewards"):
        agent.update(batch._replace(rewards=batch.rewards[:, :, None]))
    with pytest.raises(ValueError, match="task_weights"):
        MultiTaskSAC(
            AgentConfig(actor_hidden=[4], critic_hidden=[4]),
            AggregationConfig(task_weights=[1.0]),
            T,
            OBS,
            A,
        )


AGENT_CASES = [("shared", m) for m in aggregation.available()] + [
    (variant, method)
    for variant in ("task-encoder", "multi-head")
    for method in ("aligned-mtl", "aligned-mtl-ub", "mgda-ub")
]


@pytest.mark.parametrize("variant, method", AGENT_CASES)
def test_every_aggregator_runs_inside_the_agent(variant, method):
    agent = make_agent(variant, method=method)
    before = [p.detach().clone() for p in agent.critic.parameters()]
    for seed in range(2):  # methods with history (dwa, gradnorm, ...) see a second step
        result = agent.update(make_batch(seed), collect_stats=seed == 1)
        assert not result.skipped
    moved = [not torch.equal(b, p) for b, p in zip(before, agent.critic.parameters(), strict=True)]
    assert any(moved)
    assert all(torch.isfinite(p).all() for p in agent.actor.parameters())
    for network in ("critic", "actor"):
        if network in result.weights:
            assert result.weights[network].shape == (T,)
