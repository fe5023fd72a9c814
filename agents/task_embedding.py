"""BRC's task embedding (``agent.shared_task_embedding``, task-encoder only).

BRC (Nauman et al. 2025, ``jaxrl/networks.py``: ``TaskEmbedding``, ``Critic``;
``jaxrl/agent/update.py``: ``build_actor_input``) keeps one learned table [T, D] in the critic.
Its rows are normalised to unit length, both Q networks of the ensemble read the same row, and
the actor gets the critic's row as a constant input (it is computed outside the actor's loss,
so no actor gradient reaches it). Our ``task-encoder`` default gives each of actor, q1 and q2 an
unnormalised table of its own; this module is BRC's alternative.

The networks behind it are the ``shared`` MLP of :mod:`agents.architectures.mlp` fed with the
state joined to the unit row: ``[*lead, N, state_dim + D]`` in place of the observation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from agents.architectures.common import rows, task_table


class UnitTaskEmbedding(nn.Module):
    """A learned table [T, D] (rows drawn from N(0, I)) read as unit-length rows."""

    def __init__(self, num_tasks: int, dim: int, generator: torch.Generator) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"task embedding size must be >= 1, got {dim!r}")
        self.table = task_table(num_tasks, dim, generator)

    def forward(self, task_index: Tensor, like: Tensor) -> Tensor:
        """The unit rows of ``task_index`` (0-dim or [T], vmap-safe) expanded to the leading
        dims of ``like`` [*lead, N, d]: returns [*lead, N, D]."""
        unit = F.normalize(rows(self.table, task_index), dim=-1)  # [D] or [T, D]
        return unit.unsqueeze(-2).expand(*like.shape[:-1], -1)


def network_layout(
    variant: str, obs_dim: int, num_tasks: int, shared_embedding_dim: int | None
) -> tuple[str, int]:
    """``(variant, obs_dim)`` to build a network with: as given, or with a shared embedding
    of size D the ``shared`` MLP on state + row (``task-encoder`` only)."""
    if shared_embedding_dim is None:
        return variant, obs_dim
    if variant != "task-encoder":
        raise ValueError(f"a shared task embedding needs variant task-encoder, not {variant!r}")
    return "shared", obs_dim - num_tasks + shared_embedding_dim


def join_embedding(obs: Tensor, state_dim: int, embedding: Tensor) -> Tensor:
    """The network input [*lead, N, state_dim + D]: the state part of ``obs`` [*lead, N,
    state_dim + T] (the one-hot id dropped) joined to ``embedding`` [*lead, N, D]."""
    return torch.cat([obs[..., :state_dim], embedding], dim=-1)
