"""The vectorized multi-task Meta-World environment the agents train on: one sub-env per task.

``make_multitask_env("MT10")`` gives a :class:`MultiTaskEnv` whose row ``t`` of every array
is task ``t`` (``env.task_names[t]``). A step returns both the observation to act on next
(the reset observation where an episode just ended) and the true next observation (the
final one, for the replay buffer), with time-limit truncation kept apart from termination.

Checkpoints (``state_dict`` / ``load_state_dict``): the env records, for every sub-env, the
metaworld RNG checkpoint taken *just before* its current episode was reset. Restoring it
and resetting replays that reset exactly (same goal variant, same initial state, same RNG
state afterwards). Resuming is therefore exact when the checkpoint is taken at an episode
boundary (``env.at_episode_boundary``: every sub-env is at step 0 of its episode). With
``terminate_on_success=False`` every task's episode ends after exactly
``max_episode_steps`` steps, so this holds after every multiple of ``max_episode_steps``
steps since ``reset``; a checkpoint taken mid-episode restarts the unfinished episodes from
their first step (with a warning).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from envs.tasks import TaskSet, make_env_factories, resolve_task_set
from envs.vector_backends import ProcessPoolBackend, SyncBackend

VECTOR_STRATEGIES = ("sync", "async")
STATE_VERSION = 1


class StepResult(NamedTuple):
    """What one vectorized step returns; every array has the task axis T first.

    Attributes:
        obs: [T, obs_dim] float32, the observation to act on next (the first observation
            of a new episode where ``terminated | truncated``).
        next_obs: [T, obs_dim] float32, the observation the action led to (the final
            observation where an episode ended); store this one in the replay buffer.
        rewards: [T] float32.
        terminated: [T] bool, a true terminal state (only with ``terminate_on_success``).
        truncated: [T] bool, the time limit was reached (the value still bootstraps).
        success: [T] bool, ``info["success"]`` of this step.
        infos: dict of [T] arrays: metaworld's per-step info (``success``,
            ``near_object``, ``grasp_success``, ``grasp_reward``, ``in_place_reward``,
            ``obj_to_target``, ``unscaled_reward``) plus, for episodes that ended at this
            step, ``episode_return`` (float64, NaN elsewhere), ``episode_length`` (int, 0
            elsewhere) and ``episode_success`` (bool: ``info["success"]`` was ever 1).
    """

    obs: np.ndarray
    next_obs: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray
    infos: dict[str, np.ndarray]


class MultiTaskEnv:
    """Vectorized Meta-World multi-task environment (build it with :func:`make_multitask_env`).

    Attributes:
        task_names: task of each row, in the stable order of the benchmark or list.
        num_tasks: T.
        obs_dim: observation size including the T-dim one-hot task id (39 + T).
        action_dim: A (4 for Meta-World).
        benchmark, seed, max_episode_steps, reward_version, vector_strategy: as built.
    """

    def __init__(
        self,
        task_set: TaskSet,
        *,
        seed: int,
        max_episode_steps: int,
        reward_version: str,
        terminate_on_success: bool,
        vector_strategy: str,
        num_workers: int | None,
        start_method: str,
    ):
        if vector_strategy not in VECTOR_STRATEGIES:
            raise ValueError(
                f"unknown vector_strategy {vector_strategy!r}; choose from: "
                f"{', '.join(VECTOR_STRATEGIES)}"
            )
        factories = make_env_factories(
            task_set, seed, max_episode_steps, reward_version, terminate_on_success
        )
        self.benchmark = task_set.benchmark
        self.task_names = list(task_set.task_names)
        self.num_tasks = task_set.num_tasks
        self.seed = seed
        self.max_episode_steps = max_episode_steps
        self.reward_version = reward_version
        self.vector_strategy = vector_strategy
        self._env_seeds = np.asarray(task_set.env_seeds, dtype=np.int64)
        self._terminate_on_success = bool(terminate_on_success)
        if vector_strategy == "sync":
            self._backend: SyncBackend | ProcessPoolBackend = SyncBackend(factories)
            self.num_workers = 0
        else:
            workers = num_workers if num_workers is not None else (os.cpu_count() or 1)
            self._backend = ProcessPoolBackend(factories, workers, start_method)
            self.num_workers = self._backend.num_workers
        obs_space = self._backend.single_observation_space
        act_space = self._backend.single_action_space
        self.obs_dim = int(np.prod(obs_space.shape))
        self.action_dim = int(np.prod(act_space.shape))
        self._action_low = np.asarray(act_space.low, dtype=np.float32)
        self._action_high = np.asarray(act_space.high, dtype=np.float32)
        self._action_rng = np.random.default_rng(seed)
        self._obs: np.ndarray | None = None
        self._episode_start: list[Any] = [None] * self.num_tasks
        self._episode_steps = np.zeros(self.num_tasks, dtype=np.int64)
        self._episode_returns = np.zeros(self.num_tasks, dtype=np.float64)
        self._episode_success = np.zeros(self.num_tasks, dtype=bool)
        self._pending = False
        self._closed = False

    # ------------------------------------------------------------------ properties
    @property
    def terminate_on_success(self) -> bool:
        """Whether an episode terminates at its first success (metaworld's evaluation mode)."""
        return self._terminate_on_success

    def set_terminate_on_success(self, on: bool) -> None:
        """Switch termination on success for every sub-env (takes effect from the next step)."""
        self._backend.call("toggle_terminate_on_success", [(bool(on),)] * self.num_tasks)
        self._terminate_on_success = bool(on)

    @property
    def episode_steps(self) -> np.ndarray:
        """[T] int, steps taken in each task's current episode."""
        return self._episode_steps.copy()

    @property
    def at_episode_boundary(self) -> bool:
        """True when every sub-env is at step 0 of an episode (an exact checkpoint point)."""
        return self._obs is not None and not self._episode_steps.any()

    # ------------------------------------------------------------------ stepping
    def _reset_where(self, mask: np.ndarray) -> None:
        """Record each masked sub-env's RNG checkpoint, then reset it (writes self._obs rows)."""
        indices = np.flatnonzero(mask).tolist()
        for index, checkpoint in zip(
            indices, self._backend.call("get_checkpoint", indices=indices), strict=True
        ):
            self._episode_start[index] = checkpoint
        reset_obs = self._backend.reset(mask)
        if self._obs is None:
            self._obs = np.zeros((self.num_tasks, self.obs_dim), dtype=np.float32)
        self._obs[mask] = reset_obs[mask]
        self._episode_steps[mask] = 0
        self._episode_returns[mask] = 0.0
        self._episode_success[mask] = False

    def _check_one_hot(self) -> None:
        one_hot = self._obs[:, self.obs_dim - self.num_tasks :]
        if self.obs_dim <= self.num_tasks or not np.array_equal(
            one_hot, np.eye(self.num_tasks, dtype=np.float32)
        ):
            raise RuntimeError(
                f"observations of {self.task_names} do not end with the one-hot task id "
                f"(last {self.num_tasks} entries: {one_hot.tolist()})"
            )

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start a new episode in every task.

        Args:
            seed: re-seed every sub-env (and :meth:`sample_actions`) first, exactly as a
                fresh env built with this seed is seeded; ``None`` continues the RNG streams.
                The goal variants of a benchmark stay those of the construction seed.

        Returns:
            obs [T, obs_dim] float32; its last T columns are the one-hot task id (checked).
        """
        self._check_idle()
        self._check_open()
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
                raise ValueError(f"seed must be an int or None, got {seed!r}")
            offsets = self._env_seeds - self.seed
            self._backend.call("seed", [(int(seed + o),) for o in offsets])
            self._action_rng = np.random.default_rng(int(seed))
        self._reset_where(np.ones(self.num_tasks, dtype=bool))
        self._check_one_hot()
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        """Apply one action per task and reset the tasks whose episode ended.

        Args:
            actions: [T, A] array-like (numpy or a CPU tensor), finite.
        """
        self.step_async(actions)
        return self.step_wait()

    def worker_cpu_time_s(self) -> float:
        """CPU seconds used so far by this env's worker processes (0 when the sub-envs run
        in this process, whose own CPU time ``time.process_time`` already counts)."""
        self._check_open()
        self._check_idle()
        return self._backend.worker_cpu_time_s()

    @property
    def step_pending(self) -> bool:
        """True between :meth:`step_async` and :meth:`step_wait`."""
        return self._pending

    def step_async(self, actions: np.ndarray) -> None:
        """Start a step and return at once; :meth:`step_wait` gives its :class:`StepResult`.

        With ``vector_strategy="async"`` the worker processes step while this process does
        something else (the trainer's gradient update); with ``"sync"`` the step runs inside
        :meth:`step_wait`. ``step_async`` + ``step_wait`` equals :meth:`step` exactly.
        """
        self._check_open()
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        if self._pending:
            raise RuntimeError("a step is already under way: call step_wait() first")
        self._backend.step_send(self._checked_actions(actions))
        self._pending = True

    def _checked_actions(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num_tasks, self.action_dim):
            raise ValueError(
                f"actions must have shape [T, A] = {[self.num_tasks, self.action_dim]}, "
                f"got {list(actions.shape)}"
            )
        if not np.isfinite(actions).all():
            bad = sorted({self.task_names[t] for t in np.argwhere(~np.isfinite(actions))[:, 0]})
            raise ValueError(f"actions contain NaN or inf for tasks {bad}")
        return actions

    def step_wait(self) -> StepResult:
        """Finish the step started by :meth:`step_async` (see :meth:`step`)."""
        self._check_open()
        if not self._pending:
            raise RuntimeError("no step under way: call step_async(actions) first")
        self._pending = False
        next_obs, rewards, terminated, truncated, infos = self._backend.step_receive()
        success = infos.get("success", np.zeros(self.num_tasks)) > 0
        self._episode_steps += 1
        self._episode_returns += rewards  # float64, as metaworld's episode statistics
        self._episode_success |= success
        done = terminated | truncated
        infos["episode_return"] = np.where(done, self._episode_returns, np.nan)
        infos["episode_length"] = np.where(done, self._episode_steps, 0)
        infos["episode_success"] = done & self._episode_success
        self._obs = next_obs.copy()
        if done.any():
            self._reset_where(done)
        return StepResult(
            obs=self._obs.copy(),
            next_obs=next_obs,
            rewards=rewards.astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            success=success,
            infos=infos,
        )

    def sample_actions(self) -> np.ndarray:
        """Uniform random actions [T, A] float32 from the env's own seeded generator."""
        return self._action_rng.uniform(
            self._action_low, self._action_high, size=(self.num_tasks, self.action_dim)
        ).astype(np.float32)

    # ------------------------------------------------------------------ checkpoints
    def _meta(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "task_names": list(self.task_names),
            "seed": self.seed,
            "max_episode_steps": self.max_episode_steps,
            "reward_version": self.reward_version,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: per-env RNG checkpoints at episode start and more.

        Exact when :attr:`at_episode_boundary` is True (see the module docstring).
        """
        self._check_idle()
        self._check_open()
        if self._obs is None:
            raise RuntimeError("call reset() before state_dict(): there is no episode yet")
        return {
            "version": STATE_VERSION,
            "meta": self._meta(),
            "episode_start_checkpoints": list(self._episode_start),
            "episode_steps": self._episode_steps.copy(),
            "terminate_on_success": self._terminate_on_success,
            "action_rng": self._action_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> np.ndarray:
        """Restore a :meth:`state_dict` and replay the resets it recorded.

        Returns:
            obs [T, obs_dim] to act on next (identical to the one the saved env held when
            the checkpoint was taken at an episode boundary).

        Raises:
            ValueError: the state is from another task set, seed, episode length or reward
                version, or is not a MultiTaskEnv state.
        """
        self._check_idle()
        self._check_open()
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(
                f"not a MultiTaskEnv state (version {STATE_VERSION}); "
                f"got keys {sorted(state) if isinstance(state, dict) else type(state).__name__}"
            )
        for key, value in self._meta().items():
            if state["meta"].get(key) != value:
                raise ValueError(
                    f"env state is incompatible: {key} is {state['meta'].get(key)!r} "
                    f"in the state, {value!r} here"
                )
        steps = np.asarray(state["episode_steps"])
        if steps.any():
            warnings.warn(
                f"env state was saved mid-episode (steps {steps.tolist()}); those episodes "
                "restart from their first step. Save at env.at_episode_boundary for exact resume.",
                stacklevel=2,
            )
        checkpoints = list(state["episode_start_checkpoints"])
        self._backend.call("load_checkpoint", [(checkpoints,)] * self.num_tasks)
        self.set_terminate_on_success(state["terminate_on_success"])
        self._reset_where(np.ones(self.num_tasks, dtype=bool))
        self._check_one_hot()
        self._action_rng.bit_generator.state = state["action_rng"]
        return self._obs.copy()

    # ------------------------------------------------------------------ lifetime
    def _check_idle(self) -> None:
        if self._pending:
            raise RuntimeError(
                "a step is under way (step_async without step_wait); wait for it first"
            )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this MultiTaskEnv is closed")

    def close(self) -> None:
        """Release the sub-environments and worker processes (safe to call twice)."""
        if not self._closed:
            self._closed = True
            if self._pending:  # collect the step in flight so the workers' pipes are drained
                self._pending = False
                try:
                    self._backend.step_receive()
                except RuntimeError:
                    pass  # a dead worker: close() below cleans up
            self._backend.close()

    def __enter__(self) -> MultiTaskEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"MultiTaskEnv({self.benchmark}, tasks={self.num_tasks}, obs_dim={self.obs_dim}, "
            f"action_dim={self.action_dim}, {self.vector_strategy}, seed={self.seed})"
        )


def make_multitask_env(
    benchmark: str | Sequence[str] = "MT10",
    vector_strategy: Literal["sync", "async"] = "sync",
    seed: int = 0,
    max_episode_steps: int = 500,
    reward_version: Literal["v1", "v2"] = "v2",
    terminate_on_success: bool = False,
    num_workers: int | None = None,
    start_method: str = "forkserver",
) -> MultiTaskEnv:
    """Build a vectorized multi-task Meta-World environment (one sub-env per task).

    Args:
        benchmark: ``"MT10"`` (default), ``"MT25"``, ``"MT50"``, ``"MT1:<task>"`` (e.g.
            ``"MT1:reach-v3"``) or a list of task names (``["reach-v3", "push-v3"]``).
        vector_strategy: ``"sync"`` (all in this process) or ``"async"`` (worker processes).
        seed: seeds the goal variants, every sub-env and :meth:`MultiTaskEnv.sample_actions`.
        max_episode_steps: time limit, 1..500 (500 is Meta-World's; 150 the CARE/mtrl protocol).
        reward_version: ``"v2"`` (default) or ``"v1"``.
        terminate_on_success: end an episode at its first success (off for training).
        num_workers: async only; worker processes, default one per CPU core (never more
            than the number of tasks). Each worker steps its share of the tasks in turn.
        start_method: async only; multiprocessing start method (default ``forkserver``).

    Raises:
        ValueError: unknown benchmark/task/strategy/reward version (listing the valid ones)
            or an out-of-range episode length.
    """
    task_set = resolve_task_set(benchmark, seed)
    return MultiTaskEnv(
        task_set,
        seed=seed,
        max_episode_steps=max_episode_steps,
        reward_version=reward_version,
        terminate_on_success=terminate_on_success,
        vector_strategy=vector_strategy,
        num_workers=num_workers,
        start_method=start_method,
    )
