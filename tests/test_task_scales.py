"""Per-task loss scales of one SAC update: the temperature task weights T softmax(-log alpha)
(aggregation.temperature_task_weights) and PaCo's extreme-task masking and composition reset
(agent.extreme_tasks).

Oracles: the weights computed by hand from chosen temperatures; the critic's and actor's
gradients differentiated here from the networks and the weighted losses; an aggregator called
here on the scaled per-task Jacobian; the reset rows rebuilt from the agent's seeded draws.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from sac_batches import OBS, A, B, T, make_batch

from agents import MultiTaskSAC
from agents.architectures.paco import convex_mixtures
from mtrl_align import aggregation
from mtrl_align.config import AgentConfig, AggregationConfig, load_train_config
from mtrl_align.config_io import ConfigError

ALPHAS = [1.0, 2.0, 0.5]
# by hand: softmax(-log alpha)_t = (1 / alpha_t) / sum_j (1 / alpha_j) = [1, 0.5, 2] / 3.5
HAND_WEIGHTS = [3 * 1 / 3.5, 3 * 0.5 / 3.5, 3 * 2 / 3.5]


def make_agent(variant="shared", method="uniform", temperature=False, task_weights=None, **kw):
    config = AgentConfig(
        variant=variant, actor_hidden=[16, 16], critic_hidden=[16, 16], gamma=0.0, **kw
    )
    agg = AggregationConfig(
        method=method, temperature_task_weights=temperature, task_weights=task_weights
    )
    agent = MultiTaskSAC(config, agg, T, OBS, A, seed=0)
    with torch.no_grad():
        agent.log_alpha.copy_(torch.tensor(ALPHAS).log())
    return agent


def per_task_losses(agent: MultiTaskSAC, batch) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Critic and actor losses [T] of the agent's next update, computed here on copies of its
    networks: gamma = 0 (target = reward) and the agent's own policy noise (seed + 1: first
    the Bellman-target draw, then the actor's)."""
    critic, actor = copy.deepcopy(agent.critic), copy.deepcopy(agent.actor)
    index = torch.arange(T)
    q, _ = critic(batch.obs, batch.actions, index)
    critic_losses = (q - batch.rewards.unsqueeze(0)).pow(2).mean(-1).sum(0)
    noise_gen = torch.Generator().manual_seed(1)
    torch.randn((T, B, A), generator=noise_gen)
    noise = torch.randn((T, B, A), generator=noise_gen)
    mean, log_std, _ = actor(batch.obs, index)
    pre_tanh = mean + log_std.exp() * noise
    # log N(u; mean, std) at u = mean + std * noise, written with the noise (no cancellation
    # in u - mean), and log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))
    gaussian = -0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    squash = 2 * (math.log(2.0) - pre_tanh - torch.nn.functional.softplus(-2 * pre_tanh))
    log_prob = (gaussian - squash).sum(-1)
    q_pi, _ = copy.deepcopy(critic).requires_grad_(False)(batch.obs, torch.tanh(pre_tanh), index)
    alpha = torch.tensor(ALPHAS).unsqueeze(-1)
    actor_losses = (alpha * log_prob - torch.minimum(q_pi[0], q_pi[1])).mean(-1)
    return critic_losses, actor_losses, (critic, actor)


def assert_grads_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 rounding of sums of terms as large as the largest entry."""
    scale = float(expected.abs().max())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * scale + 1e-7)


def test_temperature_weights_scale_critic_and_actor_losses_as_computed_by_hand():
    batch = make_batch(0)
    agent = make_agent(temperature=True)
    critic_losses, actor_losses, (critic, actor) = per_task_losses(agent, batch)
    weights = torch.tensor(HAND_WEIGHTS)
    critic_grads = torch.autograd.grad((weights * critic_losses).sum(), list(critic.parameters()))
    actor_grads = torch.autograd.grad((weights * actor_losses).sum(), list(actor.parameters()))
    plain = make_agent()
    plain.update(batch)
    alpha_grad_plain = plain.log_alpha.grad.clone()
    result = agent.update(batch)
    torch.testing.assert_close(result.metrics["loss_scale"], weights)
    assert float(result.metrics["loss_scale"].sum()) == pytest.approx(T)
    for expected, param in zip(critic_grads, agent.critic.parameters(), strict=True):
        assert_grads_close(param.grad, expected)
    for expected, param in zip(actor_grads, agent.actor.parameters(), strict=True):
        assert_grads_close(param.grad, expected)
    # the temperatures keep their own, unweighted loss, and get no gradient from the weights
    torch.testing.assert_close(agent.log_alpha.grad, alpha_grad_plain)


def test_temperature_weights_follow_the_temperatures_of_each_update():
    agent = make_agent(temperature=True)
    batch = make_batch(1)
    first = agent.update(batch).metrics["loss_scale"]
    with torch.no_grad():  # new temperatures (Adam's first steps move all three alike)
        agent.log_alpha.copy_(torch.tensor([0.1, 0.2, 4.0]).log())
    alphas = agent.log_alpha.detach().exp()
    expected = T * (1 / alphas) / (1 / alphas).sum()
    second = agent.update(batch).metrics["loss_scale"]
    torch.testing.assert_close(second, expected)
    assert not torch.allclose(first, second)


def test_aggregator_sees_scaled_rows_and_keeps_the_static_weights():
    """aligned-mtl on multi-head: the aggregator gets rows s_t g_t, losses s_t L_t and the
    static w; each head gets w_t s_t times its own task's gradient."""
    batch = make_batch(2)
    static = [1.0, 3.0, 0.5]
    agent = make_agent("multi-head", "aligned-mtl", temperature=True, task_weights=static)
    critic_losses, _, (critic, _) = per_task_losses(agent, batch)
    names = [n for n, _ in critic.named_parameters()]
    params = list(critic.parameters())
    rows = [torch.autograd.grad(critic_losses[t], params, retain_graph=True) for t in range(T)]
    s, w = torch.tensor(HAND_WEIGHTS), torch.tensor(static)
    shared = [i for i, n in enumerate(names) if not critic.is_task_specific(n)]
    jac = torch.stack([torch.cat([rows[t][i].flatten() for i in shared]) for t in range(T)])
    direction = aggregation.make("aligned-mtl")(s.unsqueeze(1) * jac, s * critic_losses, w)
    agent.update(batch)
    got = torch.cat(
        [
            p.grad.flatten()
            for n, p in agent.critic.named_parameters()
            if n in {names[i] for i in shared}
        ]
    )
    torch.testing.assert_close(got, direction, rtol=1e-4, atol=1e-6)
    for i, name in enumerate(names):
        if critic.is_task_specific(name):  # heads: sum_t w_t s_t g_t (own rows only)
            expected = sum(w[t] * s[t] * rows[t][i] for t in range(T))
            got = dict(agent.critic.named_parameters())[name].grad
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_temperature_weights_are_off_by_default_and_off_changes_nothing():
    assert load_train_config(None).aggregation.temperature_task_weights is False
    config = load_train_config(None, ["aggregation.temperature_task_weights=true"])
    assert config.aggregation.temperature_task_weights is True
    batch = make_batch(3)
    plain, off = make_agent(), make_agent(temperature=False)
    result = off.update(batch)
    plain.update(batch)
    assert "loss_scale" not in result.metrics
    for a, b in zip(plain.critic.parameters(), off.critic.parameters(), strict=True):
        assert torch.equal(a, b)


# -- PaCo -------------------------------------------------------------------------------------
def paco_agent(mode=None, threshold=None, **kw):
    return make_agent(
        "paco", extreme_tasks=mode, extreme_loss_threshold=threshold, num_experts=3, **kw
    )


def extreme_batch():
    """Task 1's rewards are 100: its critic loss (~2e4) exceeds the 3e3 threshold."""
    batch = make_batch(4)
    rewards = batch.rewards.clone()
    rewards[1] = 100.0
    return batch._replace(rewards=rewards)


def compositions(agent):
    return [agent.actor.net.composition, agent.critic.q1.composition, agent.critic.q2.composition]


def test_paco_defaults_are_the_authors_mt10_settings():
    agent = paco_agent()
    assert agent.extreme_tasks == "mask-reset" and agent.extreme_loss_threshold == 3e3
    net = agent.critic.q1
    for layer in net.layers:  # identical_init: all K sets equal
        for k in range(1, layer.shape[0]):
            assert torch.equal(layer[k], layer[0])
    # rows sum to one, so every task starts as the same network (the first set)
    torch.testing.assert_close(net.composition.sum(1), torch.ones(T))
    obs = make_batch(0).obs[0]
    outs = [net(obs, torch.zeros(B, A), torch.tensor(t))[0] for t in range(T)]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0])
    other = make_agent("paco", identical_init=False).critic.q1
    assert not torch.equal(other.layers[0][0], other.layers[0][1])
    torch.testing.assert_close(other.composition.norm(dim=1), torch.ones(T))


def test_paco_masks_the_extreme_task_in_all_three_losses():
    batch = extreme_batch()
    agent = paco_agent("mask")
    critic_losses, actor_losses, (critic, actor) = per_task_losses(agent, batch)
    assert critic_losses[1] > 3e3 and (critic_losses[[0, 2]] < 3e3).all()
    keep = torch.tensor([1.0, 0.0, 1.0])
    critic_grads = torch.autograd.grad((keep * critic_losses).sum(), list(critic.parameters()))
    actor_grads = torch.autograd.grad((keep * actor_losses).sum(), list(actor.parameters()))
    result = agent.update(batch)
    assert result.metrics["loss_scale"].tolist() == keep.tolist()
    assert result.metrics["extreme_task_count"].tolist() == [0, 1, 0]
    for expected, param in zip(critic_grads, agent.critic.parameters(), strict=True):
        assert_grads_close(param.grad, expected)
    for expected, param in zip(actor_grads, agent.actor.parameters(), strict=True):
        assert_grads_close(param.grad, expected)
    assert agent.log_alpha.grad[1] == 0 and (agent.log_alpha.grad[[0, 2]] != 0).all()
    for composition in compositions(agent):  # no gradient reaches the masked task's row
        assert (composition.grad[1] == 0).all() and (composition.grad[[0, 2]] != 0).any()


def test_paco_resets_the_extreme_task_to_a_random_convex_combination_of_the_others():
    batch = extreme_batch()
    masked, reset = paco_agent("mask"), paco_agent()
    masked.update(batch)
    reset.update(batch)
    draws = torch.rand((T, T), generator=torch.Generator().manual_seed(0 + 3))
    c = draws[1, [0, 2]] / draws[1, [0, 2]].sum()
    for before, after in zip(compositions(masked), compositions(reset), strict=True):
        torch.testing.assert_close(after[[0, 2]], before[[0, 2]], rtol=0, atol=0)
        torch.testing.assert_close(after[1], c[0] * before[0] + c[1] * before[2])
    # the target critics take the online critics' new rows
    for q in ("q1", "q2"):
        target = getattr(reset.critic_target, q).composition
        torch.testing.assert_close(target[1], getattr(reset.critic, q).composition[1])
    # a normal update resets nothing
    calm = paco_agent()
    before = [c.detach().clone() for c in compositions(calm)]
    result = calm.update(make_batch(4))
    assert result.metrics["extreme_task_count"].tolist() == [0, 0, 0]
    assert result.metrics["loss_scale"].tolist() == [1.0, 1.0, 1.0]
    assert calm.extreme_task_counts.sum() == 0 and before[0].shape == (T, 3)


def test_paco_off_trains_the_extreme_task_and_state_round_trips():
    batch = extreme_batch()
    off = paco_agent("off")
    result = off.update(batch)
    assert "loss_scale" not in result.metrics
    assert (off.actor.net.composition.grad[1] != 0).any()
    agent = paco_agent()
    agent.update(batch)
    other = paco_agent()
    other.load_state_dict(copy.deepcopy(agent.state_dict()))
    assert other.extreme_task_counts.tolist() == [0, 1, 0]
    for a in (agent, other):
        a.update(batch)
    for x, y in zip(compositions(agent), compositions(other), strict=True):
        assert torch.equal(x, y)


def test_convex_mixtures_rows():
    draws = torch.rand(4, 4, generator=torch.Generator().manual_seed(5))
    reset = torch.tensor([False, True, False, True])
    mix = convex_mixtures(reset, draws)
    torch.testing.assert_close(mix.sum(1), torch.ones(4))
    assert (mix[[1, 3]][:, [1, 3]] == 0).all()  # never mixes from another reset task
    torch.testing.assert_close(mix[[0, 2]], torch.eye(4)[[0, 2]])
    everyone = convex_mixtures(torch.ones(4, dtype=torch.bool), draws)
    torch.testing.assert_close(everyone, torch.eye(4))  # nobody to mix from: rows stay


def test_paco_options_are_checked_by_the_config():
    config = load_train_config(None, ["agent.variant=paco"])
    assert config.agent.extreme_tasks is None and config.agent.identical_init is None
    with pytest.raises(ConfigError, match="'agent.extreme_tasks'.*'reset'.*mask-reset"):
        load_train_config(None, ["agent.variant=paco", "agent.extreme_tasks=reset"])
    bare_off = load_train_config(None, ["agent.variant=paco", "agent.extreme_tasks=off"])
    assert bare_off.agent.extreme_tasks == "off"  # YAML's boolean off read back as the mode
    with pytest.raises(ConfigError, match="'agent.extreme_tasks' only applies to variant"):
        load_train_config(None, ["agent.extreme_tasks=mask"])
    with pytest.raises(ConfigError, match="'agent.identical_init' only applies to variant"):
        load_train_config(None, ["agent.variant=moore", "agent.identical_init=false"])
    with pytest.raises(ConfigError, match="'agent.extreme_loss_threshold'.*> 0"):
        load_train_config(None, ["agent.variant=paco", "agent.extreme_loss_threshold=0"])
    assert math.isinf(
        load_train_config(
            None, ["agent.variant=paco", "agent.extreme_loss_threshold=.inf"]
        ).agent.extreme_loss_threshold
    )
