"""Runner benchmark: our MT10 runner's env steps/s over raw ``gymnasium.make_vec``, same run.

Both sides step the same pre-drawn random actions for the same number of vector steps, in
interleaved rounds (raw, ours, raw, ours, ...) so that load from other processes hits both
alike. Episodes are 150 steps (the paper protocol) so resets are part of the measurement.
Also reports the replay-buffer memory for 1e6 MT10 transitions (allocated and measured).
"""

from __future__ import annotations

import gc
import os
import time
import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np

EPISODE_STEPS = 150
NUM_TASKS = 10


def _rss_bytes() -> int:
    """Resident memory of this process (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _time_steps(step: Callable[[np.ndarray], object], actions: np.ndarray) -> float:
    start = time.perf_counter()
    for action in actions:
        step(action)
    return time.perf_counter() - start


def _compare(raw: gym.vector.VectorEnv, ours, actions: np.ndarray, rounds: int) -> dict:
    """Interleaved timing of ``raw`` and ``ours`` on the same actions; env steps per second."""
    raw.reset(seed=0)
    ours.reset()
    raw_time = ours_time = 0.0
    for chunk in np.array_split(actions, rounds):
        raw_time += _time_steps(raw.step, chunk)
        ours_time += _time_steps(ours.step, chunk)
    env_steps = actions.shape[0] * actions.shape[1]
    raw_rate, ours_rate = env_steps / raw_time, env_steps / ours_time
    return {
        "raw_env_steps_per_s": raw_rate,
        "ours_env_steps_per_s": ours_rate,
        "ratio": ours_rate / raw_rate,
        "vector_steps": int(actions.shape[0]),
    }


def _buffer_memory() -> dict:
    from envs import MultiTaskReplayBuffer

    gc.collect()
    before = _rss_bytes()
    buffer = MultiTaskReplayBuffer(NUM_TASKS, 39 + NUM_TASKS, 4, capacity=1_000_000)
    for name in buffer.STORAGE_FIELDS:  # touch every page, as a full buffer does
        getattr(buffer, name).fill_(1)
    after = _rss_bytes()
    result = {
        "transitions": buffer.capacity,
        "storage_bytes": buffer.nbytes(),
        "rss_increase_when_full_bytes": after - before,
        "bytes_per_transition": buffer.nbytes() / buffer.capacity,
    }
    del buffer
    gc.collect()
    return result


def run(quick: bool = False) -> dict:
    """Measure sync and async runner throughput ratios and the buffer memory; print a table."""
    from envs import make_multitask_env

    warnings.filterwarnings("ignore", message=".*precision lowered.*")
    vector_steps = 150 if quick else 600
    rounds = 3 if quick else 6
    actions = (
        np.random.default_rng(0)
        .uniform(-1, 1, size=(vector_steps, NUM_TASKS, 4))
        .astype(np.float32)
    )
    cores = os.cpu_count() or 1
    setups = [
        ("sync", "sync", {}),
        (f"async (ours {min(cores, NUM_TASKS)} workers)", "async", {}),
        (f"async (ours {NUM_TASKS} workers)", "async", {"num_workers": NUM_TASKS}),
    ]
    results: dict = {"episode_steps": EPISODE_STEPS, "cpu_count": cores, "setups": {}}
    memory = _buffer_memory()  # first, before envs come and go in this process's heap
    results["replay_buffer_1e6_mt10"] = memory
    print(
        f"replay buffer, 1e6 MT10 transitions: {memory['storage_bytes'] / 1e6:.0f} MB of "
        f"tensors ({memory['bytes_per_transition']:.0f} B/transition), "
        f"process RSS +{memory['rss_increase_when_full_bytes'] / 1e6:.0f} MB when full"
    )
    print(f"MT10, {vector_steps} vector steps x {NUM_TASKS} tasks, {EPISODE_STEPS}-step episodes")
    print(f"{'setup':<28}{'raw steps/s':>14}{'ours steps/s':>14}{'ours/raw':>10}")
    for label, strategy, extra in setups:
        raw = gym.make_vec(
            "Meta-World/MT10",
            vector_strategy=strategy,
            seed=0,
            use_one_hot=True,
            max_episode_steps=EPISODE_STEPS,
        )
        ours = make_multitask_env(
            "MT10", strategy, seed=0, max_episode_steps=EPISODE_STEPS, **extra
        )
        try:
            row = _compare(raw, ours, actions, rounds)
        finally:
            raw.close()
            ours.close()
        results["setups"][label] = row
        print(
            f"{label:<28}{row['raw_env_steps_per_s']:>14.0f}"
            f"{row['ours_env_steps_per_s']:>14.0f}{row['ratio']:>10.3f}"
        )
    return results
