"""Twin Q critics (clipped double-Q), conditioned on the task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from agents.initialization import InitSpec
from agents.networks import build_network


class TwinCritic(nn.Module):
    """Two independent Q(s, a, task) networks (``q1``, ``q2``) of ``variant``, built by
    :func:`agents.networks.build_network` (``options``: its architecture options; ``init``:
    the initial weights of both; ``task_descriptions``: CARE's frozen task embeddings [T, P])."""

    def __init__(
        self,
        variant: str,
        obs_dim: int,
        num_tasks: int,
        action_dim: int,
        hidden: Sequence[int],
        embedding_dim: int = 50,
        generator: torch.Generator | None = None,
        options: Mapping[str, Any] | None = None,
        init: InitSpec | None = None,
        task_descriptions: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.q1, self.q2 = (
            build_network(
                variant,
                obs_dim,
                num_tasks,
                extra_dim=action_dim,
                hidden=hidden,
                out_dim=1,
                embedding_dim=embedding_dim,
                generator=generator,
                options=options,
                init=init,
                task_descriptions=task_descriptions,
            )
            for _ in range(2)
        )
        self.is_task_specific = self.q1.is_task_specific

    def forward(
        self, obs: Tensor, action: Tensor, task_index: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Q values.

        Args:
            obs: [N, obs_dim] with 0-dim ``task_index`` or [T, N, obs_dim] with ``task_index`` [T].
            action: [*lead, N, A].

        Returns:
            ``(q [2, *lead, N], (features1, features2))`` with features [*lead, N, h] (the
            last hidden layer of each critic).
        """
        q1, features1 = self.q1(obs, action, task_index)
        q2, features2 = self.q2(obs, action, task_index)
        return torch.stack([q1.squeeze(-1), q2.squeeze(-1)]), (features1, features2)
