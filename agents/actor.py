"""Tanh-squashed Gaussian policy, conditioned on the task."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from agents.initialization import InitSpec
from agents.networks import build_network
from agents.task_embedding import join_embedding, network_layout
from agents.trunks import TrunkSpec

LOG_STD_BOUNDS = ("tanh", "clip")
"""How the raw log-std output is kept in [log_std_min, log_std_max] (``agent.log_std_bound``)."""

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class TanhGaussianActor(nn.Module):
    """pi(a | s, task) = tanh(u), u ~ N(mean(s, task), diag(std(s, task)^2)).

    Mean and log-std come from one network of ``variant`` (built by
    :func:`agents.networks.build_network`; ``options`` are its architecture options, ``init``
    its initial weights, ``trunk`` its hidden layers, ``task_descriptions`` CARE's frozen task
    embeddings [T, P]). ``log_std_bound`` keeps the log standard deviation inside
    [log_std_min, log_std_max] (see :func:`bound_log_std`):

    ``tanh``  log_std = min + (max - min) (tanh(raw) + 1) / 2: smooth, but a raw output near 0
              starts the policy at the middle of the range (log_std -9, std ~1e-4, for
              [-20, 2]) and scales every change of raw by (max - min) / 2 = 11;
    ``clip``  log_std = clamp(raw, min, max), the reference MT-SAC's rule (metaworld-algorithms):
              raw near 0 starts at std ~1; the gradient is zero outside the bounds.

    With ``shared_embedding_dim`` D (``task-encoder`` only, BRC's task embedding) the network
    is a ``shared`` MLP on the state joined to the critic's unit task row, read as a constant
    (:meth:`read_task_embedding_of` names the critic).
    """

    def __init__(
        self,
        variant: str,
        obs_dim: int,
        num_tasks: int,
        action_dim: int,
        hidden: Sequence[int],
        embedding_dim: int = 50,
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
        generator: torch.Generator | None = None,
        options: Mapping[str, Any] | None = None,
        init: InitSpec | None = None,
        task_descriptions: Tensor | None = None,
        log_std_bound: str = "tanh",
        trunk: TrunkSpec | None = None,
        shared_embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        if log_std_bound not in LOG_STD_BOUNDS:
            raise ValueError(
                f"unknown log_std_bound {log_std_bound!r}; choose from: {', '.join(LOG_STD_BOUNDS)}"
            )
        self.action_dim = action_dim
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        self.log_std_bound = log_std_bound
        self.state_dim = obs_dim - num_tasks
        self.shared_embedding = shared_embedding_dim is not None
        # the critic whose task embedding the actor reads (a list: not a submodule, so its
        # parameters stay out of the actor's parameters, optimiser and state dict)
        self._embedding_owner: list[nn.Module] = []
        net_variant, net_obs_dim = network_layout(variant, obs_dim, num_tasks, shared_embedding_dim)
        self.net = build_network(
            net_variant,
            net_obs_dim,
            num_tasks,
            extra_dim=0,
            hidden=hidden,
            out_dim=2 * action_dim,
            embedding_dim=embedding_dim,
            generator=generator,
            options=options,
            init=init,
            trunk=trunk,
            task_descriptions=task_descriptions,
        )
        self.is_task_specific = self.net.is_task_specific

    def forward(self, obs: Tensor, task_index: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor]]:
        """Gaussian parameters before the tanh.

        Args:
            obs: [N, obs_dim] (0-dim ``task_index``) or [T, N, obs_dim] (``task_index`` [T]).

        Returns:
            ``(mean, log_std, (features,))``: mean and log_std [*lead, N, A]; features
            [*lead, N, h] (last hidden layer, the shared representation).
        """
        if self.shared_embedding:
            if not self._embedding_owner:
                raise RuntimeError(
                    "this actor reads the critic's task embedding: call "
                    "read_task_embedding_of(critic) first"
                )
            embedding = self._embedding_owner[0].task_embedding(task_index, obs).detach()
            obs = join_embedding(obs, self.state_dim, embedding)
        out, features = self.net(obs, None, task_index)
        mean, raw_log_std = out.chunk(2, dim=-1)
        log_std = bound_log_std(raw_log_std, self.log_std_min, self.log_std_max, self.log_std_bound)
        return mean, log_std, (features,)

    def read_task_embedding_of(self, critic: nn.Module) -> None:
        """Read the unit task rows of ``critic.task_embedding`` (a
        :class:`agents.task_embedding.UnitTaskEmbedding`) as a constant input."""
        if not self.shared_embedding or getattr(critic, "task_embedding", None) is None:
            raise ValueError("read_task_embedding_of needs a shared-embedding actor and critic")
        self._embedding_owner = [critic]


def bound_log_std(raw: Tensor, low: float, high: float, rule: str) -> Tensor:
    """The network's raw log-std output [..., A] mapped into [low, high] by ``rule``
    (``tanh`` or ``clip``, see :class:`TanhGaussianActor`)."""
    if rule == "clip":
        return raw.clamp(low, high)
    return low + 0.5 * (high - low) * (torch.tanh(raw) + 1.0)


def sample_tanh_gaussian(mean: Tensor, log_std: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """Reparameterised action and its log-probability.

    Args:
        mean, log_std: [..., A].
        noise: standard normal [..., A] (drawn by the caller, so that sampling is explicit and
            works the same inside ``torch.func.vmap``).

    Returns:
        ``(action [..., A] in (-1, 1), log_prob [...])`` with the tanh change of variables
        log pi(a) = log N(u) - sum log(1 - tanh(u)^2), written in the stable form
        log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
    """
    pre_tanh = mean + log_std.exp() * noise
    gaussian = (-0.5 * noise.pow(2) - log_std - _HALF_LOG_2PI).sum(-1)
    correction = (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)
    return torch.tanh(pre_tanh), gaussian - correction
