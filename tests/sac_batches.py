"""Synthetic multi-task SAC replay batches shared by the agent tests."""

from __future__ import annotations

from typing import NamedTuple

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
