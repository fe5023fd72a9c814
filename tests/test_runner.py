"""Tests of the vectorized multi-task Meta-World runner (envs.multitask_env / vector_backends)."""

from __future__ import annotations

import io
import os
import signal
import time
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs import make_multitask_env
from envs.tasks import all_task_names, make_env_factories, resolve_task_set
from envs.vector_backends import ProcessPoolBackend

TASKS = ["reach-v3", "push-v3", "door-open-v3"]
SEED = 3  # metaworld's custom-task-list entry point treats seed 0 as "unseeded"
EPISODE = 5
RESULT_FIELDS = ("obs", "next_obs", "rewards", "terminated", "truncated", "success")

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")


@pytest.fixture(scope="module")
def env():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        environment = make_multitask_env(TASKS, seed=SEED, max_episode_steps=EPISODE)
    yield environment
    environment.close()


def random_actions(num_steps: int, num_tasks: int = len(TASKS), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (num_steps, num_tasks, 4)).astype(np.float32)


def rollout(environment, actions: np.ndarray) -> list:
    return [environment.step(a) for a in actions]


def assert_same_results(first: list, second: list) -> None:
    assert len(first) == len(second)
    for step, (a, b) in enumerate(zip(first, second, strict=True)):
        for field in RESULT_FIELDS:
            np.testing.assert_array_equal(
                getattr(a, field), getattr(b, field), err_msg=f"{field}@{step}"
            )


def test_matches_gymnasium_make_vec_and_keeps_final_obs(env):
    """Same obs, rewards, flags and final observations as metaworld's registered vector env."""
    raw = gym.make_vec(
        "Meta-World/custom-mt-envs",
        vector_strategy="sync",
        envs_list=TASKS,
        seed=SEED,
        use_one_hot=True,
        max_episode_steps=EPISODE,
    )
    try:
        raw_obs, _ = raw.reset()
        np.testing.assert_array_equal(env.reset(seed=SEED), raw_obs)
        for step, action in enumerate(random_actions(2 * EPISODE + 2)):
            ours = env.step(action)
            raw_obs, raw_rew, raw_term, raw_trunc, raw_info = raw.step(action)
            np.testing.assert_array_equal(ours.obs, raw_obs, err_msg=f"step {step}")
            np.testing.assert_array_equal(ours.rewards, raw_rew.astype(np.float32))
            np.testing.assert_array_equal(ours.terminated, raw_term)
            np.testing.assert_array_equal(ours.truncated, raw_trunc)
            ended = raw_term | raw_trunc
            for t in range(len(TASKS)):
                # Where an episode ended, gymnasium moves the step's info to final_info.
                info = raw_info["final_info"] if ended[t] else raw_info
                assert ours.success[t] == (info["success"][t] > 0)
            for t in np.flatnonzero(ended):
                final = np.asarray(raw_info["final_obs"][t], dtype=np.float32)
                np.testing.assert_array_equal(ours.next_obs[t], final)
            np.testing.assert_array_equal(ours.next_obs[~ended], raw_obs[~ended])
    finally:
        raw.close()


def test_shapes_order_and_one_hot(env):
    assert env.task_names == TASKS
    assert env.num_tasks == 3 and env.action_dim == 4
    assert env.obs_dim == 39 + env.num_tasks
    obs = env.reset()
    assert obs.shape == (3, env.obs_dim) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[:, 39:], np.eye(3))
    result = env.step(env.sample_actions())
    np.testing.assert_array_equal(result.next_obs[:, 39:], np.eye(3))
    assert result.rewards.shape == (3,) and result.rewards.dtype == np.float32


def test_truncation_is_not_termination(env):
    first = env.reset()
    results = rollout(env, random_actions(EPISODE, seed=1))
    for result in results[:-1]:
        assert not result.truncated.any() and not result.terminated.any()
        np.testing.assert_array_equal(result.obs, result.next_obs)
    last = results[-1]
    assert last.truncated.all() and not last.terminated.any()
    np.testing.assert_array_equal(last.infos["episode_length"], [EPISODE] * 3)
    expected_returns = np.sum([r.infos["unscaled_reward"] for r in results], axis=0)
    np.testing.assert_allclose(last.infos["episode_return"], expected_returns, rtol=1e-6)
    # The next observation is the final one of the old episode; obs starts a new episode
    # with a freshly drawn goal variant (goal = entries 36:39).
    assert not np.array_equal(last.obs, last.next_obs)
    assert not np.array_equal(last.obs[:, 36:39], first[:, 36:39])
    assert env.at_episode_boundary


def test_reset_with_seed_reproduces_the_streams(env):
    actions = random_actions(2 * EPISODE, seed=2)
    first = [env.reset(seed=11)], rollout(env, actions)
    second = [env.reset(seed=11)], rollout(env, actions)
    np.testing.assert_array_equal(first[0][0], second[0][0])
    assert_same_results(first[1], second[1])
    env.reset(seed=12)
    other = rollout(env, actions)
    # A different seed draws other goal variants for the second episode.
    assert not np.array_equal(other[EPISODE - 1].obs, first[1][EPISODE - 1].obs)


def test_checkpoint_at_episode_boundary_resumes_exactly(env):
    env.reset(seed=21)
    saved_obs = rollout(env, random_actions(EPISODE, seed=3))[-1].obs
    assert env.at_episode_boundary
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)
    continuation = random_actions(2 * EPISODE + 1, seed=4)
    expected = rollout(env, continuation)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        restored = make_multitask_env(TASKS, seed=SEED, max_episode_steps=EPISODE)
    try:
        restored.reset()  # consume RNG differently from the saved env on purpose
        rollout(restored, random_actions(3, seed=5))
        buffer.seek(0)
        obs = restored.load_state_dict(torch.load(buffer, weights_only=False))
        assert restored.at_episode_boundary
        np.testing.assert_array_equal(obs, saved_obs)
        assert_same_results(expected, rollout(restored, continuation))
    finally:
        restored.close()


def test_mid_episode_checkpoint_warns_and_restarts_episode(env):
    start = env.reset(seed=31)
    rollout(env, random_actions(2, seed=6))
    state = env.state_dict()
    assert not env.at_episode_boundary
    with pytest.warns(UserWarning, match="mid-episode"):
        obs = env.load_state_dict(state)
    np.testing.assert_array_equal(obs, start)


def test_state_from_other_setup_is_rejected(env):
    env.reset()
    state = env.state_dict()
    state["meta"]["task_names"] = ["reach-v3"]
    with pytest.raises(ValueError, match="task_names"):
        env.load_state_dict(state)
    with pytest.raises(ValueError, match="not a MultiTaskEnv state"):
        env.load_state_dict({"foo": 1})


def test_bad_actions_are_rejected(env):
    env.reset()
    with pytest.raises(ValueError, match=r"shape \[T, A\] = \[3, 4\]"):
        env.step(np.zeros((2, 4)))
    bad = np.zeros((3, 4))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="push-v3"):
        env.step(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"benchmark": "MT11"}, "MT10, MT25, MT50"),
        ({"benchmark": "reach-v3"}, "MT1:reach-v3"),
        ({"benchmark": "MT1:reach-v2"}, "did you mean 'reach-v3'"),
        ({"benchmark": ["reach-v3", "pushh-v3"]}, "did you mean 'push-v3'"),
        ({"benchmark": ["reach-v3", "reach-v3"]}, "repeats"),
        ({"benchmark": []}, "empty"),
        ({"vector_strategy": "threads"}, "sync, async"),
        ({"reward_version": "v3"}, "v1, v2"),
        ({"max_episode_steps": 501}, r"\[1, 500\]"),
        ({"seed": 1.5}, "seed must be an int"),
    ],
)
def test_bad_names_list_the_valid_ones(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_multitask_env(**{"benchmark": ["reach-v3"], **kwargs})


def test_unknown_task_message_lists_all_tasks():
    with pytest.raises(ValueError) as info:
        resolve_task_set(["nope-v3"], 0)
    assert all(name in str(info.value) for name in all_task_names())


def test_async_workers_match_sync(env):
    """Three tasks over two worker processes (uneven chunks) give the sync results."""
    actions = random_actions(2 * EPISODE, seed=7)
    env.reset(seed=SEED)
    expected = rollout(env, actions)
    state = env.state_dict()
    after_state = rollout(env, actions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel = make_multitask_env(
            TASKS, "async", seed=SEED, max_episode_steps=EPISODE, num_workers=2
        )
    try:
        assert parallel.num_workers == 2
        np.testing.assert_array_equal(parallel.reset(), env.reset(seed=SEED))
        assert_same_results(expected, rollout(parallel, actions))
        parallel.load_state_dict(state)  # a sync state restores into async workers
        assert_same_results(after_state, rollout(parallel, actions))
    finally:
        parallel.close()
    with pytest.raises(RuntimeError, match="closed"):
        parallel.reset()


def _failing_factory():
    raise ValueError("factory exploded")


def test_worker_errors_are_reported():
    with pytest.raises(RuntimeError, match="factory exploded"):
        ProcessPoolBackend([_failing_factory], num_workers=1)
    factories = make_env_factories(resolve_task_set(["reach-v3"], SEED), SEED, 5, "v2", False)
    backend = ProcessPoolBackend(factories, num_workers=1)
    try:
        backend.reset(np.ones(1, dtype=bool))
        os.kill(backend._processes[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while backend._processes[0].is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(RuntimeError, match="worker 0"):
            backend.step(np.zeros((1, 4), dtype=np.float32))
    finally:
        backend.close()


def _kernel_cpu_seconds(pid: int) -> float:
    """utime + stime of a process as the Linux kernel accounts them (/proc/<pid>/stat)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux's /proc")
def test_worker_cpu_time_is_the_workers_cpu_time_as_the_kernel_counts_it(env):
    """The workers' CPU time (a run's cpu_time_s adds it to its own) equals the kernel's
    count for the worker processes, and grows as they step; in-process sub-envs have none."""
    assert env.worker_cpu_time_s() == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel = make_multitask_env(
            TASKS, "async", seed=SEED, max_episode_steps=EPISODE, num_workers=2
        )
    try:
        pids = [process.pid for process in parallel._backend._processes]
        parallel.reset()
        readings = []
        for _ in range(2):
            rollout(parallel, random_actions(300, seed=1))
            before = sum(_kernel_cpu_seconds(pid) for pid in pids)
            reported = parallel.worker_cpu_time_s()
            after = sum(_kernel_cpu_seconds(pid) for pid in pids)
            # /proc counts whole ticks and splits a precise total by sampling, so it may lag
            # the clock the workers read by a few ticks each (seen: 2 ticks on 2 workers)
            slack = 5 * len(pids) / os.sysconf("SC_CLK_TCK") + 0.02 * after
            assert before - slack <= reported <= after + slack
            readings.append(reported)
        assert readings[1] > readings[0] > 0
        parallel.step_async(parallel.sample_actions())
        with pytest.raises(RuntimeError, match="step is under way"):
            parallel.worker_cpu_time_s()
        parallel.step_wait()
    finally:
        parallel.close()


@pytest.mark.slow
def test_mt50_async_on_few_workers():
    """MT50 with async workers (one per core) builds, steps, resets and closes cleanly."""
    with make_multitask_env("MT50", "async", seed=0, max_episode_steps=3) as mt50:
        assert mt50.num_tasks == 50 and mt50.obs_dim == 89
        assert mt50.num_workers == min(50, os.cpu_count() or 1)
        obs = mt50.reset()
        np.testing.assert_array_equal(obs[:, 39:], np.eye(50))
        for _ in range(4):
            result = mt50.step(mt50.sample_actions())
        assert result.obs.shape == (50, 89) and np.isfinite(result.rewards).all()
        assert mt50.episode_steps.tolist() == [1] * 50


@pytest.mark.slow
def test_mt10_matches_gymnasium_make_vec():
    raw = gym.make_vec("Meta-World/MT10", vector_strategy="sync", seed=0, use_one_hot=True)
    ours = make_multitask_env("MT10", seed=0)
    try:
        assert ours.task_names[:2] == ["reach-v3", "push-v3"]
        np.testing.assert_array_equal(ours.reset(), raw.reset()[0])
        for action in random_actions(5, num_tasks=10):
            np.testing.assert_array_equal(ours.step(action).obs, raw.step(action)[0])
    finally:
        raw.close()
        ours.close()
