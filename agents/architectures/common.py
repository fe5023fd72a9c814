"""Building blocks shared by the architectures: initialisation, stacked linear layers, MLPs
kept as parameter lists, per-task linear maps, and the shared / task-specific split.

Every helper works with any number of leading dims, so one forward serves both modes of the
network contract (one task: inputs [N, d]; all tasks: inputs [T, N, d]) and ``torch.func.vmap``.

Initialisation: every linear layer draws its weight, then its bias, from the explicit
``generator`` by an :class:`agents.initialization.InitSpec` (hidden layers by its scheme, output
layers by its head bound). With the default spec the draws are PyTorch's ``nn.Linear`` default,
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both, in the order the layers are built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from agents.initialization import InitSpec, init_bias_, init_head_, init_weight_

__all__ = [
    "TaskConditioned",
    "join",
    "linear",
    "mlp",
    "parameter",
    "rows",
    "run_mlp",
    "task_linear",
    "task_table",
]


def _uniform_(tensor: Tensor, fan_in: int, generator: torch.Generator) -> None:
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)


def _rows(table: Tensor, task_index: Tensor) -> Tensor:
    """``table[task_index]`` for a 0-dim or [T] index, written with ``index_select`` so that it
    also works when ``task_index`` is batched by ``torch.func.vmap``."""
    rows = table.index_select(0, task_index.reshape(-1))
    return rows.reshape(*task_index.shape, *table.shape[1:])


rows = _rows


def parameter(shape: Sequence[int], fan_in: int, generator: torch.Generator) -> nn.Parameter:
    """A parameter drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's Linear default)."""
    param = nn.Parameter(torch.empty(*shape))
    _uniform_(param, fan_in, generator)
    return param


def task_table(num_tasks: int, size: int, generator: torch.Generator) -> nn.Parameter:
    """A learned per-task table [T, size] drawn from N(0, 1) (task embeddings, every scheme)."""
    table = nn.Parameter(torch.empty(num_tasks, size))
    with torch.no_grad():
        table.normal_(0.0, 1.0, generator=generator)
    return table


def linear(
    shape: Sequence[int],
    generator: torch.Generator,
    init: InitSpec | None = None,
    head: bool = False,
) -> tuple[nn.Parameter, nn.Parameter]:
    """Weight [*lead, out, in] and bias [*lead, out] of a linear layer (``shape`` = the
    weight's), drawn in that order: a hidden layer by ``init``'s scheme, an output layer
    (``head``) by its head bound."""
    init = init if init is not None else InitSpec()
    fan_in = shape[-1]
    weight = nn.Parameter(torch.empty(*shape))
    bias = nn.Parameter(torch.empty(*shape[:-1]))
    if head:
        init_head_(weight, bias, fan_in, init, generator)
    else:
        init_weight_(weight, fan_in, init, generator)
        init_bias_(bias, fan_in, init, generator)
    return weight, bias


def mlp(
    widths: Sequence[int],
    generator: torch.Generator,
    stack: int | None = None,
    init: InitSpec | None = None,
    head: bool = False,
) -> nn.ParameterList:
    """Weights and biases ``[w0, b0, w1, b1, ...]`` of an MLP with layer sizes ``widths``.

    With ``stack = k`` every tensor gets a leading dim k (k independent MLPs, e.g. experts):
    weights [k, out, in], biases [k, out]. ``init`` draws the layers (default: PyTorch's);
    ``head`` marks the last layer as the network's output layer (drawn by the head bound).
    """
    lead = () if stack is None else (stack,)
    params = nn.ParameterList()
    layers = list(zip(widths[:-1], widths[1:], strict=True))
    for i, (fan_in, fan_out) in enumerate(layers):
        is_head = head and i == len(layers) - 1
        params.extend(linear((*lead, fan_out, fan_in), generator, init, head=is_head))
    return params


def run_mlp(h: Tensor, params: nn.ParameterList, activate_last: bool) -> Tensor:
    """Apply an :func:`mlp` (ReLU between layers; after the last one too if ``activate_last``).

    Stacked MLPs (weights [k, out, in]) take h [..., in], the same input for every member,
    and return [..., k, out].
    """
    count = len(params) // 2
    for i in range(count):
        weight, bias = params[2 * i], params[2 * i + 1]
        if weight.dim() == 2:
            h = F.linear(h, weight, bias)
        elif i == 0:  # one input for all k members
            h = torch.einsum("...i,koi->...ko", h, weight) + bias
        else:  # member j's input is its own previous output h[..., j, :]
            h = torch.einsum("...ki,koi->...ko", h, weight) + bias
        if i < count - 1 or activate_last:
            h = torch.relu(h)
    return h


def task_linear(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``h W^T + b`` with a per-task weight: h [N, i], W [o, i], b [o] (one task) or
    h [T, N, i], W [T, o, i], b [T, o] (all tasks) -> [(T,) N, o]."""
    return torch.matmul(h, weight.transpose(-1, -2)) + bias.unsqueeze(-2)


def join(state: Tensor, *parts: Tensor | None) -> Tensor:
    """Concatenate ``state`` [..., N, s] with the given parts (skipping None) on the last dim."""
    return torch.cat([state, *(p for p in parts if p is not None)], dim=-1)


def per_sample(row: Tensor, like: Tensor) -> Tensor:
    """A task row [D] or [T, D] repeated over the sample axis of ``like`` [(T,) N, ...]."""
    return row.unsqueeze(-2).expand(*like.shape[:-1], row.shape[-1])


def xavier_bound(fan_in: int, fan_out: int) -> float:
    """Glorot-uniform bound sqrt(6 / (fan_in + fan_out))."""
    return math.sqrt(6.0 / (fan_in + fan_out))


class TaskConditioned(nn.Module):
    """Base of the architectures: the input split and the shared / task-specific rule.

    Subclasses list the names of their task-specific parameters (tensors whose rows are
    indexed by the task: embedding tables, composition weights, per-task heads) in
    ``TASK_SPECIFIC``; every other parameter is used by all tasks and is shared.
    """

    TASK_SPECIFIC: tuple[str, ...] = ()

    def __init__(self, obs_dim: int, num_tasks: int, hidden: Sequence[int]) -> None:
        super().__init__()
        if obs_dim <= num_tasks:
            raise ValueError(
                f"obs_dim={obs_dim} must exceed num_tasks={num_tasks} (state + one-hot task id)"
            )
        if not hidden or any(int(w) <= 0 for w in hidden):
            raise ValueError(f"hidden must list one or more widths > 0, got {list(hidden)}")
        self.obs_dim = obs_dim
        self.num_tasks = num_tasks
        self.state_dim = obs_dim - num_tasks
        self.hidden = [int(w) for w in hidden]

    @classmethod
    def is_task_specific(cls, name: str) -> bool:
        """True for a parameter (full dotted name, any prefix) used by one task per row."""
        return any(part in cls.TASK_SPECIFIC for part in name.split("."))

    def state(self, obs: Tensor) -> Tensor:
        """The observation without its trailing one-hot task id: [..., state_dim]."""
        return obs[..., : self.state_dim]
