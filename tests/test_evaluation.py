"""Our evaluator against metaworld's own ``metaworld.evaluation.evaluation``."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from metaworld.evaluation import evaluation as metaworld_evaluation
from metaworld.policies import ENV_POLICY_MAP

from envs import EvaluationResult, evaluate, make_multitask_env
from envs.tasks import make_env_factories, resolve_task_set

# Reach succeeds in ~37-50 steps depending on the goal, the button press rarely within 45:
# a mix of successes and failures at varied episode lengths.
TASKS = ["reach-v3", "button-press-topdown-v3"]
SEED = 5
EPISODE = 45
EPISODES = 5

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class ScriptedPolicy:
    """Deterministic per-task expert (metaworld's scripted policies) on float32 obs."""

    def __init__(self, task_names: list[str]):
        self.experts = [ENV_POLICY_MAP[name]() for name in task_names]
        self.reset_calls: list[np.ndarray] = []

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        obs = np.asarray(observations, dtype=np.float32).astype(np.float64)
        return np.stack([e.get_action(o[:39]) for e, o in zip(self.experts, obs, strict=True)])

    def reset(self, env_mask: np.ndarray) -> None:
        self.reset_calls.append(np.array(env_mask, dtype=bool))


class TorchPolicy(ScriptedPolicy):
    def eval_action(self, observations):
        return torch.as_tensor(super().eval_action(observations))


@pytest.fixture(scope="module")
def env():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        environment = make_multitask_env(TASKS, seed=SEED, max_episode_steps=EPISODE)
    yield environment
    environment.close()


@pytest.fixture(scope="module")
def metaworld_envs():
    """The same sub-envs in a plain gymnasium vector env with metaworld's autoreset mode.

    (tests/test_runner.py checks these sub-envs against ``gymnasium.make_vec``.)
    """
    factories = make_env_factories(resolve_task_set(TASKS, SEED), SEED, EPISODE, "v2", False)
    vec = gym.vector.SyncVectorEnv(factories, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    yield vec
    vec.close()


def test_agrees_with_metaworld_evaluation(env, metaworld_envs):
    ours_policy, theirs_policy = ScriptedPolicy(TASKS), ScriptedPolicy(TASKS)
    ours = evaluate(ours_policy, env, episodes_per_task=EPISODES, seed=SEED)
    mean_success, mean_return, success_rate, returns = metaworld_evaluation(
        theirs_policy, metaworld_envs, EPISODES
    )
    assert ours.success_rate == pytest.approx(success_rate, abs=0)
    assert ours.mean_success_rate == pytest.approx(mean_success, rel=1e-12)
    assert ours.mean_return == pytest.approx(mean_return, rel=1e-9)
    for name in TASKS:
        np.testing.assert_allclose(ours.returns[name], returns[name], rtol=1e-9)
    # The agent protocol was driven identically (reset masks at every step).
    assert len(ours_policy.reset_calls) == len(theirs_policy.reset_calls)
    for a, b in zip(ours_policy.reset_calls, theirs_policy.reset_calls, strict=True):
        np.testing.assert_array_equal(a, b)
    # The check means something: successes and failures, episodes of different lengths.
    assert 0.0 < ours.mean_success_rate < 1.0
    assert len({length for lengths in ours.episode_lengths.values() for length in lengths}) > 2


def test_result_is_consistent_with_its_episodes(env):
    result = evaluate(ScriptedPolicy(TASKS), env, episodes_per_task=EPISODES, seed=SEED)
    assert isinstance(result, EvaluationResult) and result.episodes_per_task == EPISODES
    for name in TASKS:
        successes = result.episode_successes[name]
        lengths = result.episode_lengths[name]
        assert len(successes) == len(lengths) == len(result.returns[name]) == EPISODES
        assert result.success_rate[name] == np.mean(successes)
        # With termination on success, an episode shorter than the limit ended in success.
        for succeeded, length in zip(successes, lengths, strict=True):
            assert 1 <= length <= EPISODE
            if length < EPISODE:
                assert succeeded
    all_returns = [r for name in TASKS for r in result.returns[name]]
    assert result.mean_return == pytest.approx(np.mean(all_returns))
    assert result.mean_success_rate == pytest.approx(np.mean(list(result.success_rate.values())))
    assert set(result.to_dict()) >= {"success_rate", "mean_success_rate", "mean_return"}


def test_success_is_counted_if_ever_reached(env):
    """Without termination episodes run to the limit, yet count the same successes."""
    stopping = evaluate(ScriptedPolicy(TASKS), env, episodes_per_task=EPISODES, seed=SEED)
    assert env.terminate_on_success is False
    running = evaluate(
        TorchPolicy(TASKS),
        env,
        episodes_per_task=EPISODES,
        seed=SEED,
        terminate_on_success=False,
    )
    assert running.success_rate == stopping.success_rate
    assert all(length == EPISODE for ls in running.episode_lengths.values() for length in ls)
    assert env.terminate_on_success is False


def test_bad_arguments(env):
    with pytest.raises(ValueError, match="episodes_per_task"):
        evaluate(ScriptedPolicy(TASKS), env, episodes_per_task=0)

    class WrongShape(ScriptedPolicy):
        def eval_action(self, observations):
            return np.zeros((1, 4))

    with pytest.raises(ValueError, match="shape"):
        evaluate(WrongShape(TASKS), env, episodes_per_task=1)
    assert env.terminate_on_success is False  # restored after the failure
