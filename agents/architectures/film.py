"""FiLM-conditioned MLP (feature-wise linear modulation, Perez et al. 2018, applied to the SAC
trunk): every hidden layer is scaled and shifted per unit by functions of the task.

For one sample (s, t), with e_t a row of the learned table ``task_embedding`` [T, E]:

* generators: [dgamma_l, beta_l] = G_l e_t + c_l (one linear map per hidden layer l, 2 * width
  outputs) and gamma_l = 1 + dgamma_l;
* trunk: h_l = relu(gamma_l * (W_l h_(l-1) + b_l) + beta_l) with h_0 = [s, a] (state without
  the one-hot id; a: the action of a critic), widths ``hidden``; features = the last h_l;
* output: one shared linear layer.

Only ``task_embedding`` is task-specific; the trunk, the generators and the output are shared.
There is no MT10 paper setting for this variant: E = ``embedding_dim`` (50, as the
task-encoder variant) and the trunk widths are the config's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from agents.architectures.common import TaskConditioned, join, linear, mlp, rows
from agents.initialization import InitSpec, init_weight_


class FiLMNetwork(TaskConditioned):
    """MLP with per-layer, task-conditioned scale and shift.

    Args:
        hidden: trunk widths.
        embedding_dim: E, size of the task embedding fed to the FiLM generators.
        init: initial weights of the trunk and the generator weights (the output layer by its
            head bound); the generator biases start at zero, the task table at N(0, 1).
    """

    TASK_SPECIFIC = ("task_embedding",)

    def __init__(
        self,
        obs_dim: int,
        num_tasks: int,
        extra_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        embedding_dim: int,
        generator: torch.Generator,
        init: InitSpec | None = None,
    ) -> None:
        super().__init__(obs_dim, num_tasks, hidden)
        self.task_embedding = nn.Parameter(torch.empty(num_tasks, embedding_dim))
        with torch.no_grad():
            self.task_embedding.normal_(0.0, 1.0, generator=generator)
        init = init if init is not None else InitSpec()
        self.trunk = mlp([self.state_dim + extra_dim, *self.hidden], generator, init=init)
        self.film = nn.ParameterList()
        for width in self.hidden:
            weight = nn.Parameter(torch.empty(2 * width, embedding_dim))
            init_weight_(weight, embedding_dim, init, generator)
            self.film.extend([weight, nn.Parameter(torch.zeros(2 * width))])
        last = self.hidden[-1]
        self.out_weight, self.out_bias = linear((out_dim, last), generator, init, head=True)

    def modulation(self, task_index: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per hidden layer, (gamma, beta) of the task(s), each [(T,) 1, width]."""
        embedding = rows(self.task_embedding, task_index).unsqueeze(-2)
        pairs = []
        for i in range(0, len(self.film), 2):
            dgamma, beta = F.linear(embedding, self.film[i], self.film[i + 1]).chunk(2, dim=-1)
            pairs.append((1.0 + dgamma, beta))
        return pairs

    def forward(
        self, obs: Tensor, extra: Tensor | None, task_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(out [*lead, N, out_dim], features [*lead, N, hidden[-1]])``; see the module
        docstring. obs [N, obs_dim] with 0-dim ``task_index`` or [T, N, obs_dim] with [T]."""
        h = join(self.state(obs), extra)
        for layer, (gamma, beta) in enumerate(self.modulation(task_index)):
            pre = F.linear(h, self.trunk[2 * layer], self.trunk[2 * layer + 1])
            h = torch.relu(gamma * pre + beta)
        return F.linear(h, self.out_weight, self.out_bias), h
