"""Every task-conditioned network of multi-task SAC, one module each, and their one registry.

=============  ============  ===================  ==========================================
variant        module        task-specific        options (MT10 default)
=============  ============  ===================  ==========================================
shared         mlp           none                 none
task-encoder   mlp           task_embedding       none
multi-head     mlp           heads                none
soft-modules   soft_modules  task_embedding       num_modules (2), num_module_layers (2),
                                                  module_hidden (256)
care           care          task_embedding       num_experts (6 encoders); frozen task
                                                  descriptions instead of the table
moore          moore         task_weights, heads  num_experts (4 experts)
paco           paco          composition          num_experts (5 parameter sets),
                                                  identical_init (True)
film           film          task_embedding       none
film-per-unit  film          task_embedding       none
=============  ============  ===================  ==========================================

All follow one contract: ``forward(obs, extra, task_index) -> (out, features)`` for one task
(0-dim index, inputs [N, d], also under ``torch.func.vmap``) or all tasks ([T] index, inputs
[T, N, d]), and ``is_task_specific(name)``. Build them with :func:`build_network` (also
importable from :mod:`agents.networks`). Imports run one way: the architecture modules import
:mod:`agents.architectures.common` and :mod:`agents.initialization`, nothing else of ``agents``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from agents.architectures.care import CARENetwork
from agents.architectures.film import FiLMNetwork, PerUnitFiLMNetwork
from agents.architectures.mlp import MLP_VARIANTS, TaskConditionedMLP
from agents.architectures.moore import MOORENetwork
from agents.architectures.paco import PaCoNetwork
from agents.architectures.soft_modules import SoftModularNetwork
from agents.initialization import InitSpec
from agents.trunks import TrunkSpec

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    **{variant: partial(TaskConditionedMLP, variant) for variant in MLP_VARIANTS},
    "soft-modules": SoftModularNetwork,
    "care": CARENetwork,
    "moore": MOORENetwork,
    "paco": PaCoNetwork,
    "film": FiLMNetwork,
    "film-per-unit": PerUnitFiLMNetwork,
}
"""Variant name -> network constructor ``(obs_dim, num_tasks, extra_dim, hidden, out_dim,
embedding_dim, generator, init=..., **options)``."""

VARIANTS = tuple(ARCHITECTURES)
"""Every network variant :func:`build_network` knows."""

OPTION_TYPES: dict[str, type] = {
    "num_experts": int,
    "num_modules": int,
    "num_module_layers": int,
    "module_hidden": int,
    "identical_init": bool,
}
"""Architecture options (``AgentConfig`` fields of the same name; None = the variant's default)
and their types (integers must be >= 1)."""

NETWORK_OPTIONS = tuple(OPTION_TYPES)
"""Names of the architecture options."""

OPTIONS: dict[str, tuple[str, ...]] = {
    **{variant: () for variant in MLP_VARIANTS},
    "soft-modules": ("num_modules", "num_module_layers", "module_hidden"),
    "care": ("num_experts",),
    "moore": ("num_experts",),
    "paco": ("num_experts", "identical_init"),
    "film": (),
    "film-per-unit": (),
}
"""Variant name -> the architecture options it takes (anything else is an error)."""

TAKES_TASK_DESCRIPTIONS = ("care",)
"""Variants that can read frozen task-description embeddings instead of a learned table."""

__all__ = [
    "ARCHITECTURES",
    "MLP_VARIANTS",
    "NETWORK_OPTIONS",
    "OPTIONS",
    "TAKES_TASK_DESCRIPTIONS",
    "VARIANTS",
    "CARENetwork",
    "FiLMNetwork",
    "MOORENetwork",
    "PaCoNetwork",
    "PerUnitFiLMNetwork",
    "SoftModularNetwork",
    "TaskConditionedMLP",
    "build_network",
    "network_options",
]


def network_options(config: Any) -> dict[str, Any]:
    """The architecture options set (not None) on an ``AgentConfig``, for :func:`build_network`."""
    values = {name: getattr(config, name, None) for name in NETWORK_OPTIONS}
    return {name: value for name, value in values.items() if value is not None}


def _check_options(variant: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that are set, checked against the variant (``ValueError`` otherwise)."""
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(NETWORK_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown network option(s) {unknown}; choose from: {', '.join(NETWORK_OPTIONS)}"
        )
    allowed = OPTIONS[variant]
    wrong = sorted(set(options) - set(allowed))
    if wrong:
        takes = ", ".join(allowed) if allowed else "none"
        raise ValueError(
            f"network option(s) {wrong} do not apply to variant {variant!r} (it takes: {takes})"
        )
    for name, value in options.items():
        if OPTION_TYPES[name] is bool:
            if not isinstance(value, bool):
                raise ValueError(f"network option {name}={value!r} must be true or false")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"network option {name}={value!r} must be an integer >= 1")
    return options


def build_network(
    variant: str,
    obs_dim: int,
    num_tasks: int,
    extra_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    embedding_dim: int = 50,
    generator: torch.Generator | None = None,
    options: Mapping[str, Any] | None = None,
    init: InitSpec | None = None,
    task_descriptions: Tensor | None = None,
    trunk: TrunkSpec | None = None,
) -> nn.Module:
    """The task-conditioned network of ``variant`` (one of :data:`VARIANTS`).

    Args:
        obs_dim: observation size including the trailing one-hot task id (T entries).
        num_tasks: T.
        extra_dim: size of an extra input joined to the state (the action for critics, else 0).
        hidden: hidden widths, e.g. [400, 400, 400] (what they mean per variant: its module).
        out_dim: output size.
        embedding_dim: task embedding size (task-encoder, soft-modules' routing aside, care,
            film).
        generator: CPU generator of the initial weights (seeded by the caller).
        options: architecture options (:data:`OPTIONS`); a missing or None entry means the
            variant's MT10 default.
        init: initial weights (:class:`agents.initialization.InitSpec`; default PyTorch's).
        task_descriptions: frozen per-task description embeddings [T, P] (care only,
            :func:`agents.architectures.care.load_task_descriptions`; None: a learned table).
        trunk: hidden layers of the MLP variants (:class:`agents.trunks.TrunkSpec`: plain,
            LayerNorm or BroNet); the other architectures only take the plain default.

    Returns:
        A module with ``forward(obs, extra, task_index) -> (out, features)`` and
        ``is_task_specific(name)``.
    """
    if variant not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {variant!r}; choose from: {', '.join(ARCHITECTURES)}"
        )
    options = _check_options(variant, options or {})
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim={embedding_dim} must be >= 1")
    if task_descriptions is not None:
        if variant not in TAKES_TASK_DESCRIPTIONS:
            raise ValueError(
                f"task description embeddings only apply to variant(s) "
                f"{', '.join(TAKES_TASK_DESCRIPTIONS)}, not {variant!r}"
            )
        options["task_descriptions"] = task_descriptions
    if trunk is not None and not trunk.is_plain:
        if variant not in MLP_VARIANTS:
            raise ValueError(
                f"trunk {trunk.kind!r} (layer_norm={trunk.layer_norm}) is only implemented for "
                f"the variants {', '.join(MLP_VARIANTS)}, not {variant!r}; use the plain mlp trunk"
            )
        options["trunk"] = trunk
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return ARCHITECTURES[variant](
        obs_dim,
        num_tasks,
        extra_dim,
        hidden,
        out_dim,
        embedding_dim,
        generator,
        init=init if init is not None else InitSpec(),
        **options,
    )
