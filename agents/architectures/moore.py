"""MOORE (Hendawy et al. 2024, "Multi-Task Reinforcement Learning with Mixture of Orthogonal
Experts"): k expert networks, their outputs made orthonormal by Gram-Schmidt, combined with
task-specific weights, then one output head per task.

For one sample (s, t):

* experts: k MLPs on [s, a] (state without the one-hot id; a: the action of a critic) with
  widths ``hidden``, ReLU between layers and a linear last layer: V = [v_1 .. v_k] [k, h];
* Gram-Schmidt (modified, in expert order): u_1 = v_1 / |v_1|,
  u_i = normalise(v_i - sum_{j<i} <v_i, u_j> u_j), so U U^T = I_k for every sample;
* representation: features = tanh(sum_i w_t,i u_i) [h] with w_t a row of ``task_weights``
  [T, k] (the paper's linear task encoder of the one-hot id, Glorot-uniform init);
* output: ``heads`` (one linear layer per task, as in the paper's multi-head SAC).

``task_weights`` and ``heads`` are task-specific; the experts are shared.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from agents.architectures.common import (
    TaskConditioned,
    join,
    linear,
    mlp,
    rows,
    run_mlp,
    task_linear,
    xavier_bound,
)
from agents.initialization import InitSpec

DEFAULT_NUM_EXPERTS = 4
NORM_EPS = 1e-12
"""Added under the square root of each squared norm, so that a zero vector gives zero, not NaN."""


def gram_schmidt(vectors: Tensor) -> Tensor:
    """Orthonormalise the k vectors of ``vectors`` [..., k, h] in order (modified Gram-Schmidt).

    Returns [..., k, h] with orthonormal rows spanning the same nested subspaces. k is a
    shape, so the loop has a fixed length (fine under ``vmap`` and autograd).
    """
    basis: list[Tensor] = []
    for i in range(vectors.shape[-2]):
        w = vectors[..., i, :]
        for u in basis:
            w = w - (w * u).sum(-1, keepdim=True) * u
        basis.append(w * torch.rsqrt(w.pow(2).sum(-1, keepdim=True) + NORM_EPS))
    return torch.stack(basis, dim=-2)


class MOORENetwork(TaskConditioned):
    """``num_experts`` orthogonalised experts, task-weighted, with per-task heads.

    Args:
        hidden: widths of each expert (the last one is the representation size h).
        num_experts: k.
        init: initial weights of the experts and the heads (by the head bound); the task
            weights keep MOORE's Glorot-uniform.
    """

    TASK_SPECIFIC = ("task_weights", "heads")

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
        del embedding_dim  # the task encoder maps the id straight to k weights
        self.num_experts = num_experts
        self.task_weights = nn.Parameter(torch.empty(num_tasks, num_experts))
        bound = xavier_bound(num_tasks, num_experts)
        with torch.no_grad():
            self.task_weights.uniform_(-bound, bound, generator=generator)
        widths = [self.state_dim + extra_dim, *self.hidden]
        self.experts = mlp(widths, generator, num_experts, init)
        weight, bias = linear((num_tasks, out_dim, self.hidden[-1]), generator, init, head=True)
        self.heads = nn.ParameterDict({"weight": weight, "bias": bias})

    def forward(
        self, obs: Tensor, extra: Tensor | None, task_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(out [*lead, N, out_dim], features [*lead, N, hidden[-1]])``; see the module
        docstring. obs [N, obs_dim] with 0-dim ``task_index`` or [T, N, obs_dim] with [T]."""
        experts = run_mlp(join(self.state(obs), extra), self.experts, activate_last=False)
        basis = gram_schmidt(experts)  # [(T,) N, k, h]
        weights = rows(self.task_weights, task_index)  # [(T,) k]
        features = torch.tanh(torch.einsum("...nkh,...k->...nh", basis, weights))
        weight = rows(self.heads["weight"], task_index)
        bias = rows(self.heads["bias"], task_index)
        return task_linear(features, weight, bias), features
