"""Twin Q critics (clipped double-Q), conditioned on the task; scalar or categorical."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from agents.categorical import CategoricalSupport
from agents.initialization import InitSpec
from agents.networks import build_network
from agents.task_embedding import UnitTaskEmbedding, join_embedding, network_layout
from agents.trunks import TrunkSpec


class TwinCritic(nn.Module):
    """Two independent Q(s, a, task) networks (``q1``, ``q2``) of ``variant``, built by
    :func:`agents.networks.build_network` (``options``: its architecture options; ``init``:
    the initial weights of both; ``trunk``: their hidden layers; ``task_descriptions``: CARE's
    frozen task embeddings [T, P]).

    With a ``support`` (:class:`agents.categorical.CategoricalSupport`) each network outputs
    K logits and its Q value is their expectation over the support; without one it outputs Q.

    With ``shared_embedding_dim`` D (``task-encoder`` only, BRC's task embedding,
    :mod:`agents.task_embedding`) the critic owns one table ``task_embedding`` [T, D] whose unit
    rows both Q networks (``shared`` MLPs on state + row) read; the actor reads it too.
    """

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
        trunk: TrunkSpec | None = None,
        support: CategoricalSupport | None = None,
        task_descriptions: Tensor | None = None,
        shared_embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.support = support
        self.state_dim = obs_dim - num_tasks
        net_variant, net_obs_dim = network_layout(variant, obs_dim, num_tasks, shared_embedding_dim)
        self.q1, self.q2 = (
            build_network(
                net_variant,
                net_obs_dim,
                num_tasks,
                extra_dim=action_dim,
                hidden=hidden,
                out_dim=1 if support is None else support.num_bins,
                embedding_dim=embedding_dim,
                generator=generator,
                options=options,
                init=init,
                trunk=trunk,
                task_descriptions=task_descriptions,
            )
            for _ in range(2)
        )
        self.task_embedding: UnitTaskEmbedding | None = None
        if shared_embedding_dim is not None:
            generator = generator if generator is not None else torch.Generator().manual_seed(0)
            self.task_embedding = UnitTaskEmbedding(num_tasks, shared_embedding_dim, generator)
        self.is_task_specific = self.q1.is_task_specific  # task_embedding.* included

    def forward(
        self, obs: Tensor, action: Tensor, task_index: Tensor, with_logits: bool = False
    ) -> tuple[Tensor, tuple[Tensor, Tensor]] | tuple[Tensor, tuple[Tensor, Tensor], Tensor]:
        """Q values.

        Args:
            obs: [N, obs_dim] with 0-dim ``task_index`` or [T, N, obs_dim] with ``task_index`` [T].
            action: [*lead, N, A].
            with_logits: also return the categorical logits (categorical critics only).

        Returns:
            ``(q [2, *lead, N], (features1, features2))`` with features [*lead, N, h] (the
            last hidden layer of each critic); with ``with_logits`` a third entry, the logits
            [2, *lead, N, K].
        """
        if self.task_embedding is not None:
            obs = join_embedding(obs, self.state_dim, self.task_embedding(task_index, obs))
        out1, features1 = self.q1(obs, action, task_index)
        out2, features2 = self.q2(obs, action, task_index)
        features = (features1, features2)
        if self.support is None:
            if with_logits:
                raise ValueError("with_logits needs a categorical critic (a support)")
            return torch.stack([out1.squeeze(-1), out2.squeeze(-1)]), features
        logits = torch.stack([out1, out2])
        q = self.support.expectation(logits)
        return (q, features, logits) if with_logits else (q, features)
