"""Multi-task SAC agents: task-conditioned networks (shared, task-encoder, multi-head,
soft-modules, care, moore, paco, film, film-per-unit), a tanh-Gaussian actor, twin critics,
per-task temperatures and aggregated updates."""

from agents.actor import TanhGaussianActor, sample_tanh_gaussian
from agents.critic import TwinCritic
from agents.gradients import NetworkGradients, representation_jacobian
from agents.losses import ActorBatch, CriticBatch, SACLosses, temperature_losses
from agents.networks import VARIANTS, TaskConditionedMLP, build_network
from agents.sac import MultiTaskSAC, UpdateResult

__all__ = [
    "VARIANTS",
    "ActorBatch",
    "CriticBatch",
    "MultiTaskSAC",
    "NetworkGradients",
    "SACLosses",
    "TanhGaussianActor",
    "TaskConditionedMLP",
    "TwinCritic",
    "UpdateResult",
    "build_network",
    "representation_jacobian",
    "sample_tanh_gaussian",
    "temperature_losses",
]
