"""Success-rate evaluation of a multi-task policy, following metaworld's own protocol.

Protocol (that of ``metaworld.evaluation.evaluation``, which a test runs side by side):
every task runs episodes with deterministic actions (``policy.eval_action``) and with
termination on success switched on, until each task has ``episodes_per_task`` finished
episodes; the first ``episodes_per_task`` episodes of each task count. An episode is a
success if ``info["success"]`` was 1 at any step of it. The env's termination setting is
restored afterwards. Use a separate env for evaluation so that training episodes and RNG
streams are not disturbed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from envs.multitask_env import MultiTaskEnv


class Policy(Protocol):
    """metaworld's agent protocol (``metaworld.evaluation.Agent``)."""

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions [T, A] for observations [T, obs_dim]."""

    def reset(self, env_mask: np.ndarray) -> None:
        """Forget per-episode state where ``env_mask`` [T] (bool) is True."""


@dataclass
class EvaluationResult:
    """Outcome of :func:`evaluate`; per-task entries are keyed by task name.

    Attributes:
        success_rate: share of successful episodes per task, in [0, 1].
        mean_success_rate: mean of ``success_rate`` over tasks.
        mean_return: mean undiscounted return over all counted episodes.
        returns: return of each counted episode per task (``episodes_per_task`` each).
        episode_lengths: length of each counted episode per task.
        episode_successes: whether each counted episode succeeded, per task.
        episodes_per_task: episodes counted per task.
    """

    success_rate: dict[str, float]
    mean_success_rate: float
    mean_return: float
    returns: dict[str, list[float]]
    episode_lengths: dict[str, list[int]]
    episode_successes: dict[str, list[bool]]
    episodes_per_task: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return asdict(self)


def _as_numpy_actions(actions: Any) -> np.ndarray:
    if hasattr(actions, "detach"):  # a torch tensor, possibly on GPU
        actions = actions.detach().cpu().numpy()
    return np.asarray(actions, dtype=np.float32)


def evaluate(
    policy: Policy,
    env: MultiTaskEnv,
    episodes_per_task: int = 50,
    seed: int | None = None,
    terminate_on_success: bool = True,
) -> EvaluationResult:
    """Run ``policy`` on every task of ``env`` and measure per-task success.

    Args:
        policy: implements ``eval_action(obs [T, obs_dim]) -> actions [T, A]`` and
            ``reset(mask [T] bool)`` (metaworld's agent protocol).
        env: a :class:`MultiTaskEnv` reserved for evaluation; it is reset first.
        episodes_per_task: episodes counted per task (metaworld uses 50).
        seed: re-seed ``env`` before the first reset (``None``: continue its RNG streams,
            as metaworld's evaluator does).
        terminate_on_success: end episodes at their first success (metaworld's protocol;
            success rates are the same either way, returns and lengths are not).

    Raises:
        ValueError: ``episodes_per_task`` < 1 or actions of the wrong shape / non-finite.
    """
    if isinstance(episodes_per_task, bool) or not isinstance(episodes_per_task, int):
        raise ValueError(f"episodes_per_task must be an int >= 1, got {episodes_per_task!r}")
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    num_tasks = env.num_tasks
    returns: list[list[float]] = [[] for _ in range(num_tasks)]
    lengths: list[list[int]] = [[] for _ in range(num_tasks)]
    successes: list[list[bool]] = [[] for _ in range(num_tasks)]
    previous_setting = env.terminate_on_success
    env.set_terminate_on_success(terminate_on_success)
    try:
        obs = env.reset(seed=seed)
        policy.reset(np.ones(num_tasks, dtype=bool))
        while min(len(r) for r in returns) < episodes_per_task:
            result = env.step(_as_numpy_actions(policy.eval_action(obs)))
            done = result.terminated | result.truncated
            policy.reset(done)
            for t in np.flatnonzero(done):
                if len(returns[t]) < episodes_per_task:
                    returns[t].append(float(result.infos["episode_return"][t]))
                    lengths[t].append(int(result.infos["episode_length"][t]))
                    successes[t].append(bool(result.infos["episode_success"][t]))
            obs = result.obs
    finally:
        env.set_terminate_on_success(previous_setting)
    names = env.task_names
    success_rate = {name: float(np.mean(successes[t])) for t, name in enumerate(names)}
    return EvaluationResult(
        success_rate=success_rate,
        mean_success_rate=float(np.mean(list(success_rate.values()))),
        mean_return=float(np.mean(returns)),
        returns={name: returns[t] for t, name in enumerate(names)},
        episode_lengths={name: lengths[t] for t, name in enumerate(names)},
        episode_successes={name: successes[t] for t, name in enumerate(names)},
        episodes_per_task=episodes_per_task,
    )
