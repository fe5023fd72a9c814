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

Initialisation. ``identical_init`` (default, the authors' ``use_identical_init`` of their MT10
config, alf's ``CompositionalFC(kernel_identical_init=True)``): each layer's first set is drawn
by the init spec and copied to the other K - 1 sets, so every task starts from the same
network and the sets only differ by what training makes of them. Otherwise each set is drawn
on its own. The composition rows are ours (the authors draw N(0, 1) entries): w_t from
U(0, 1)^K scaled so that a composed layer starts at the scale of one set, i.e. to unit sum
with identical sets (W_t = W_1 exactly) and to unit L2 norm with independent sets (the
variance of sum_k w_k W_k is that of one W_k). With N(0, 1) entries and identical sets, every
layer of task t is scaled by sum_k w_t,k ~ N(0, K): some tasks would start sign-flipped, others
with outputs (sum_k w_t,k)^depth times larger.

The authors' extreme-loss handling (a task whose loss exceeds a threshold is masked and its
composition reset to a random convex combination of the others') lives in
:class:`agents.sac.MultiTaskSAC`; :func:`reset_compositions` is its network part.
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
        init: initial weights of every parameter set (the output layer's by its head bound).
        num_experts: K, the number of parameter sets.
        identical_init: start the K sets of every layer equal (see the module docstring).
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
        identical_init: bool = True,
    ) -> None:
        super().__init__(obs_dim, num_tasks, hidden)
        del embedding_dim
        self.num_parameter_sets = num_experts
        self.identical_init = identical_init
        self.composition = nn.Parameter(torch.empty(num_tasks, num_experts))
        with torch.no_grad():
            self.composition.uniform_(0.0, 1.0, generator=generator)
            norm = 1 if identical_init else 2
            self.composition.div_(self.composition.norm(p=norm, dim=1, keepdim=True))
        widths = [self.state_dim + extra_dim, *self.hidden, out_dim]
        if identical_init:
            first = mlp(widths, generator, init=init, head=True)
            self.layers = nn.ParameterList(
                nn.Parameter(p.detach().unsqueeze(0).repeat(num_experts, *[1] * p.dim()))
                for p in first
            )
        else:
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


def convex_mixtures(reset: Tensor, draws: Tensor) -> Tensor:
    """Mixing matrix M [T, T] of the composition reset: row i of a task to reset (``reset``
    [T] bool) is a random convex combination of the tasks that are not reset (weights
    ``draws[i]`` [T] >= 0 on them, scaled to sum 1, the authors' ``interpolate`` rule); every
    other row is e_i (the task keeps its own vector). Where no task is left to mix from, the
    row stays e_i too. Computed on the device, without reading it back."""
    keep = ~reset
    weights = draws * keep.to(draws.dtype).unsqueeze(0)
    total = weights.sum(dim=1, keepdim=True)
    mixable = reset & (total.squeeze(1) > 0)
    mixed = weights / total.clamp_min(torch.finfo(draws.dtype).tiny)
    eye = torch.eye(reset.shape[0], dtype=draws.dtype, device=draws.device)
    return torch.where(mixable.unsqueeze(1), mixed, eye)


@torch.no_grad()
def reset_compositions(
    pairs: Sequence[tuple[PaCoNetwork, PaCoNetwork | None]], mix: Tensor
) -> None:
    """In place: ``composition <- mix @ composition`` of every online network, and the target
    copy (if any) set to the online network's new rows (the authors' target critics share the
    online task encoder). ``mix`` [T, T] from :func:`convex_mixtures`."""
    for online, target in pairs:
        new = mix.to(online.composition.dtype) @ online.composition
        online.composition.copy_(new)
        if target is not None:
            target.composition.copy_(new)
