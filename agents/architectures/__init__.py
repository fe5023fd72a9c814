"""Multi-task network architectures beyond the three MLP variants of :mod:`agents.networks`.

============  ============  ===================  ==========================================
variant       module        task-specific        options (MT10 default)
============  ============  ===================  ==========================================
soft-modules  soft_modules  task_embedding       num_modules (2), num_module_layers (2),
                                                 module_hidden (256)
care          care          task_embedding       num_experts (6 encoders)
moore         moore         task_weights, heads  num_experts (4 experts)
paco          paco          composition          num_experts (5 parameter sets)
film          film          task_embedding       none
============  ============  ===================  ==========================================

All follow the contract of :class:`agents.networks.TaskConditionedMLP`: ``forward(obs, extra,
task_index) -> (out, features)`` for one task (0-dim index, inputs [N, d], also under
``torch.func.vmap``) or all tasks ([T] index, inputs [T, N, d]), and ``is_task_specific(name)``.
Build them with :func:`agents.networks.build_network`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from agents.architectures.care import CARENetwork
from agents.architectures.film import FiLMNetwork
from agents.architectures.moore import MOORENetwork
from agents.architectures.paco import PaCoNetwork
from agents.architectures.soft_modules import SoftModularNetwork

ARCHITECTURES: dict[str, type] = {
    "soft-modules": SoftModularNetwork,
    "care": CARENetwork,
    "moore": MOORENetwork,
    "paco": PaCoNetwork,
    "film": FiLMNetwork,
}
"""Variant name -> network class."""

OPTIONS: dict[str, tuple[str, ...]] = {
    "soft-modules": ("num_modules", "num_module_layers", "module_hidden"),
    "care": ("num_experts",),
    "moore": ("num_experts",),
    "paco": ("num_experts",),
    "film": (),
}
"""Variant name -> the architecture options it takes (anything else is an error)."""

__all__ = [
    "ARCHITECTURES",
    "OPTIONS",
    "CARENetwork",
    "FiLMNetwork",
    "MOORENetwork",
    "PaCoNetwork",
    "SoftModularNetwork",
    "build_architecture",
]


def build_architecture(
    variant: str,
    *,
    obs_dim: int,
    num_tasks: int,
    extra_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    embedding_dim: int = 50,
    generator: torch.Generator | None = None,
    options: Mapping[str, Any] | None = None,
) -> torch.nn.Module:
    """Network of ``variant`` (one of :data:`ARCHITECTURES`) with its options checked."""
    if variant not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {variant!r}; choose from: {', '.join(ARCHITECTURES)}"
        )
    options = {k: v for k, v in (options or {}).items() if v is not None}
    allowed = OPTIONS[variant]
    wrong = sorted(set(options) - set(allowed))
    if wrong:
        takes = ", ".join(allowed) if allowed else "none"
        raise ValueError(
            f"network option(s) {wrong} do not apply to variant {variant!r} (it takes: {takes})"
        )
    for name, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"network option {name}={value!r} must be an integer >= 1")
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim={embedding_dim} must be >= 1")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return ARCHITECTURES[variant](
        obs_dim, num_tasks, extra_dim, hidden, out_dim, embedding_dim, generator, **options
    )
