"""Where actors and critics used to get their networks; kept so that existing imports work.

The networks live in :mod:`agents.architectures` (the three MLP variants in
:mod:`agents.architectures.mlp`, one module per published architecture), with one registry and
one factory, :func:`agents.architectures.build_network`; this module only re-exports them.
"""

from agents.architectures import (
    MLP_VARIANTS,
    NETWORK_OPTIONS,
    VARIANTS,
    build_network,
    network_options,
)
from agents.architectures.mlp import TaskConditionedMLP

__all__ = [
    "MLP_VARIANTS",
    "NETWORK_OPTIONS",
    "VARIANTS",
    "TaskConditionedMLP",
    "build_network",
    "network_options",
]
