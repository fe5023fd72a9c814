"""PaCo (Sun et al. 2022, "PaCo: Parameter-Compositional Multi-Task Reinforcement Learning"):
the parameters of every task's network are a task-specific combination of K shared parameter
sets, theta_t = Phi w_t.

Every layer (hidden widths ``hidden`` and the output layer) stores K weight and bias sets,
``layers`` ([K, out, in] and [K, out]); task t's layer is W_t = sum_k w_t,k W_k,
b_t = sum_k w_t,k b_k with w_t a row of ``composition`` [T, K]. The input is [s, a] (state
without the one-hot id; a: the action of a critic); ReLU between layers; features = the last
hidden layer of the composed network.

``composition`` is task-specific (row t only gets task t's gradient); the parameter sets are
shared. The composed weights are formed once per task and then applied (cheaper than running
K networks: K * out * in per task instead of K * N * out * in).

Initialisation (our choice; the paper does not fix one): each parameter set like a PyTorch
Linear layer, each row w_t drawn from U(0, 1)^K and scaled to unit L2 norm, so that a composed
layer starts with the scale of one set. PaCo's training tricks (loss maskout and resetting
w_t of a diverging task) are not implemented.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from agents.architectures.common import TaskConditioned, join, mlp, rows, task_linear
from agents.initialization import InitSpec

DEFAULT_NUM_PARAMETER_SETS = 5


class PaCoNetwork(TaskConditioned):
    """An MLP whose per-task parameters compose K shared parameter sets.

    Args:
        hidden: hidden widths of the composed MLP.
        num_experts: K, the number of parameter sets.
        init: initial weights of every parameter set (the output layer's by its head bound).
    """

    TASK_SPECIFIC = ("composition",)

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
        num_experts: int = DEFAULT_NUM_PARAMETER_SETS,
    ) -> None:
        super().__init__(obs_dim, num_tasks, hidden)
        del embedding_dim
        self.num_parameter_sets = num_experts
        self.composition = nn.Parameter(torch.empty(num_tasks, num_experts))
        with torch.no_grad():
            self.composition.uniform_(0.0, 1.0, generator=generator)
            self.composition.div_(self.composition.norm(dim=1, keepdim=True))
        widths = [self.state_dim + extra_dim, *self.hidden, out_dim]
        self.layers = mlp(widths, generator, stack=num_experts, init=init, head=True)

    def composed(self, task_index: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per layer, task t's weight [(T,) out, in] and bias [(T,) out]."""
        w = rows(self.composition, task_index)  # [(T,) K]
        return [
            (
                torch.einsum("...k,koi->...oi", w, self.layers[i]),
                torch.einsum("...k,ko->...o", w, self.layers[i + 1]),
            )
            for i in range(0, len(self.layers), 2)
        ]

    def forward(
        self, obs: Tensor, extra: Tensor | None, task_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(out [*lead, N, out_dim], features [*lead, N, hidden[-1]])``; see the module
        docstring. obs [N, obs_dim] with 0-dim ``task_index`` or [T, N, obs_dim] with [T]."""
        layers = self.composed(task_index)
        h = join(self.state(obs), extra)
        for weight, bias in layers[:-1]:
            h = torch.relu(task_linear(h, weight, bias))
        weight, bias = layers[-1]
        return task_linear(h, weight, bias), h
