"""BRC's per-task reward normalisation against a plain numpy loop over whole episodes, its
state round trip in the middle of episodes, and the scaled batch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from agents.reward_normalization import RewardNormalizer
from envs.replay_buffer import TransitionBatch

GAMMA, V_MAX, TARGET_ENTROPY = 0.9, 10.0, -4.0


def simulate(seed: int, num_tasks: int = 3, steps: int = 60, max_len: int = 7):
    """Per env step: rewards, terminated, truncated [T]; tasks have their own reward scale and
    end episodes by termination (at random) or by the time limit ``max_len``."""
    rng = np.random.default_rng(seed)
    scale = np.array([1.0, 25.0, -3.0])[:num_tasks]
    lengths = np.zeros(num_tasks, dtype=int)
    trace = []
    for _ in range(steps):
        rewards = rng.normal(0.5, 1.0, num_tasks) * scale
        lengths += 1
        terminated = rng.random(num_tasks) < 0.1
        truncated = lengths >= max_len
        trace.append((rewards, terminated, truncated))
        lengths[terminated | truncated] = 0
    return trace


def oracle_bounds(trace, num_tasks: int) -> np.ndarray:
    """G_i: max over finished episodes and their steps t of |sum_k gamma^(k-t) r_k + tail|,
    tail = gamma^(n-t) mean(r) / (1 - gamma) after a truncation (0 after a termination);
    NaN for a task without a finished episode."""
    bounds = np.full(num_tasks, np.nan)
    for task in range(num_tasks):
        episode = []
        for rewards, terminated, truncated in trace:
            episode.append(rewards[task])
            if not (terminated[task] or truncated[task]):
                continue
            n = len(episode)
            bootstrap = np.mean(episode) / (1 - GAMMA) if not terminated[task] else 0.0
            for t in range(n):
                value = sum(GAMMA ** (k - t) * episode[k] for k in range(t, n))
                value += GAMMA ** (n - t) * bootstrap
                bounds[task] = np.nanmax([bounds[task], abs(value)])
            episode = []
    return bounds


def feed(normalizer: RewardNormalizer, trace) -> None:
    for rewards, terminated, truncated in trace:
        normalizer.observe(rewards, terminated, truncated)


def test_scales_match_a_numpy_loop_over_episodes():
    trace = simulate(seed=0)
    normalizer = RewardNormalizer(3, GAMMA, V_MAX, TARGET_ENTROPY)
    feed(normalizer, trace)
    bounds = oracle_bounds(trace, 3)
    assert np.isfinite(bounds).all()
    np.testing.assert_allclose(normalizer.return_bounds(), bounds, rtol=1e-10)
    alpha = torch.tensor([0.1, 1.0, 0.5], dtype=torch.float64)
    correction = alpha.numpy() * abs(TARGET_ENTROPY) / (2 * (1 - GAMMA))
    expected = V_MAX / (bounds + correction)
    np.testing.assert_allclose(normalizer.scales(alpha).numpy(), expected, rtol=1e-10)
    # the scaled replay batch: rewards [T, B] times each task's scale
    rewards = torch.randn(3, 5, dtype=torch.float64)
    zeros = torch.zeros(3, 5)
    batch = TransitionBatch(zeros, zeros, rewards, zeros, zeros)
    scaled = normalizer.normalize(batch, alpha)
    torch.testing.assert_close(scaled.rewards, rewards * torch.as_tensor(expected)[:, None])
    assert scaled.obs is batch.obs


def test_no_finished_episode_means_no_scaling_and_termination_wins_over_truncation():
    normalizer = RewardNormalizer(2, GAMMA, V_MAX, TARGET_ENTROPY)
    normalizer.observe(np.array([3.0, 5.0]), np.array([False, False]), np.array([False, False]))
    alpha = torch.tensor([1.0, 1.0])
    torch.testing.assert_close(normalizer.scales(alpha), torch.ones(2))
    # task 0 ends both terminated and truncated: no bootstrap (returns 3 + 0.9 * 1 and 1)
    normalizer.observe(np.array([1.0, 1.0]), np.array([True, False]), np.array([True, False]))
    assert normalizer.return_bounds()[0] == pytest.approx(3.9)
    assert np.isnan(normalizer.return_bounds()[1])
    assert float(normalizer.scales(alpha)[1]) == 1.0
    correction = abs(TARGET_ENTROPY) / (2 * (1 - GAMMA))
    assert float(normalizer.scales(alpha)[0]) == pytest.approx(V_MAX / (3.9 + correction))


@pytest.mark.parametrize("split", [3, 33])
def test_state_round_trip_in_the_middle_of_episodes_continues_identically(split):
    trace = simulate(seed=1, steps=80)
    first = RewardNormalizer(3, GAMMA, V_MAX, TARGET_ENTROPY)
    feed(first, trace[:split])
    assert any(first.episode_rewards)  # unfinished episodes are part of the state
    saved = copy.deepcopy(first.state_dict())
    second = RewardNormalizer(3, GAMMA, V_MAX, TARGET_ENTROPY)
    second.load_state_dict(saved)
    # shortly after the split mostly the episodes cut by it have ended; then all the rest
    for start, end in ((split, split + 5), (split + 5, len(trace))):
        feed(first, trace[start:end])
        feed(second, trace[start:end])
        np.testing.assert_array_equal(first.return_bounds(), second.return_bounds())
        np.testing.assert_allclose(
            second.return_bounds(), oracle_bounds(trace[:end], 3), rtol=1e-10
        )
    with pytest.raises(ValueError, match="holds 3 tasks, expected 2"):
        RewardNormalizer(2, GAMMA, V_MAX, TARGET_ENTROPY).load_state_dict(saved)
