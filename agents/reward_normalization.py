"""Per-task reward normalisation of BRC (Nauman et al. 2025, arXiv 2505.23150, Eq. 2-3).

Every update scales task i's replayed rewards by

    c_i = V_max / (G_i + lambda_i)

so that every task's soft returns span about [-V_max, V_max], the range of the categorical
critic's support, whatever the task's reward scale:

- G_i: the largest absolute discounted return seen so far on task i: over all finished
  training episodes and every step t of each, |sum_k gamma^k r_{t+k}| (plus a bootstrap at a
  time-limit truncation, below). Updated when an episode ends, so it only grows.
- lambda_i = alpha_i |H| / (2 (1 - gamma)): the entropy correction for the soft value's
  entropy bonus, with alpha_i task i's current temperature and H the SAC target entropy.

What BRC's code does and where we differ (naumix/BiggerRegularizedCategorical,
``jaxrl/normalizer.py``, ``RewardNormalizer``, and ``train.py``):

- Returns of an episode are computed backwards, v_t = r_t + gamma v_{t+1}; an episode cut by
  the time limit starts from the bootstrap v_n = mean(r) / (1 - gamma) (the episode's mean
  reward forever), a terminated one from 0. G_i = max over all v_t of max(v_t, -v_t) (BRC keeps
  the running maximum and minimum of v_t and takes the larger magnitude). Same here; an episode
  that is both terminated and truncated counts as terminated (BRC bootstraps it).
- BRC's correction is lambda = -alpha H / (2 (1 - gamma)) with its target entropy H = -|A| / 2
  and one temperature for all tasks; the paper writes lambda_i = alpha H_i / (1 - gamma) with
  H_i the policy's empirical entropy. We take the code's form with the magnitude |H| of our
  target entropy (default -|A|) and each task's own temperature.
- Before a task's first episode has ended, BRC's divisor is infinite (all its rewards become
  0; its warm-up of 5000 steps always holds finished episodes). We leave such a task's rewards
  unscaled (c_i = 1), and likewise where G_i + lambda_i <= 0 (all-zero rewards and H = 0).

The running state (the two bounds and the rewards of each task's unfinished episode) is in
:meth:`RewardNormalizer.state_dict`, so a resumed run scales exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

BatchT = TypeVar("BatchT")

STATE_VERSION = 1


def episode_returns(rewards: np.ndarray, gamma: float, truncated: bool) -> np.ndarray:
    """Discounted returns v_t [n] of one episode's rewards [n] (float64), v_t = r_t + gamma
    v_{t+1}, starting from mean(r) / (1 - gamma) after a truncation and from 0 otherwise."""
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.empty_like(rewards)
    following = float(rewards.mean()) / (1.0 - gamma) if truncated and rewards.size else 0.0
    for t in range(rewards.size - 1, -1, -1):
        following = float(rewards[t]) + gamma * following
        values[t] = following
    return values


class RewardNormalizer:
    """Running per-task reward scales (module docstring).

    Args:
        num_tasks: T.
        gamma: discount factor (< 1).
        v_max: the return each task is scaled to (the categorical support's bound).
        target_entropy: the SAC target entropy H of the entropy correction.
    """

    def __init__(self, num_tasks: int, gamma: float, v_max: float, target_entropy: float) -> None:
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"reward normalisation needs gamma in [0, 1), got {gamma!r}")
        if not v_max > 0:
            raise ValueError(f"v_max must be > 0, got {v_max!r}")
        self.num_tasks = int(num_tasks)
        self.gamma = float(gamma)
        self.v_max = float(v_max)
        self.correction = abs(float(target_entropy)) / (2.0 * (1.0 - self.gamma))
        """lambda_i / alpha_i."""
        self.max_return = np.full(self.num_tasks, -np.inf)
        """[T] largest discounted return v_t so far."""
        self.min_return = np.full(self.num_tasks, np.inf)
        """[T] smallest discounted return v_t so far."""
        self.episode_rewards: list[list[float]] = [[] for _ in range(self.num_tasks)]
        """Rewards of each task's unfinished episode."""
        self._bounds: Tensor | None = None  # return_bounds() on the device, until one changes

    # -- observing -----------------------------------------------------------------------------
    def observe(self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """One vector env step: rewards, terminated, truncated [T] (raw env values)."""
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        terminated = np.asarray(terminated, dtype=bool).reshape(-1)
        truncated = np.asarray(truncated, dtype=bool).reshape(-1)
        if rewards.shape != (self.num_tasks,):
            raise ValueError(f"rewards must have shape [{self.num_tasks}], got {rewards.shape}")
        for task in range(self.num_tasks):
            self.episode_rewards[task].append(float(rewards[task]))
            if terminated[task] or truncated[task]:
                values = episode_returns(
                    np.asarray(self.episode_rewards[task]),
                    self.gamma,
                    truncated=bool(truncated[task] and not terminated[task]),
                )
                self.max_return[task] = max(self.max_return[task], float(values.max()))
                self.min_return[task] = min(self.min_return[task], float(values.min()))
                self.episode_rewards[task] = []
                self._bounds = None

    def return_bounds(self) -> np.ndarray:
        """G_i [T]: the largest |discounted return| so far (NaN before a first episode ends)."""
        bound = np.maximum(self.max_return, -self.min_return)
        return np.where(np.isfinite(bound), bound, np.nan)

    # -- scaling -------------------------------------------------------------------------------
    def scales(self, alpha: Tensor) -> Tensor:
        """c_i = v_max / (G_i + lambda_i) [T] for temperatures ``alpha`` [T] (its dtype and
        device); 1 where no episode has ended yet or the divisor is not positive."""
        bounds = self._bounds
        if bounds is None or bounds.device != alpha.device or bounds.dtype != alpha.dtype:
            # copied to the device only when an episode has ended since
            bounds = torch.as_tensor(self.return_bounds(), dtype=alpha.dtype).to(alpha.device)
            self._bounds = bounds
        divisor = bounds + alpha * self.correction
        usable = torch.isfinite(divisor) & (divisor > 0)
        return torch.where(usable, self.v_max / divisor.where(usable, 1.0), 1.0)

    def normalize(self, batch: BatchT, alpha: Tensor) -> BatchT:
        """``batch`` (a NamedTuple with ``rewards`` [T, B]) with each task's rewards times c_i."""
        scale = self.scales(alpha).to(batch.rewards.dtype)  # type: ignore[attr-defined]
        return batch._replace(rewards=batch.rewards * scale.unsqueeze(-1))  # type: ignore[attr-defined]

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Bounds and unfinished episodes (plain Python / numpy values)."""
        return {
            "version": STATE_VERSION,
            "max_return": self.max_return.copy(),
            "min_return": self.min_return.copy(),
            "episode_rewards": [list(r) for r in self.episode_rewards],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (``ValueError`` for another number of tasks)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown reward normaliser state version {state.get('version')!r}")
        max_return = np.asarray(state["max_return"], dtype=np.float64)
        if max_return.shape != (self.num_tasks,) or len(state["episode_rewards"]) != len(
            self.episode_rewards
        ):
            raise ValueError(
                f"reward normaliser state holds {max_return.shape[0]} tasks, "
                f"expected {self.num_tasks}"
            )
        self.max_return = max_return.copy()
        self.min_return = np.asarray(state["min_return"], dtype=np.float64).copy()
        self.episode_rewards = [[float(x) for x in r] for r in state["episode_rewards"]]
        self._bounds = None
