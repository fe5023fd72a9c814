"""Categorical critic: two-hot and HL-Gauss targets against hand-computed cases and the erf
closed form, expectations of the targets, the critic's Q and cross-entropy loss, and the
categorical Bellman target of the agent against the scalar one computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from sac_batches import OBS, A, B, T, make_batch
from torch.func import vmap
from torch.nn import functional as F

from agents import MultiTaskSAC, sample_tanh_gaussian
from agents.categorical import CategoricalSupport, cross_entropy, hl_gauss, two_hot
from agents.losses import CriticBatch
from mtrl_align.config import AgentConfig, AggregationConfig

F64 = torch.float64


def test_two_hot_hand_computed_cases():
    # atoms -2, -1, 0, 1, 2 (bin width 1)
    values = torch.tensor([0.25, -1.5, -3.0, 2.0, 7.0, -2.0, 1.0], dtype=F64)
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.75, 0.25, 0.0],  # 0.25: 3/4 on 0, 1/4 on 1
            [0.5, 0.5, 0.0, 0.0, 0.0],  # halfway between -2 and -1
            [1.0, 0.0, 0.0, 0.0, 0.0],  # clipped to -2
            [0.0, 0.0, 0.0, 0.0, 1.0],  # the top atom itself
            [0.0, 0.0, 0.0, 0.0, 1.0],  # clipped to 2
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0, 0.0],
        ],
        dtype=F64,
    )
    torch.testing.assert_close(two_hot(values, 2.0, 5), expected, rtol=0, atol=1e-12)


def test_hl_gauss_hand_computed_case():
    # atoms -1, 0, 1, bins [-1.5, -0.5], [-0.5, 0.5], [0.5, 1.5], sigma 0.75, y = 0:
    # middle mass 2 Phi(2/3) - 1 = 0.49501, outer Phi(2) - Phi(2/3) = 0.22974 each,
    # renormalised by their sum 0.95450
    got = hl_gauss(torch.tensor(0.0, dtype=F64), 1.0, 3, 0.75)
    torch.testing.assert_close(
        got, torch.tensor([0.24069, 0.51861, 0.24069], dtype=F64), atol=2e-5, rtol=0
    )


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@pytest.mark.parametrize("value", [-9.3, -2.71, 0.0, 0.05, 4.4, 9.99, 12.0])
def test_hl_gauss_matches_the_erf_closed_form(value):
    v_max, bins, ratio = 10.0, 21, 0.75
    width = 2 * v_max / (bins - 1)
    sigma = ratio * width
    y = min(max(value, -v_max), v_max)
    mass = []
    for k in range(bins):
        centre = -v_max + k * width
        mass.append(_phi((centre + width / 2 - y) / sigma) - _phi((centre - width / 2 - y) / sigma))
    total = _phi((v_max + width / 2 - y) / sigma) - _phi((-v_max - width / 2 - y) / sigma)
    expected = torch.tensor([m / total for m in mass], dtype=F64)
    support = CategoricalSupport(bins, v_max, "hl-gauss", sigma_ratio=ratio)
    got = support.target(torch.tensor(value, dtype=F64))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["two-hot", "hl-gauss"])
def test_targets_are_distributions_whose_expectation_is_the_clipped_target(kind):
    support = CategoricalSupport(101, 10.0, kind)
    values = torch.cat([torch.linspace(-14.0, 14.0, 561, dtype=F64), torch.randn(200, dtype=F64)])
    probs = support.target(values)
    assert probs.shape == (values.numel(), 101)
    assert bool((probs >= 0).all())
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(values), rtol=0, atol=1e-12)
    expectation = probs @ support.atoms(probs)
    clipped = values.clamp(-10.0, 10.0)
    if kind == "two-hot":  # exact everywhere
        torch.testing.assert_close(expectation, clipped, rtol=0, atol=1e-12)
    else:  # exact up to the discretisation more than 6 sigma from the ends
        inside = clipped.abs() <= 10.0 - 6 * support.sigma
        error = (expectation - clipped).abs() / support.bin_width
        assert float(error[inside].max()) < 1e-5
        assert float(error.max()) < 0.4  # the cut-off Gaussian near +-v_max


@pytest.mark.parametrize("kind", ["two-hot", "hl-gauss"])
def test_targets_run_under_vmap(kind):
    support = CategoricalSupport(11, 2.0, kind)
    values = torch.randn(4, 6) * 2
    torch.testing.assert_close(vmap(support.target)(values), support.target(values))


def test_bad_supports_are_named():
    with pytest.raises(ValueError, match="'three-hot'.*two-hot, hl-gauss"):
        CategoricalSupport(11, 1.0, "three-hot")
    with pytest.raises(ValueError, match="num_bins must be >= 2, got 1"):
        CategoricalSupport(1, 1.0)
    with pytest.raises(ValueError, match="v_max must be > 0, got 0"):
        CategoricalSupport(11, 0)


def make_categorical_agent(kind: str = "hl-gauss", variant: str = "shared", **kw) -> MultiTaskSAC:
    config = AgentConfig(
        variant=variant,
        actor_hidden=[16, 16],
        critic_hidden=[16, 16],
        critic_loss=kind,
        num_bins=21,
        v_max=3.0,
        **kw,
    )
    return MultiTaskSAC(config, AggregationConfig(method="uniform"), T, OBS, A, seed=0)


def test_critic_q_is_the_expectation_and_the_loss_is_cross_entropy():
    agent = make_categorical_agent("two-hot", variant="multi-head")
    batch = make_batch()
    index = torch.arange(T)
    q, _, logits = agent.critic(batch.obs, batch.actions, index, with_logits=True)
    assert logits.shape == (2, T, B, 21) and q.shape == (2, T, B)
    atoms = torch.linspace(-3.0, 3.0, 21)
    torch.testing.assert_close(q, (logits.softmax(-1) * atoms).sum(-1))
    targets = agent.critic.support.target(torch.randn(T, B) * 2)
    params = dict(agent.critic.named_parameters())
    losses, _ = agent.losses.critic_loss(
        params, CriticBatch(batch.obs, batch.actions, targets), index
    )
    by_hand = torch.stack(
        [
            sum(F.cross_entropy(logits[c, t], targets[t]) for c in range(2))  # mean over B
            for t in range(T)
        ]
    )
    torch.testing.assert_close(losses, by_hand)
    torch.testing.assert_close(
        cross_entropy(logits, targets), -(targets * logits.log_softmax(-1)).sum(-1)
    )


@pytest.mark.parametrize("kind", ["two-hot", "hl-gauss"])
@pytest.mark.parametrize("reduction", ["min", "mean"])
def test_bellman_target_distribution_has_the_clipped_soft_target_as_expectation(kind, reduction):
    agent = make_categorical_agent(
        kind, variant="task-encoder", log_std_bound="clip", q_reduction=reduction
    )
    batch = make_batch(seed=4)
    rewards = batch.rewards * 3.0  # some targets beyond v_max = 3
    noise = torch.randn(T, B, A, generator=torch.Generator().manual_seed(7))
    alpha = torch.tensor([0.05, 0.1, 0.2])
    with torch.no_grad():  # twin target critics that disagree, so that the min matters
        agent.critic_target.q2.out_bias.add_(torch.linspace(-2.0, 2.0, 21))
        targets = agent._soft_targets(batch.next_obs, rewards, batch.dones, noise, alpha)
        # the scalar soft target by hand
        index = torch.arange(T)
        mean, log_std, _ = agent.actor(batch.next_obs, index)
        action, log_prob = sample_tanh_gaussian(mean, log_std, noise)
        _, _, logits = agent.critic_target(batch.next_obs, action, index, with_logits=True)
        atoms = torch.linspace(-3.0, 3.0, 21)
        if reduction == "min":  # min over the target critics' expectations
            value = (logits.softmax(-1) * atoms).sum(-1).min(0).values
        else:  # BRC: the expectation of the two critics' mean distribution
            value = (logits.softmax(-1).mean(0) * atoms).sum(-1)
        soft = value - alpha[:, None] * log_prob
        scalar = rewards + 0.99 * (1.0 - batch.dones) * soft
    assert targets.shape == (T, B, 21)
    expectation = (targets * torch.linspace(-3.0, 3.0, 21)).sum(-1)
    clipped = scalar.clamp(-3.0, 3.0)
    assert bool((scalar.abs() > 3.0).any()) and int((scalar.abs() < 2.5).sum()) > T * B // 2
    if kind == "two-hot":
        torch.testing.assert_close(expectation, clipped, rtol=0, atol=1e-5)
    else:
        inside = clipped.abs() <= 3.0 - 6 * 0.75 * 0.3
        torch.testing.assert_close(expectation[inside], clipped[inside], rtol=0, atol=1e-4)


# -- c51: BRC's projected distributional target -----------------------------------------------
def loop_projection(shifted: torch.Tensor, probs: torch.Tensor, v_max: float) -> torch.Tensor:
    """The C51 projection sample by sample and atom by atom, in float64 (the oracle)."""
    k = shifted.shape[-1]
    width = 2 * v_max / (k - 1)
    flat_shifted, flat_probs = shifted.reshape(-1, k).double(), probs.reshape(-1, k).double()
    out = torch.zeros_like(flat_probs)
    for row in range(flat_shifted.shape[0]):
        for j in range(k):
            point = min(max(float(flat_shifted[row, j]), -v_max), v_max)
            position = (point + v_max) / width
            low = min(math.floor(position), k - 2)
            share = position - low
            out[row, low] += flat_probs[row, j] * (1 - share)
            out[row, low + 1] += flat_probs[row, j] * share
    return out.reshape(probs.shape).to(probs.dtype)


def test_c51_projection_matches_a_loop_and_keeps_mass_and_clipped_expectation():
    support = CategoricalSupport(11, 2.0, "c51")
    g = torch.Generator().manual_seed(3)
    probs = torch.rand(4, 6, 11, generator=g).softmax(-1)
    shifted = torch.randn(4, 6, 11, generator=g) * 2.0  # some beyond +-2
    shifted[0, 0, :3] = torch.tensor([-2.0, 0.4, 2.0])  # on atoms and the ends
    projected = support.project(shifted, probs)
    torch.testing.assert_close(projected, loop_projection(shifted, probs, 2.0))
    torch.testing.assert_close(projected.sum(-1), torch.ones(4, 6))
    atoms = support.atoms(probs)
    torch.testing.assert_close(
        (projected * atoms).sum(-1), (probs * shifted.clamp(-2.0, 2.0)).sum(-1)
    )
    with pytest.raises(ValueError, match="c51 targets are projected distributions"):
        support.target(torch.zeros(3))


@pytest.mark.parametrize("reduction", ["min", "mean"])
def test_c51_bellman_targets_project_the_target_critics_distribution(reduction):
    agent = make_categorical_agent("c51", variant="multi-head", q_reduction=reduction)
    batch = make_batch(seed=6)
    dones = batch.dones.clone()
    dones[:, 0] = 1.0
    noise = torch.randn(T, B, A, generator=torch.Generator().manual_seed(2))
    alpha = torch.tensor([0.05, 0.3, 1.0])
    with torch.no_grad():
        agent.critic_target.q2.heads["bias"].add_(torch.linspace(-1.0, 1.0, 21))  # they differ
        targets = agent._soft_targets(batch.next_obs, batch.rewards, dones, noise, alpha)
        index = torch.arange(T)
        mean, log_std, _ = agent.actor(batch.next_obs, index)
        action, log_prob = sample_tanh_gaussian(mean, log_std, noise)
        _, _, logits = agent.critic_target(batch.next_obs, action, index, with_logits=True)
        probs = logits.softmax(-1)
        atoms = torch.linspace(-3.0, 3.0, 21)
        if reduction == "mean":
            p = (probs[0] + probs[1]) / 2
        else:
            q1, q2 = (probs * atoms).sum(-1)
            p = torch.where((q2 < q1)[..., None], probs[1], probs[0])
        shifted = batch.rewards[..., None] + 0.99 * (1 - dones[..., None]) * (
            atoms - alpha[:, None, None] * log_prob[..., None]
        )
    assert targets.shape == (T, B, 21)
    torch.testing.assert_close(targets, loop_projection(shifted, p, 3.0), rtol=1e-5, atol=1e-6)
    # a terminal transition's target is the reward, two-hot on the support
    torch.testing.assert_close(targets[:, 0], two_hot(batch.rewards[:, 0], 3.0, 21))
    # the agent trains on it
    assert not agent.update(batch).skipped
