"""The three MLP variants of multi-task SAC.

``shared``       one network for all tasks; the observation keeps its one-hot task id.
``task-encoder`` the one-hot id is replaced by a learned task embedding [T, D] (task-specific),
                 concatenated with the state (and action) before the first layer.
``multi-head``   a shared trunk and one output layer per task (task-specific heads).

Every forward takes ``task_index`` and works in two modes:

* one task: ``task_index`` 0-dim, inputs [N, d] -> outputs [N, out]; this is the form the
  per-task losses use under ``torch.func.vmap`` (see :mod:`agents.losses`);
* all tasks: ``task_index`` [T], inputs [T, N, d] -> outputs [T, N, out].

Shared parameters are everything except the task embedding and the heads
(:meth:`TaskConditionedMLP.is_task_specific`). Build it (and every other variant) with
:func:`agents.architectures.build_network`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from agents.architectures.common import _rows
from agents.initialization import InitSpec, init_bias_, init_head_, init_weight_
from agents.trunks import TrunkSpec, build_trunk

MLP_VARIANTS = ("shared", "task-encoder", "multi-head")
"""Variants built as a :class:`TaskConditionedMLP`."""
TASK_SPECIFIC_PREFIXES = ("task_embedding", "heads.")


class TaskConditionedMLP(nn.Module):
    """MLP with ReLU hidden layers, conditioned on the task according to ``variant``.

    Args:
        variant: shared | task-encoder | multi-head.
        obs_dim: observation size including the trailing one-hot task id (T entries).
        num_tasks: T.
        extra_dim: size of an extra input joined to the state (the action for critics, else 0).
        hidden: hidden widths, e.g. [400, 400, 400].
        out_dim: output size.
        embedding_dim: task embedding size (task-encoder only).
        generator: CPU generator for the initial weights (seeded by the caller).
        init: initialisation of the hidden layers and the head(s)
            (:mod:`agents.initialization`; default PyTorch's).
        trunk: the hidden layers (:mod:`agents.trunks`; default plain Linear-ReLU).
    """

    def __init__(
        self,
        variant: str,
        obs_dim: int,
        num_tasks: int,
        extra_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        embedding_dim: int = 50,
        generator: torch.Generator | None = None,
        init: InitSpec | None = None,
        trunk: TrunkSpec | None = None,
    ) -> None:
        super().__init__()
        init = init if init is not None else InitSpec()
        if variant not in MLP_VARIANTS:
            raise ValueError(
                f"unknown network variant {variant!r} for TaskConditionedMLP; choose from: "
                f"{', '.join(MLP_VARIANTS)} (agents.architectures.build_network builds the others)"
            )
        if obs_dim <= num_tasks:
            raise ValueError(
                f"obs_dim={obs_dim} must exceed num_tasks={num_tasks} (state + one-hot task id)"
            )
        if not hidden:
            raise ValueError("hidden must list at least one layer width")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.variant = variant
        self.obs_dim = obs_dim
        self.num_tasks = num_tasks
        self.state_dim = obs_dim - num_tasks
        self.out_dim = out_dim
        self.hidden = list(hidden)
        if variant == "task-encoder":
            self.task_embedding = nn.Parameter(torch.empty(num_tasks, embedding_dim))
            with torch.no_grad():
                self.task_embedding.normal_(0.0, 1.0, generator=generator)
            in_dim = self.state_dim + embedding_dim + extra_dim
        else:
            in_dim = obs_dim + extra_dim
        widths = [in_dim, *hidden]
        if trunk is not None and not trunk.is_plain:  # LayerNorm / BroNet (agents.trunks)
            self.trunk = build_trunk(trunk, in_dim, hidden, init, generator)
        else:
            self.trunk = nn.ParameterList()
            for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
                weight = nn.Parameter(torch.empty(fan_out, fan_in))
                bias = nn.Parameter(torch.empty(fan_out))
                init_weight_(weight, fan_in, init, generator)
                init_bias_(bias, fan_in, init, generator)
                self.trunk.extend([weight, bias])
        last = widths[-1]
        if variant == "multi-head":
            self.heads = nn.ParameterDict(
                {
                    "weight": nn.Parameter(torch.empty(num_tasks, out_dim, last)),
                    "bias": nn.Parameter(torch.empty(num_tasks, out_dim)),
                }
            )
            init_head_(self.heads["weight"], self.heads["bias"], last, init, generator)
        else:
            self.out_weight = nn.Parameter(torch.empty(out_dim, last))
            self.out_bias = nn.Parameter(torch.empty(out_dim))
            init_head_(self.out_weight, self.out_bias, last, init, generator)

    @staticmethod
    def is_task_specific(name: str) -> bool:
        """True for parameters used by one task each (embedding rows, heads)."""
        return any(name.startswith(p) or f".{p}" in name for p in TASK_SPECIFIC_PREFIXES)

    def _inputs(self, obs: Tensor, extra: Tensor | None, task_index: Tensor) -> Tensor:
        """Network input [*lead, N, in_dim] from obs [*lead, N, obs_dim] (+ extra [*lead, N, e])."""
        if self.variant == "task-encoder":
            embedding = _rows(self.task_embedding, task_index)  # [D] or [T, D]
            embedding = embedding.unsqueeze(-2).expand(*obs.shape[:-1], -1)
            parts = [obs[..., : self.state_dim], embedding]
        else:
            parts = [obs]
        if extra is not None:
            parts.append(extra)
        return torch.cat(parts, dim=-1)

    def forward(
        self, obs: Tensor, extra: Tensor | None, task_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Output and last hidden features.

        Args:
            obs: [N, obs_dim] with 0-dim ``task_index``, or [T, N, obs_dim] with ``task_index`` [T].
            extra: same leading shape as obs (e.g. actions [.., N, A]) or None.
            task_index: int64 task id(s).

        Returns:
            ``(out [*lead, N, out_dim], features [*lead, N, hidden[-1]])``.
        """
        h = self._inputs(obs, extra, task_index)
        if isinstance(self.trunk, nn.ParameterList):
            for i in range(0, len(self.trunk), 2):
                h = torch.relu(F.linear(h, self.trunk[i], self.trunk[i + 1]))
        else:  # LayerNorm / BroNet trunk (agents.trunks)
            h = self.trunk(h)
        if self.variant != "multi-head":
            return F.linear(h, self.out_weight, self.out_bias), h
        weight = _rows(self.heads["weight"], task_index)
        bias = _rows(self.heads["bias"], task_index)
        if task_index.dim() == 0:  # weight [o, h], h [N, h]
            return F.linear(h, weight, bias), h
        # weight [T, o, h], h [T, N, h]
        return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2)), h
