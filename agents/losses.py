"""Per-task SAC losses, written so one function serves two call patterns.

Each loss takes ``(params, batch, task_index, *extra)`` and reduces over the sample axis only:

* one task (0-dim ``task_index``, batch tensors [B, ...]) -> a scalar; this is what
  :func:`mtrl_align.jacobian.task_sliced_gradients` vmaps over the task dim to get all T
  per-task gradients in one fused pass;
* all tasks (``task_index`` [T], batch tensors [T, B, ...]) -> a [T] vector of losses, for the
  plain summed backward and for the representation-level (UB) aggregators.

The ``*_terms`` functions also return the network's last hidden features (the shared
representation), which only the UB path needs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.func import functional_call

from agents.actor import TanhGaussianActor, sample_tanh_gaussian
from agents.categorical import cross_entropy
from agents.critic import TwinCritic


class CriticBatch(NamedTuple):
    """Inputs of the critic loss; every tensor has a leading task dim T when batched."""

    obs: Tensor
    """[T, B, obs_dim] observations."""
    actions: Tensor
    """[T, B, A] actions taken."""
    targets: Tensor
    """[T, B] soft Bellman targets r + gamma (1 - done) (min Q' - alpha log pi) (or the mean of
    the twin Q', ``agent.q_reduction``), no gradient;
    for a categorical critic their target distributions [T, B, K]."""


class ActorBatch(NamedTuple):
    """Inputs of the actor loss; every tensor has a leading task dim T when batched."""

    obs: Tensor
    """[T, B, obs_dim] observations."""
    noise: Tensor
    """[T, B, A] standard normal noise of the reparameterised actions."""
    alpha: Tensor
    """[T] entropy temperatures (detached)."""


def twin_q(q: Tensor, reduction: str) -> Tensor:
    """One Q [...] from the twin critics' values ``q`` [2, ...]: their minimum (SAC's clipped
    double Q) or their mean (BRC's ensemble mean)."""
    if reduction == "min":
        return torch.minimum(q[0], q[1])
    if reduction == "mean":
        return 0.5 * (q[0] + q[1])
    raise ValueError(f"unknown twin-Q reduction {reduction!r}; choose min or mean")


class SACLosses:
    """Critic and actor losses of multi-task SAC for given modules (parameters passed in).

    ``q_reduction`` (``agent.q_reduction``) turns the twin critics into the actor's Q.
    """

    def __init__(
        self, actor: TanhGaussianActor, critic: TwinCritic, q_reduction: str = "min"
    ) -> None:
        twin_q(torch.zeros(2), q_reduction)  # a bad name fails here, not in the first update
        self.actor = actor
        self.critic = critic
        self.q_reduction = q_reduction

    # -- critic ----------------------------------------------------------------------------
    def critic_terms(
        self, params: dict[str, Tensor], batch: CriticBatch, task_index: Tensor
    ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """``(loss, mean_q, features)``: sum over both critics of the mean squared TD error,
        or for a categorical critic of the mean cross-entropy between the target distribution
        and the softmax of its logits (BRC's reduction: mean over samples, sum over critics).

        loss and mean_q are scalars (one task) or [T]; features: both critics' last hidden
        layers, [(T,) B, h] each.
        """
        inputs = (batch.obs, batch.actions, task_index)
        if self.critic.support is None:
            q, features = functional_call(self.critic, params, inputs)
            td_error = q - batch.targets.unsqueeze(0)  # [2, (T,) B]
            loss = td_error.pow(2).mean(-1).sum(0)
        else:
            q, features, logits = functional_call(
                self.critic, params, inputs, {"with_logits": True}
            )  # logits [2, (T,) B, K]
            loss = cross_entropy(logits, batch.targets.unsqueeze(0)).mean(-1).sum(0)
        return loss, q.detach().mean(-1).mean(0), features

    def critic_loss(
        self, params: dict[str, Tensor], batch: CriticBatch, task_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(loss, mean_q)`` of one task or of all tasks (see the module docstring)."""
        loss, mean_q, _ = self.critic_terms(params, batch, task_index)
        return loss, mean_q

    # -- actor -----------------------------------------------------------------------------
    def actor_terms(
        self,
        params: dict[str, Tensor],
        batch: ActorBatch,
        task_index: Tensor,
        critic_params: dict[str, Tensor],
    ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """``(loss, mean_log_prob, features)`` with loss = mean(alpha log pi(a|s) - Q(s, a)), Q
        the min (or mean, ``q_reduction``) of the twin critics.

        ``critic_params`` are constants here (pass detached tensors); the gradient reaches the
        actor through the reparameterised action. mean_log_prob feeds the temperature loss.
        """
        mean, log_std, features = functional_call(self.actor, params, (batch.obs, task_index))
        action, log_prob = sample_tanh_gaussian(mean, log_std, batch.noise)
        q, _ = functional_call(self.critic, critic_params, (batch.obs, action, task_index))
        loss = (batch.alpha.unsqueeze(-1) * log_prob - twin_q(q, self.q_reduction)).mean(-1)
        return loss, log_prob.detach().mean(-1), features

    def actor_loss(
        self,
        params: dict[str, Tensor],
        batch: ActorBatch,
        task_index: Tensor,
        critic_params: dict[str, Tensor],
    ) -> tuple[Tensor, Tensor]:
        """``(loss, mean_log_prob)`` of one task or of all tasks."""
        loss, mean_log_prob, _ = self.actor_terms(params, batch, task_index, critic_params)
        return loss, mean_log_prob


def temperature_losses(log_alpha: Tensor, mean_log_prob: Tensor, target_entropy: float) -> Tensor:
    """Per-task temperature losses [T]: -log_alpha_t (E[log pi_t] + target_entropy).

    ``mean_log_prob`` [T] is treated as a constant; task t's loss only touches log_alpha[t].
    """
    return -(log_alpha * (mean_log_prob.detach() + target_entropy))
