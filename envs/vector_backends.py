"""Vectorized stepping of Meta-World sub-environments, in-process or in a few worker processes.

Sub-environments are the gymnasium envs metaworld builds (see :mod:`envs.tasks`); they are
stepped by a lean loop (:class:`SyncBackend`) that packs one step of all of them into a
single float64 array, with autoreset left to the caller (so it can record the state an
episode started from before resetting it, see :mod:`envs.multitask_env`).

- :class:`SyncBackend`: every sub-environment in this process.
- :class:`ProcessPoolBackend`: the sub-environments split into ``num_workers`` contiguous
  chunks, one worker process per chunk, each running a :class:`SyncBackend` and sending
  back one packed array per step. Using a handful of workers (default: one per CPU core)
  instead of one process per task is what keeps MT50 usable on small machines: 50 MuJoCo
  processes on 2 cores cost several GB of memory and thrash the scheduler. Workers start
  with ``forkserver`` (no fork of a process that already runs torch threads; gymnasium,
  metaworld and mujoco are imported once in the fork server) and ignore SIGINT (the
  parent shuts them down).
"""

from __future__ import annotations

import multiprocessing as mp
import numbers
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

EnvFactory = Callable[[], gym.Env]
StepOutput = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]
InfoLayout = tuple[str, ...]


def unpack_step(packed: np.ndarray, info_keys: InfoLayout, obs_dim: int) -> StepOutput:
    """Split a packed step [k, obs_dim + 3 + n_info] into obs, rewards, flags and infos.

    Returns:
        obs [k, obs_dim] float32, rewards [k] float64, terminated [k] bool,
        truncated [k] bool, infos {key: [k] float64}.
    """
    obs = packed[:, :obs_dim].astype(np.float32)
    rewards = packed[:, obs_dim].copy()
    terminated = packed[:, obs_dim + 1] != 0
    truncated = packed[:, obs_dim + 2] != 0
    infos = {key: packed[:, obs_dim + 3 + i].copy() for i, key in enumerate(info_keys)}
    return obs, rewards, terminated, truncated, infos


class SyncBackend:
    """All sub-environments stepped one after another in this process.

    The per-step info keys are those with scalar numeric values in the first step's info
    of sub-env 0 (for Meta-World: success, near_object, grasp_success, grasp_reward,
    in_place_reward, obj_to_target, unscaled_reward); a key another sub-env lacks reads NaN.

    Args:
        env_fns: one factory per sub-environment.
    """

    def __init__(self, env_fns: Sequence[EnvFactory]):
        self.envs: list[gym.Env] = []
        try:
            for fn in env_fns:
                self.envs.append(fn())
        except BaseException:
            self.close()
            raise
        if not self.envs:
            raise ValueError("SyncBackend needs at least one environment factory")
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.obs_dim = int(np.prod(self.single_observation_space.shape))
        self.info_keys: InfoLayout | None = None
        self._obs = np.zeros((self.num_envs, self.obs_dim), dtype=np.float32)

    def reset(self, mask: np.ndarray) -> np.ndarray:
        """Reset the sub-envs where ``mask`` [k] is True; obs [k, obs_dim] (other rows stale)."""
        for i in np.flatnonzero(mask):
            obs, _ = self.envs[i].reset()
            self._obs[i] = obs
        return self._obs.copy()

    def step_packed(self, actions: np.ndarray) -> tuple[np.ndarray, InfoLayout]:
        """Step every sub-env; one float64 array [k, obs_dim + 3 + n_info] and the info keys."""
        d = self.obs_dim
        packed = None
        for i, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            obs, reward, terminated, truncated, info = env.step(action)
            if self.info_keys is None:
                self.info_keys = tuple(
                    k for k, v in info.items() if isinstance(v, numbers.Number | np.bool_)
                )
            if packed is None:
                packed = np.empty((self.num_envs, d + 3 + len(self.info_keys)))
            packed[i, :d] = obs
            packed[i, d : d + 3] = (reward, terminated, truncated)
            packed[i, d + 3 :] = [info.get(k, np.nan) for k in self.info_keys]
        return packed, self.info_keys

    def step(self, actions: np.ndarray) -> StepOutput:
        """Step every sub-env: obs [k, o], rewards [k], terminated [k], truncated [k], infos."""
        return unpack_step(*self.step_packed(actions), self.obs_dim)

    def step_send(self, actions: np.ndarray) -> None:
        """First half of :meth:`step` (in this process nothing runs in the background: the
        step happens in :meth:`step_receive`)."""
        self._pending_actions = np.array(actions, copy=True)

    def step_receive(self) -> StepOutput:
        """Second half of :meth:`step`: the outputs for the actions given to :meth:`step_send`."""
        actions, self._pending_actions = self._pending_actions, None
        return self.step(actions)

    def call(
        self,
        name: str,
        args_per_env: Sequence[tuple] | None = None,
        indices: Sequence[int] | None = None,
    ) -> list[Any]:
        """Call (or read) attribute ``name`` of the chosen sub-environments.

        Args:
            name: method or attribute name, looked up through the wrapper stack.
            args_per_env: positional arguments for each chosen env (default: none).
            indices: which sub-environments (default: all), in this order.
        """
        indices = list(range(self.num_envs)) if indices is None else list(indices)
        if args_per_env is None:
            args_per_env = [()] * len(indices)
        results = []
        for index, args in zip(indices, args_per_env, strict=True):
            target = self.envs[index].get_wrapper_attr(name)
            results.append(target(*args) if callable(target) else target)
        return results

    def worker_cpu_time_s(self) -> float:
        """CPU seconds used by worker processes: none here (the sub-envs run in this process)."""
        return 0.0

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


def _worker_main(conn: Any, env_fns: Sequence[EnvFactory]) -> None:
    """Worker process: build a :class:`SyncBackend` over ``env_fns`` and serve commands."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        backend = SyncBackend(env_fns)
        conn.send(("ok", (backend.single_observation_space, backend.single_action_space)))
    except BaseException:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc()))
        conn.close()
        return
    while True:
        try:
            command, payload = conn.recv()
        except (EOFError, OSError):  # parent went away
            break
        try:
            if command == "step":
                result = backend.step_packed(payload)
            elif command == "reset":
                result = backend.reset(payload)
            elif command == "call":
                result = backend.call(*payload)
            elif command == "cpu_time":
                result = time.process_time()
            elif command == "close":
                backend.close()
                conn.send(("ok", None))
                break
            else:
                raise ValueError(f"unknown worker command {command!r}")
            conn.send(("ok", result))
        except BaseException:  # noqa: BLE001 - reported to the parent
            conn.send(("error", traceback.format_exc()))
    conn.close()


class ProcessPoolBackend:
    """Sub-environments split over a few worker processes, stepped in parallel.

    Args:
        env_fns: one picklable factory per sub-environment.
        num_workers: number of worker processes (capped at the number of sub-envs).
        start_method: multiprocessing start method: ``forkserver`` (default), ``spawn``
            or ``fork``.
    """

    def __init__(
        self, env_fns: Sequence[EnvFactory], num_workers: int, start_method: str = "forkserver"
    ):
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
        methods = mp.get_all_start_methods()
        if start_method not in methods:
            raise ValueError(
                f"unknown start_method {start_method!r}; choose from: {', '.join(methods)}"
            )
        self.num_envs = len(env_fns)
        num_workers = min(num_workers, self.num_envs)
        self.chunks = [c.tolist() for c in np.array_split(np.arange(self.num_envs), num_workers)]
        context = mp.get_context(start_method)
        if start_method == "forkserver":
            # Import gymnasium/metaworld/mujoco once in the fork server rather than in every
            # worker (no effect if this process's fork server is already running).
            context.set_forkserver_preload(["envs.tasks", "envs.vector_backends"])
        self._conns: list[Any] = []
        self._processes: list[Any] = []
        self._closed = False
        try:
            for chunk in self.chunks:
                parent_conn, child_conn = context.Pipe()
                process = context.Process(
                    target=_worker_main,
                    args=(child_conn, [env_fns[i] for i in chunk]),
                    name=f"mtrl-env-worker-{len(self._processes)}",
                    daemon=True,
                )
                process.start()
                child_conn.close()
                self._conns.append(parent_conn)
                self._processes.append(process)
            spaces = self._receive_all(range(len(self.chunks)))
        except BaseException:
            self.close()
            raise
        self.single_observation_space, self.single_action_space = spaces[0]

    @property
    def num_workers(self) -> int:
        return len(self.chunks)

    def _receive(self, worker: int) -> Any:
        try:
            status, payload = self._conns[worker].recv()
        except (EOFError, OSError):
            process = self._processes[worker]
            process.join(timeout=1.0)
            raise RuntimeError(
                f"env worker {worker} (sub-envs {self.chunks[worker]}) died "
                f"with exit code {process.exitcode}"
            ) from None
        if status == "error":
            raise RuntimeError(
                f"env worker {worker} (sub-envs {self.chunks[worker]}) failed:\n{payload}"
            )
        return payload

    def _receive_all(self, workers: Sequence[int] | range) -> list[Any]:
        results, first_error = [], None
        for worker in workers:  # drain every pipe even after an error
            try:
                results.append(self._receive(worker))
            except RuntimeError as error:
                first_error = first_error or error
                results.append(None)
        if first_error is not None:
            raise first_error
        return results

    def _send(self, worker: int, command: str, payload: Any) -> None:
        if self._closed:
            raise RuntimeError("the env workers are closed")
        try:
            self._conns[worker].send((command, payload))
        except (BrokenPipeError, OSError):
            raise RuntimeError(
                f"env worker {worker} (sub-envs {self.chunks[worker]}) is gone "
                f"(exit code {self._processes[worker].exitcode})"
            ) from None

    def reset(self, mask: np.ndarray) -> np.ndarray:
        """Reset the sub-environments where ``mask`` [k] is True; obs [k, obs_dim] (others zero)."""
        mask = np.asarray(mask, dtype=bool)
        workers = [w for w, chunk in enumerate(self.chunks) if mask[chunk].any()]
        for w in workers:
            self._send(w, "reset", mask[self.chunks[w]])
        obs = np.zeros((self.num_envs, *self.single_observation_space.shape), np.float32)
        for w, chunk_obs in zip(workers, self._receive_all(workers), strict=True):
            obs[self.chunks[w]] = chunk_obs
        return obs

    def step(self, actions: np.ndarray) -> StepOutput:
        """Step every sub-environment in parallel (same outputs as :meth:`SyncBackend.step`)."""
        self.step_send(actions)
        return self.step_receive()

    def step_send(self, actions: np.ndarray) -> None:
        """Hand every worker its actions and return at once: the workers step while this
        process does other work (e.g. a gradient update) until :meth:`step_receive`."""
        for w, chunk in enumerate(self.chunks):
            self._send(w, "step", actions[chunk[0] : chunk[-1] + 1])

    def step_receive(self) -> StepOutput:
        """Wait for the step started by :meth:`step_send`; outputs as :meth:`step`."""
        obs_dim = int(np.prod(self.single_observation_space.shape))
        parts = [
            unpack_step(packed, keys, obs_dim)
            for packed, keys in self._receive_all(range(len(self.chunks)))
        ]
        obs, rewards, terminated, truncated = (
            np.concatenate([p[i] for p in parts]) for i in range(4)
        )
        shared_keys = set.intersection(*(set(p[4]) for p in parts))
        infos = {k: np.concatenate([p[4][k] for p in parts]) for k in sorted(shared_keys)}
        return obs, rewards, terminated, truncated, infos

    def call(
        self,
        name: str,
        args_per_env: Sequence[tuple] | None = None,
        indices: Sequence[int] | None = None,
    ) -> list[Any]:
        """Same as :meth:`SyncBackend.call`, dispatched to the workers holding ``indices``."""
        indices = list(range(self.num_envs)) if indices is None else list(indices)
        if args_per_env is None:
            args_per_env = [()] * len(indices)
        args_of = dict(zip(indices, args_per_env, strict=True))
        requests = []
        for w, chunk in enumerate(self.chunks):
            local = [(i - chunk[0], i) for i in indices if i in chunk]
            if local:
                self._send(w, "call", (name, [args_of[i] for _, i in local], [j for j, _ in local]))
                requests.append((w, [i for _, i in local]))
        by_index = {}
        answers = self._receive_all([w for w, _ in requests])
        for (_, global_indices), answer in zip(requests, answers, strict=True):
            by_index.update(zip(global_indices, answer, strict=True))
        return [by_index[i] for i in indices]

    def worker_cpu_time_s(self) -> float:
        """CPU seconds (user + system) the worker processes have used since they started,
        summed over workers. Call it between steps, not while one is under way."""
        workers = range(len(self.chunks))
        for w in workers:
            self._send(w, "cpu_time", None)
        return float(sum(self._receive_all(workers)))

    def close(self) -> None:
        """Stop the workers (politely, then by force after a timeout). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for w, conn in enumerate(self._conns):
            if self._processes[w].is_alive():
                try:
                    conn.send(("close", None))
                except (BrokenPipeError, OSError):
                    pass
        for w, process in enumerate(self._processes):
            try:
                if self._conns[w].poll(5.0):
                    self._conns[w].recv()
            except (EOFError, OSError):
                pass
            process.join(timeout=5.0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=1.0)
            self._conns[w].close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
