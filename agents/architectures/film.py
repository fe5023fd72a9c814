"""FiLM-conditioned SAC networks (feature-wise linear modulation, Perez et al. 2018), two
designs.

``film`` (:class:`FiLMNetwork`), the multi-task RL baseline as metaworld-algorithms
(``nn/film.py``) and facebookresearch/mtrl (``FiLM`` encoder) build it: a small state encoder
whose layers are modulated by one scalar gamma and beta each. With e_t a row of the learned
table ``task_embedding`` [T, E] and E = ``embedding_dim`` (50 in both sources):

* task encoding u_t = relu(e_t) [E];
* FiLM parameters: MLP_3(u_t) (Linear E->E, ReLU, Linear E->E, ReLU, Linear E->6) gives
  (gamma_l, beta_l), one scalar pair per encoder layer l = 1..3;
* encoder on the state s (without the one-hot id): x_1 = relu(W_1 s + b_1) gamma_1 + beta_1,
  x_2 = relu(W_2 x_1 + b_2) gamma_2 + beta_2 (width E), z = (W_3 x_2 + b_3) gamma_3 + beta_3
  [E];
* SAC network: an MLP with widths ``hidden`` on [z, u_t, a] (a: the action of a critic), then
  one linear output layer; features = its last hidden layer.

The critic's action joins after the encoder, as in mtrl (which encodes the observation only);
metaworld-algorithms feeds [a, s] to the encoder instead.

``film-per-unit`` (:class:`PerUnitFiLMNetwork`), FiLM as Perez et al. define it (one gamma and
beta per feature) applied to every hidden layer of the SAC network itself:

* generators: [dgamma_l, beta_l] = G_l e_t + c_l (one linear map per hidden layer l, 2 * width
  outputs) and gamma_l = 1 + dgamma_l;
* trunk: h_l = relu(gamma_l * (W_l h_(l-1) + b_l) + beta_l) with h_0 = [s, a], widths
  ``hidden``; features = the last h_l; output: one shared linear layer.

In both, only ``task_embedding`` is task-specific; everything else is shared.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from agents.architectures.common import (
    TaskConditioned,
    join,
    linear,
    mlp,
    per_sample,
    rows,
    run_mlp,
    task_table,
)
from agents.initialization import InitSpec, init_weight_

ENCODER_LAYERS = 3
"""Layers of the FiLM-modulated state encoder (the sources' ``encoder_depth`` 2, plus its
output layer)."""


class FiLMNetwork(TaskConditioned):
    """The reference FiLM baseline: a 3-layer state encoder of width E with one scalar
    (gamma, beta) per layer from an MLP of the task embedding, then the SAC network.

    Args:
        hidden: widths of the SAC network after the encoder.
        embedding_dim: E, size of the task embedding and width of the encoder and of the
            FiLM-parameter MLP.
        init: initial weights of every linear layer (the output layer by its head bound); the
            task table keeps N(0, 1).
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
        size = embedding_dim
        self.task_embedding = task_table(num_tasks, size, generator)
        self.film = mlp([size, size, size, 2 * ENCODER_LAYERS], generator, init=init)
        self.encoder = mlp([self.state_dim, *[size] * ENCODER_LAYERS], generator, init=init)
        self.trunk = mlp([2 * size + extra_dim, *self.hidden], generator, init=init)
        last = self.hidden[-1]
        self.out_weight, self.out_bias = linear((out_dim, last), generator, init, head=True)

    def modulation(self, task_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(u [(T,) E], gamma [(T,) 3], beta [(T,) 3])`` of the task(s)."""
        u = torch.relu(rows(self.task_embedding, task_index))
        pairs = run_mlp(u, self.film, activate_last=False).unflatten(-1, (ENCODER_LAYERS, 2))
        return u, pairs[..., 0], pairs[..., 1]

    def forward(
        self, obs: Tensor, extra: Tensor | None, task_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(out [*lead, N, out_dim], features [*lead, N, hidden[-1]])``; see the module
        docstring. obs [N, obs_dim] with 0-dim ``task_index`` or [T, N, obs_dim] with [T]."""
        u, gamma, beta = self.modulation(task_index)
        gamma, beta = gamma.unsqueeze(-2), beta.unsqueeze(-2)  # [(T,) 1, 3]: over samples
        x = self.state(obs)
        for layer in range(ENCODER_LAYERS):
            x = F.linear(x, self.encoder[2 * layer], self.encoder[2 * layer + 1])
            if layer < ENCODER_LAYERS - 1:
                x = torch.relu(x)
            x = x * gamma[..., layer : layer + 1] + beta[..., layer : layer + 1]
        h = run_mlp(join(x, per_sample(u, x), extra), self.trunk, activate_last=True)
        return F.linear(h, self.out_weight, self.out_bias), h


class PerUnitFiLMNetwork(TaskConditioned):
    """MLP with per-layer, per-unit, task-conditioned scale and shift (``film-per-unit``).

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
        self.task_embedding = task_table(num_tasks, embedding_dim, generator)
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
