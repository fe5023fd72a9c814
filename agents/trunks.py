"""Hidden-layer stacks ("trunks") of the MLP variants beyond plain Linear-ReLU layers.

``mlp`` + ``layer_norm``  Linear -> LayerNorm -> ReLU per hidden layer (widths ``*_hidden``).
``bronet``               BroNet (Nauman et al. 2024, "Bigger, Regularized, Optimistic"; the
                         critic and actor of BRC, Nauman et al. 2025), as in BRC's code
                         (naumix/BiggerRegularizedCategorical, ``jaxrl/networks.py``,
                         ``BroNet`` / ``BronetBlock``): an input layer Linear -> LayerNorm ->
                         ReLU to width w, then ``blocks`` residual blocks
                         h + LN(Linear(ReLU(LN(Linear(h))))); the output layer (head) sits on
                         the last block's output, with no LayerNorm after the last block.
                         Width w is the single entry of ``*_hidden``.

The plain Linear-ReLU stack stays inside :class:`agents.networks.TaskConditionedMLP` (its
parameter names are those of existing checkpoints); :func:`build_trunk` makes the others. Every
trunk maps [*lead, N, in_dim] -> [*lead, N, width] sample by sample (LayerNorm normalises each
sample's features), so one task's outputs never depend on another task's inputs and the
per-task vmapped Jacobian keeps the tasks apart. LayerNorm has a learned scale (init 1) and
shift (init 0) and eps 1e-6 (flax's default, which BRC uses). All trunk parameters are shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from agents.initialization import InitSpec, init_bias_, init_weight_

TRUNKS = ("mlp", "bronet")
"""Names of the trunks (``agent.critic_trunk`` / ``agent.actor_trunk``)."""
LAYER_NORM_EPS = 1e-6
"""LayerNorm epsilon (flax.linen.LayerNorm's default, used by BRC)."""


@dataclass(frozen=True)
class TrunkSpec:
    """The hidden layers of one network.

    Attributes:
        kind: one of :data:`TRUNKS`.
        layer_norm: LayerNorm after every hidden Linear of an ``mlp`` trunk (BroNet always
            has it).
        blocks: residual blocks of a ``bronet`` trunk (>= 1).
    """

    kind: str = "mlp"
    layer_norm: bool = False
    blocks: int = 1

    def __post_init__(self) -> None:
        if self.kind not in TRUNKS:
            raise ValueError(f"unknown trunk {self.kind!r}; choose from: {', '.join(TRUNKS)}")
        if self.kind == "bronet" and int(self.blocks) < 1:
            raise ValueError(f"a bronet trunk needs blocks >= 1, got {self.blocks!r}")

    @property
    def is_plain(self) -> bool:
        """True for Linear-ReLU layers without LayerNorm (the default, built in place)."""
        return self.kind == "mlp" and not self.layer_norm


def trunk_spec(config: Any, network: str) -> TrunkSpec:
    """The :class:`TrunkSpec` of ``network`` ("actor" or "critic") from an ``AgentConfig``."""
    return TrunkSpec(
        kind=getattr(config, f"{network}_trunk", "mlp"),
        layer_norm=bool(getattr(config, "layer_norm", False)),
        blocks=int(getattr(config, f"{network}_blocks", 1)),
    )


class DenseNorm(nn.Module):
    """LayerNorm(Linear(x)): [..., fan_in] -> [..., fan_out]."""

    def __init__(
        self, fan_in: int, fan_out: int, init: InitSpec, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(fan_out, fan_in))
        self.bias = nn.Parameter(torch.empty(fan_out))
        init_weight_(self.weight, fan_in, init, generator)
        init_bias_(self.bias, fan_in, init, generator)
        self.norm_weight = nn.Parameter(torch.ones(fan_out))
        self.norm_bias = nn.Parameter(torch.zeros(fan_out))

    def forward(self, x: Tensor) -> Tensor:
        h = F.linear(x, self.weight, self.bias)
        return F.layer_norm(h, h.shape[-1:], self.norm_weight, self.norm_bias, LAYER_NORM_EPS)


class LayerNormMLP(nn.Module):
    """ReLU(LN(Linear(h))) per hidden width: [..., in_dim] -> [..., hidden[-1]]."""

    def __init__(
        self, in_dim: int, hidden: Sequence[int], init: InitSpec, generator: torch.Generator
    ) -> None:
        super().__init__()
        widths = [in_dim, *hidden]
        self.layers = nn.ModuleList(
            DenseNorm(a, b, init, generator) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.out_dim = widths[-1]

    def forward(self, h: Tensor) -> Tensor:
        for layer in self.layers:
            h = torch.relu(layer(h))
        return h


class BroNetBlock(nn.Module):
    """h + LN(Linear(ReLU(LN(Linear(h))))): [..., w] -> [..., w]."""

    def __init__(self, width: int, init: InitSpec, generator: torch.Generator) -> None:
        super().__init__()
        self.first = DenseNorm(width, width, init, generator)
        self.second = DenseNorm(width, width, init, generator)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.second(torch.relu(self.first(h)))


class BroNet(nn.Module):
    """ReLU(LN(Linear(x))) to width w, then ``blocks`` :class:`BroNetBlock`:
    [..., in_dim] -> [..., w]."""

    def __init__(
        self, in_dim: int, width: int, blocks: int, init: InitSpec, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.input = DenseNorm(in_dim, width, init, generator)
        self.blocks = nn.ModuleList(BroNetBlock(width, init, generator) for _ in range(blocks))
        self.out_dim = width

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.input(x))
        for block in self.blocks:
            h = block(h)
        return h


def build_trunk(
    spec: TrunkSpec,
    in_dim: int,
    hidden: Sequence[int],
    init: InitSpec,
    generator: torch.Generator,
) -> LayerNormMLP | BroNet:
    """The trunk of ``spec`` (not the plain one) from ``in_dim`` inputs; ``hidden``: the hidden
    widths (one width [w] for ``bronet``). The module has ``out_dim``."""
    if spec.kind == "bronet":
        if len(hidden) != 1:
            raise ValueError(
                f"a bronet trunk takes one width (hidden=[w]), got hidden={list(hidden)}; "
                "its depth is the number of blocks"
            )
        return BroNet(in_dim, int(hidden[0]), int(spec.blocks), init, generator)
    if spec.is_plain:
        raise ValueError("the plain Linear-ReLU trunk is built by TaskConditionedMLP itself")
    return LayerNormMLP(in_dim, hidden, init, generator)
