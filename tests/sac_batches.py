"""Synthetic multi-task SAC replay batches shared by the agent tests."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

T, OBS, A, B = 3, 7 + 3, 2, 5
"""Tasks, observation size (state 7 + one-hot 3), action size, samples per task."""


class Batch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    dones: torch.Tensor


def make_batch(seed: int = 0) -> Batch:
    """A replay batch [T, B, ...] whose observations end with the one-hot task id."""
    g = torch.Generator().manual_seed(seed)
    one_hot = torch.eye(T).unsqueeze(1).expand(T, B, T)

    def observations() -> torch.Tensor:
        return torch.cat([torch.randn(T, B, OBS - T, generator=g), one_hot], dim=-1)

    return Batch(
        obs=observations(),
        actions=torch.rand(T, B, A, generator=g) * 2 - 1,
        rewards=torch.randn(T, B, generator=g),
        next_obs=observations(),
        dones=(torch.rand(T, B, generator=g) < 0.2).float(),
    )


def assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    """Recursive equality of nested dicts / lists / tensors / numbers (NaN equals NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype, where
        if a.is_floating_point():
            assert torch.equal(a.isnan(), b.isnan()), where
            assert torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)), where
        else:
            assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and np.array_equal(a, b, equal_nan=True), where
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def learning_state(agent: Any) -> dict[str, Any]:
    """Everything a skipped update must leave alone (the noise generator may move on)."""
    state = agent.state_dict()
    state.pop("noise_generator")
    state.pop("nonfinite_skips")
    state.pop("consecutive_nonfinite")
    state.pop("update_calls")  # counts every call, skipped ones included
    return {k: clone_state(v) for k, v in state.items()}


def clone_state(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: clone_state(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(clone_state(v) for v in value)
    return value


def loop_gradients(loss_fn, module, batch, extra=()) -> dict[str, torch.Tensor]:
    """Per-task gradients [T, *shape] by T separate autograd calls on the all-task losses (the
    oracle of the fused vmapped per-task gradients)."""
    params = dict(module.named_parameters())
    losses, _ = loss_fn(params, batch, torch.arange(T), *extra)
    rows = [
        torch.autograd.grad(losses[t], list(params.values()), retain_graph=True) for t in range(T)
    ]
    return {name: torch.stack([row[i] for row in rows]) for i, name in enumerate(params)}
