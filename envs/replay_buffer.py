"""Per-task replay buffer held in preallocated tensors, sampled as [T, B, ...] batches.

Each of the T tasks owns ``capacity // T`` slots arranged as a ring. One :meth:`add`
writes one transition per task (one vectorized env step) at the same slot for every task;
:meth:`sample` draws ``B`` slots per task independently and uniformly (with replacement)
from the filled part, so a batch always holds exactly B transitions of every task and
per-task losses can be computed with one ``vmap`` over the leading task axis.

Only termination ends bootstrapping: ``dones`` in a batch is ``terminated`` as float;
time-limit truncations are stored (``truncated``) but a truncated transition still
bootstraps from its (final) next observation.

Memory: per transition ``2 * obs_dim * 4 + action_dim * 4 + 4 + 2`` bytes (float32
observations, actions and rewards, bool flags). For MT10 (obs_dim 49, A 4) that is 414 B,
so a 1e6-transition buffer allocates 414 MB (measured by ``mtrl_align.bench.runner``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from mtrl_align.device import resolve_device

STATE_VERSION = 1


class TransitionBatch(NamedTuple):
    """A batch with B transitions of each of T tasks (all tensors on the buffer's device).

    Attributes:
        obs: [T, B, obs_dim] float32.
        actions: [T, B, action_dim] float32.
        rewards: [T, B] float32.
        next_obs: [T, B, obs_dim] float32 (the final observation where an episode ended).
        dones: [T, B] float32, 1.0 where the transition *terminated* (truncation excluded).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    dones: torch.Tensor


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class MultiTaskReplayBuffer:
    """Ring buffer with ``capacity // num_tasks`` transitions per task.

    Args:
        num_tasks: T.
        obs_dim: observation size (including any one-hot task id).
        action_dim: A.
        capacity: total transitions over all tasks (split evenly; the remainder is unused).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; storage and batches live there.
        seed: seeds the sampling generator (a CPU ``torch.Generator``, so the same seed
            draws the same slots on every device).
    """

    STORAGE_FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")

    def __init__(
        self,
        num_tasks: int,
        obs_dim: int,
        action_dim: int,
        capacity: int,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ):
        self.num_tasks = _positive_int("num_tasks", num_tasks)
        self.obs_dim = _positive_int("obs_dim", obs_dim)
        self.action_dim = _positive_int("action_dim", action_dim)
        capacity = _positive_int("capacity", capacity)
        if capacity < self.num_tasks:
            raise ValueError(
                f"capacity {capacity} is smaller than num_tasks {self.num_tasks}; "
                "each task needs at least one slot"
            )
        self.capacity_per_task = capacity // self.num_tasks
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        T, C = self.num_tasks, self.capacity_per_task
        kw = {"device": self.device}
        self.obs = torch.zeros(T, C, self.obs_dim, dtype=torch.float32, **kw)
        self.actions = torch.zeros(T, C, self.action_dim, dtype=torch.float32, **kw)
        self.rewards = torch.zeros(T, C, dtype=torch.float32, **kw)
        self.next_obs = torch.zeros(T, C, self.obs_dim, dtype=torch.float32, **kw)
        self.terminated = torch.zeros(T, C, dtype=torch.bool, **kw)
        self.truncated = torch.zeros(T, C, dtype=torch.bool, **kw)
        self._task_index = torch.arange(T, device=self.device).unsqueeze(1)  # [T, 1]
        self._generator = torch.Generator().manual_seed(int(seed))
        self._pos = 0
        self._size = 0

    # ------------------------------------------------------------------ sizes
    @property
    def capacity(self) -> int:
        """Usable slots over all tasks (``num_tasks * capacity_per_task``)."""
        return self.num_tasks * self.capacity_per_task

    @property
    def size_per_task(self) -> int:
        """Transitions stored per task (the same for every task)."""
        return self._size

    @property
    def position(self) -> int:
        """Slot the next :meth:`add` writes to (per task)."""
        return self._pos

    def __len__(self) -> int:
        """Transitions stored over all tasks (``num_tasks * size_per_task``)."""
        return self.num_tasks * self._size

    def nbytes(self) -> int:
        """Bytes held by the preallocated storage tensors."""
        return sum(
            getattr(self, f).element_size() * getattr(self, f).numel() for f in self.STORAGE_FIELDS
        )

    # ------------------------------------------------------------------ writing
    def _as_tensor(self, name: str, value: Any, shape: tuple[int, ...], dtype: torch.dtype):
        tensor = torch.as_tensor(value)
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"{name} must have shape {list(shape)} ([T, ...] with T={self.num_tasks}), "
                f"got {list(tensor.shape)}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{name} contains NaN or inf; refusing to store it")
        return tensor.to(device=self.device, dtype=dtype)

    def add(
        self,
        obs: Any,
        actions: Any,
        rewards: Any,
        next_obs: Any,
        terminated: Any,
        truncated: Any,
    ) -> None:
        """Store one transition per task (numpy arrays or tensors, any device).

        Args:
            obs: [T, obs_dim]. actions: [T, A]. rewards: [T]. next_obs: [T, obs_dim]
            (the true next observation, final where the episode ended).
            terminated: [T] bool. truncated: [T] bool.
        """
        T = self.num_tasks
        values = {
            "obs": self._as_tensor("obs", obs, (T, self.obs_dim), torch.float32),
            "actions": self._as_tensor("actions", actions, (T, self.action_dim), torch.float32),
            "rewards": self._as_tensor("rewards", rewards, (T,), torch.float32),
            "next_obs": self._as_tensor("next_obs", next_obs, (T, self.obs_dim), torch.float32),
            "terminated": self._as_tensor("terminated", terminated, (T,), torch.bool),
            "truncated": self._as_tensor("truncated", truncated, (T,), torch.bool),
        }
        for name, value in values.items():
            getattr(self, name)[:, self._pos] = value
        self._pos = (self._pos + 1) % self.capacity_per_task
        self._size = min(self._size + 1, self.capacity_per_task)

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size_per_task: int) -> TransitionBatch:
        """Draw ``batch_size_per_task`` transitions of every task (uniform, with replacement).

        Returns:
            :class:`TransitionBatch` with tensors shaped [T, B, ...].
        """
        batch = _positive_int("batch_size_per_task", batch_size_per_task)
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer; add transitions first")
        slots = torch.randint(0, self._size, (self.num_tasks, batch), generator=self._generator)
        if self.device.type == "cuda":
            # A copy from pinned memory is asynchronous; one from pageable memory would wait
            # for the device. The slots still come from the CPU generator: same on every device.
            slots = slots.pin_memory()
        slots = slots.to(self.device, non_blocking=True)
        rows = self._task_index
        return TransitionBatch(
            obs=self.obs[rows, slots],
            actions=self.actions[rows, slots],
            rewards=self.rewards[rows, slots],
            next_obs=self.next_obs[rows, slots],
            dones=self.terminated[rows, slots].to(torch.float32),
        )

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Filled contents, write position and sampler RNG; ``torch.save``-able.

        The content tensors are copies of the filled part when the buffer is not full and
        the storage itself (shared memory, like ``nn.Module.state_dict``) when it is full:
        save the dict before adding more.
        """
        full = self._size == self.capacity_per_task
        contents = {
            f: getattr(self, f) if full else getattr(self, f)[:, : self._size].clone()
            for f in self.STORAGE_FIELDS
        }
        return {
            "version": STATE_VERSION,
            "num_tasks": self.num_tasks,
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "capacity_per_task": self.capacity_per_task,
            "position": self._pos,
            "size": self._size,
            "generator": self._generator.get_state(),
            "contents": contents,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore contents, position and RNG exactly; shapes must match this buffer.

        Raises:
            ValueError: not a buffer state, or one with other num_tasks / obs_dim /
                action_dim / capacity_per_task (named with both values).
        """
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"not a MultiTaskReplayBuffer state (version {STATE_VERSION})")
        for key in ("num_tasks", "obs_dim", "action_dim", "capacity_per_task"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"replay buffer state is incompatible: {key} is {state[key]} in the "
                    f"state, {getattr(self, key)} here"
                )
        size, position = int(state["size"]), int(state["position"])
        if not (0 <= size <= self.capacity_per_task and 0 <= position < self.capacity_per_task):
            raise ValueError(f"replay buffer state has invalid size {size} / position {position}")
        for f in self.STORAGE_FIELDS:
            stored = state["contents"][f]
            target = getattr(self, f)
            if tuple(stored.shape) != (self.num_tasks, size, *target.shape[2:]):
                raise ValueError(
                    f"replay buffer state field {f!r} has shape {list(stored.shape)}, "
                    f"expected {[self.num_tasks, size, *target.shape[2:]]}"
                )
            target[:, :size] = stored.to(device=self.device, dtype=target.dtype)
            target[:, size:] = 0
        self._size, self._pos = size, position
        self._generator.set_state(state["generator"])
