"""CARE (Sodhani et al. 2021, "Multi-Task Reinforcement Learning with Context-based
Representations"): a mixture of k state encoders, combined by attention weights computed from
a task context, with the context joined to the mixture before the SAC network.

CARE encodes task *metadata* (sentences describing each task, embedded by a pretrained
language model) into the context. No metadata is available here, so the context is computed
from a learned task embedding instead (a row of ``task_embedding`` [T, E]); the rest follows
the paper. With E = ``embedding_dim``:

* context: c_t = MLP_c(e_t) [E] (Linear E->E, ReLU, Linear E->E);
* attention: alpha = softmax(MLP_a(c_t)) [k] (Linear E->E, ReLU, Linear E->k);
* encoders: k MLPs on the state (without the one-hot id), Linear s->E, ReLU, Linear E->E;
  z = sum_i alpha_i enc_i(s) [E];
* SAC network: an MLP with widths ``hidden`` on [z, c_t, a] (a: the action of a critic), then
  one linear output layer; features = its last hidden layer.

Only ``task_embedding`` is task-specific; the context and attention networks, the encoders and
the SAC network are shared.
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
)
from agents.initialization import InitSpec

DEFAULT_NUM_EXPERTS = 6


class CARENetwork(TaskConditioned):
    """Mixture of ``num_experts`` encoders with attention from a learned-embedding context.

    Args:
        hidden: widths of the SAC network after the encoder.
        embedding_dim: E, size of the task embedding, the context and each encoder's output.
        num_experts: k, number of encoders.
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
        num_experts: int = DEFAULT_NUM_EXPERTS,
    ) -> None:
        super().__init__(obs_dim, num_tasks, hidden)
        size = embedding_dim
        self.num_experts = num_experts
        self.task_embedding = nn.Parameter(torch.empty(num_tasks, size))
        with torch.no_grad():
            self.task_embedding.normal_(0.0, 1.0, generator=generator)
        self.context = mlp([size, size, size], generator, init=init)
        self.attention = mlp([size, size, num_experts], generator, init=init)
        self.encoders = mlp([self.state_dim, size, size], generator, num_experts, init)
        self.trunk = mlp([2 * size + extra_dim, *self.hidden], generator, init=init)
        last = self.hidden[-1]
        self.out_weight, self.out_bias = linear((out_dim, last), generator, init, head=True)

    def context_and_attention(self, task_index: Tensor) -> tuple[Tensor, Tensor]:
        """Context c [(T,) E] and encoder weights alpha [(T,) k] of the task(s)."""
        context = run_mlp(rows(self.task_embedding, task_index), self.context, False)
        return context, torch.softmax(run_mlp(context, self.attention, False), dim=-1)

    def forward(
        self, obs: Tensor, extra: Tensor | None, task_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(out [*lead, N, out_dim], features [*lead, N, hidden[-1]])``; see the module
        docstring. obs [N, obs_dim] with 0-dim ``task_index`` or [T, N, obs_dim] with [T]."""
        context, alpha = self.context_and_attention(task_index)
        encoded = run_mlp(self.state(obs), self.encoders, activate_last=False)  # [.., N, k, E]
        mixture = torch.einsum("...nke,...k->...ne", encoded, alpha)
        h = run_mlp(join(mixture, per_sample(context, mixture), extra), self.trunk, True)
        return F.linear(h, self.out_weight, self.out_bias), h
