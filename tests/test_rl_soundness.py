"""Aggregators behave as their methods inside multi-task SAC.

* randomised methods draw from the run seed and the network (not a fixed default seed);
* loss-based weightings are well defined for SAC's negative actor losses, or refused;
* a skipped (NaN/inf) update leaves every aggregator, optimiser and network state untouched;
* pre-defined task weights follow one rule in every gradient mode.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from sac_batches import (
    OBS,
    A,
    Batch,
    T,
    assert_same_state,
    clone_state,
    learning_state,
    make_batch,
)

from agents import MultiTaskSAC
from agents.losses import CriticBatch
from mtrl_align import aggregation
from mtrl_align.config import (
    AgentConfig,
    AggregationConfig,
    ConfigError,
    default_networks,
    load_train_config,
)


def make_agent(method: str, seed: int = 0, variant: str = "shared", **aggregation_kw: Any):
    config = AgentConfig(variant=variant, actor_hidden=[16, 16], critic_hidden=[16, 16])
    return MultiTaskSAC(
        config, AggregationConfig(method=method, **aggregation_kw), T, OBS, A, seed=seed
    )


# -- 1. seeds ---------------------------------------------------------------------------------
RANDOMIZED = [m for m in aggregation.available() if aggregation.is_randomized(m)]


def test_the_known_randomised_methods_take_a_seed():
    assert {"rlw", "pcgrad", "gradvac", "graddrop"} <= set(RANDOMIZED)


@pytest.mark.parametrize("method", RANDOMIZED)
def test_randomised_aggregators_draw_per_run_seed_and_per_network(method):
    g = torch.Generator().manual_seed(0)
    J = torch.randn(6, 40, generator=g, dtype=torch.float64)  # conflicting rows: order matters
    losses = torch.rand(6, generator=g, dtype=torch.float64) + 0.5

    def directions(seed: int) -> dict[str, torch.Tensor]:
        config = AgentConfig(actor_hidden=[4], critic_hidden=[4])
        agent = MultiTaskSAC(config, AggregationConfig(method=method), 6, 6 + 3, A, seed=seed)
        return {name: agg(J, losses) for name, agg in agent.aggregators.items()}

    run0, run0_again, run1 = directions(0), directions(0), directions(1)
    for name in run0:
        assert torch.equal(run0[name], run0_again[name])  # same seed: same draws
        assert not torch.allclose(run0[name], run1[name])  # another run seed: other draws
    assert not torch.allclose(run0["critic"], run0["actor"])  # networks draw different streams


def test_derived_seeds_are_distinct_and_stable():
    seeds = {aggregation.derive_seed(s, n) for s in range(20) for n in ("critic", "actor")}
    assert len(seeds) == 40
    assert aggregation.derive_seed(3, "critic") == aggregation.derive_seed(3, "critic")
    # an explicit seed option wins over the derived one
    agg = aggregation.make_seeded("rlw", 3, "critic", seed=11)
    assert agg.random.seed == 11


def test_resumed_randomised_agent_continues_identically():
    agent = make_agent("rlw", seed=5)
    agent.update(make_batch(0))
    state = clone_state(agent.state_dict())
    expected = agent.update(make_batch(1)).weights
    resumed = make_agent("rlw", seed=5)
    resumed.load_state_dict(state)
    got = resumed.update(make_batch(1)).weights
    for name in expected:
        assert torch.equal(expected[name], got[name])


# -- 2. negative losses -----------------------------------------------------------------------
def _dwa_oracle(previous: torch.Tensor, older: torch.Tensor, temperature: float) -> torch.Tensor:
    """DWA weights from the sign-agnostic rate, written out per task."""
    rates = []
    for now, before in zip(previous.tolist(), older.tolist(), strict=True):
        rates.append(1.0 if before == 0 else 1.0 + (now - before) / abs(before))
    e = [math.exp(r / temperature) for r in rates]
    return torch.tensor([len(e) * x / sum(e) for x in e], dtype=torch.float64)


def test_dwa_on_negative_losses_is_finite_bounded_and_not_uniform():
    # task 0's actor loss falls fast (more negative), task 1's slowly, task 2's rises
    sequence = torch.tensor(
        [[-1.0, -1.0, -1.0], [-2.0, -1.1, -0.9], [-4.0, -1.2, -0.8], [-8.0, -1.3, -0.7]],
        dtype=torch.float64,
    )
    agg = aggregation.make("dwa")
    J = torch.eye(3, dtype=torch.float64)
    weights = []
    for losses in sequence:
        agg(J, losses)
        weights.append(agg.last_weights.clone())
    assert torch.equal(weights[0], torch.ones(3, dtype=torch.float64))
    for k in (2, 3):
        w = weights[k]
        assert torch.isfinite(w).all() and (w > 0).all() and (w < 3).all()
        assert torch.allclose(w, _dwa_oracle(sequence[k - 1], sequence[k - 2], 2.0))
        assert w[0] < w[1] < w[2]  # the fastest-falling loss gets the least weight
    assert agg.stats["zero_losses"] == 0


def test_dwa_rate_equals_the_papers_ratio_for_positive_losses():
    sequence = torch.tensor([[1.0, 4.0], [0.5, 3.0], [0.4, 2.9]], dtype=torch.float64)
    agg = aggregation.make("dwa", temperature=2.0)
    for losses in sequence:
        agg(torch.eye(2, dtype=torch.float64), losses)
    ratio = sequence[1] / sequence[0]  # r_i = L_i(k-1) / L_i(k-2), as in the MTAN paper
    expected = 2 * torch.softmax(ratio / 2.0, dim=0)
    assert torch.allclose(agg.last_weights, expected)


@pytest.mark.parametrize("method", ["uncertainty", "gradnorm"])
def test_methods_needing_nonnegative_losses_refuse_negative_ones(method):
    agg = aggregation.make(method)
    J = torch.eye(3)
    agg(J, torch.tensor([0.5, 0.0, 2.0]))  # >= 0 is fine
    with pytest.raises(ValueError, match=rf"'{method}' is only defined for losses >= 0"):
        agg(J, torch.tensor([0.5, -1.0, 2.0]))


@pytest.mark.parametrize("method", ["uncertainty", "gradnorm"])
def test_actor_aggregation_with_such_methods_is_refused_at_config_time(method, tmp_path):
    assert default_networks(method) == ["critic"]
    config = load_train_config(overrides=[f"aggregation.method={method}"])
    assert config.aggregation.networks == ["critic"]
    with pytest.raises(ConfigError, match=r"only defined for losses >= 0.*networks=\[critic\]"):
        load_train_config(
            overrides=[f"aggregation.method={method}", "aggregation.networks=[critic,actor]"]
        )
    with pytest.raises(ConfigError, match="only defined for losses >= 0"):
        make_agent(method, networks=["critic", "actor"])


def test_methods_that_accept_any_sign_aggregate_both_networks_by_default():
    for method in ("uniform", "aligned-mtl", "dwa", "rlw", "nash-mtl"):
        assert default_networks(method) == ["critic", "actor"]


def test_uncertainty_weights_stay_bounded_on_critic_losses():
    agent = make_agent("uncertainty")
    assert set(agent.aggregators) == {"critic"}
    for seed in range(5):
        result = agent.update(make_batch(seed))
        assert not result.skipped
        w = result.weights["critic"]
        assert torch.isfinite(w).all() and (w > 0).all() and (w < 10).all()


# -- 3. skipped updates change nothing ----------------------------------------------------------
ALL_METHODS = aggregation.available()


def _nan_batch(seed: int, task: int = 1) -> Batch:
    batch = make_batch(seed)
    rewards = batch.rewards.clone()
    rewards[task] = float("nan")  # task 1's Bellman targets, hence its critic loss, are NaN
    return batch._replace(rewards=rewards)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_a_nan_loss_skips_the_update_and_changes_no_learning_state(method):
    agent = make_agent(method, seed=2)
    for seed in range(2):  # give history-keeping methods (dwa, gradnorm, ...) some state
        assert not agent.update(make_batch(seed)).skipped
    before = learning_state(agent)
    result = agent.update(_nan_batch(7))
    assert result.skipped and agent.nonfinite_skips == 1
    assert_same_state(before, learning_state(agent))
    assert all(p.grad is None for p in agent.critic.parameters())
    assert not agent.update(make_batch(3)).skipped  # and training goes on
    assert agent.consecutive_nonfinite == 0


@pytest.mark.parametrize("method", ["aligned-mtl", "dwa", "gradvac", "nash-mtl", "rlw"])
def test_a_nonfinite_direction_is_skipped_and_rolled_back(method, monkeypatch):
    agent = make_agent(method, seed=4)
    agent.update(make_batch(0))
    before = learning_state(agent)
    actor_agg = agent.aggregators["actor"]
    original = actor_agg.aggregate_flat_blocks

    def overflowing(flat, losses, task_weights):
        directions = original(flat, losses, task_weights)  # advances the method's state
        return [d * float("inf") for d in directions]

    monkeypatch.setattr(actor_agg, "aggregate_flat_blocks", overflowing)
    result = agent.update(make_batch(1))  # no exception: counted and skipped
    assert result.skipped and agent.nonfinite_skips == 1
    assert_same_state(before, learning_state(agent))


# -- 4. pre-defined task weights: one rule ------------------------------------------------------
def _loop_head_gradients(agent: MultiTaskSAC, batch: CriticBatch) -> dict[str, torch.Tensor]:
    """Per-task critic gradients of the head tensors by T autograd calls (the oracle)."""
    params = dict(agent.critic.named_parameters())
    losses, _ = agent.losses.critic_loss(params, batch, agent.task_index)
    heads = [n for n in params if agent.critic.is_task_specific(n)]
    rows = [
        torch.autograd.grad(losses[t], [params[n] for n in heads], retain_graph=True)
        for t in range(T)
    ]
    return {n: torch.stack([row[i] for row in rows]) for i, n in enumerate(heads)}


@pytest.mark.parametrize("method", ["uniform", "aligned-mtl", "aligned-mtl-ub"])
def test_task_specific_parameters_get_w_t_times_their_task_gradient(method):
    weights = [0.5, 2.0, 1.0]
    agent = make_agent(method, variant="multi-head", task_weights=weights)
    batch = make_batch(0)
    targets = agent._bellman_targets(batch, agent.log_alpha.detach().exp())
    critic_batch = CriticBatch(batch.obs, batch.actions, targets)
    oracle = _loop_head_gradients(agent, critic_batch)
    agent.gradients["critic"].compute(critic_batch, agent.task_index)
    w = torch.tensor(weights)
    params = dict(agent.critic.named_parameters())
    for name, per_task in oracle.items():
        expected = (per_task * w.view(-1, *[1] * (per_task.dim() - 1))).sum(0)
        torch.testing.assert_close(params[name].grad, expected, rtol=1e-5, atol=1e-6)


def test_task_weights_given_as_an_aggregator_option_are_the_same_setting():
    config = load_train_config(
        overrides=["aggregation.method=uniform", "aggregation.options.task_weights=[1,2,3]"]
    )
    assert config.aggregation.task_weights == [1, 2, 3]
    assert "task_weights" not in config.aggregation.options
    with pytest.raises(ConfigError, match="set twice"):
        load_train_config(
            overrides=[
                "aggregation.task_weights=[1,1,1]",
                "aggregation.options.task_weights=[1,2,3]",
            ]
        )
