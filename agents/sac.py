"""Multi-task soft actor-critic with gradient aggregation on the shared parameters.

One update (all from the same pre-update parameters):

1. soft Bellman targets [T, B] with the target critics (no gradient);
2. per-task critic losses [T] and actor losses [T]; each network's gradient comes from
   :class:`agents.gradients.NetworkGradients` (plain sum, aggregated Jacobian, or UB);
3. per-task temperature losses [T] (log_alpha[t] only sees task t);
4. if any loss, gradient or aggregated direction is NaN/inf the whole update is skipped and
   counted; otherwise optional gradient clipping, one Adam step per network, Polyak update of
   the target critics.

Two per-task loss scales s [T] (no gradient) can multiply the critic's and the actor's losses
before their gradients are formed (see :mod:`agents.gradients` for what the aggregator and the
task-specific parameters then get):

* ``aggregation.temperature_task_weights``: s = T softmax(-log alpha) from the temperatures of
  this update (before their step), as Soft Modularization and the reference MT-SAC
  (``use_task_weights``); the temperature losses are not scaled;
* PaCo's extreme tasks (``agent.extreme_tasks``, paco only): a task whose critic + actor +
  temperature loss exceeds ``agent.extreme_loss_threshold`` gets s_t = 0 for all three losses
  (the authors' ``mask_extreme_task``) and, with ``mask-reset``, after the step its composition
  vector in the actor and both critics (and the target critics) becomes a random convex
  combination of the other tasks' (``reset_task_while_extreme``, rule ``interpolate``).

Both multiply; with neither, the update is exactly the plain one.

A skipped update changes nothing that learns: weights, optimiser moments, temperatures and
every aggregator's state (GradNorm's weights, DWA's loss history, uncertainty's s, Nash-MTL's
warm start, GradVac's EMA, the random streams of PCGrad / RLW / GradDrop) are what they were
before it. The aggregators' states are snapshotted before they run and restored on a skip.
Only the sampling streams (replay batch, policy noise) move on, so the next update sees a
fresh batch.

Randomised aggregators are seeded per run and per network
(``aggregation.make_seeded(method, seed, "critic" | "actor")``): every run seed draws its own
numbers and the critic's and actor's aggregators draw different ones.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.actor import TanhGaussianActor, sample_tanh_gaussian
from agents.architectures.care import load_task_descriptions
from agents.architectures.paco import PaCoNetwork, convex_mixtures, reset_compositions
from agents.categorical import CategoricalSupport
from agents.critic import TwinCritic
from agents.gradients import NetworkGradients, NetworkStep, PendingStep, all_finite
from agents.initialization import InitSpec
from agents.losses import ActorBatch, CriticBatch, SACLosses, temperature_losses, twin_q
from agents.networks import network_options
from agents.sync_free import finite_flag, masked_adam_step, masked_lerp_
from agents.trunks import trunk_spec
from mtrl_align import aggregation
from mtrl_align.config import (
    AgentConfig,
    AggregationConfig,
    resolve_aggregation,
    summed_loss_only,
)

DEFAULT_EXTREME_TASKS = "mask-reset"
"""PaCo's extreme-task handling when ``agent.extreme_tasks`` is null (the authors' MT10)."""
DEFAULT_EXTREME_LOSS_THRESHOLD = 3e3
"""PaCo's extreme-loss threshold when ``agent.extreme_loss_threshold`` is null."""


@dataclass
class UpdateResult:
    """What one call of :meth:`MultiTaskSAC.update` did."""

    skipped: bool | Tensor
    """True when a NaN/inf loss or gradient made the update skip (no weight changed); on the
    sync-free path a 0-dim bool tensor on the device (``bool()`` it only when needed)."""
    metrics: dict[str, Tensor] = field(default_factory=dict)
    """Per-task tensors [T]: critic_loss, actor_loss, alpha_loss, alpha, mean_q, log_prob;
    loss_scale (the s applied) when a loss scale is on; extreme_task_count (PaCo's masked
    updates per task so far) when extreme tasks are handled."""
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per network: gradient stats and aggregator diagnostics (when requested)."""
    weights: dict[str, Tensor] = field(default_factory=dict)
    """Per aggregated network: task weights [T] applied."""
    interference: dict[str, Tensor] = field(default_factory=dict)
    """Per network (when stats were collected): the [T, T] cosines between the per-task
    gradients of its shared parameters."""


def critic_support(config: AgentConfig) -> CategoricalSupport | None:
    """The categorical support of ``agent.critic_loss`` (None for the scalar ``mse`` critic)."""
    if getattr(config, "critic_loss", "mse") == "mse":
        return None
    return CategoricalSupport(
        config.num_bins, config.v_max, config.critic_loss, config.hl_gauss_sigma
    )


class _UpdateCounter:
    """An int attribute of :class:`MultiTaskSAC` held in ``_<name>``: a Python int, or a 0-dim
    int64 device tensor on the sync-free path (reading the attribute then reads the device)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, agent: Any, owner: type | None = None) -> Any:
        if agent is None:
            return self
        return int(getattr(agent, self.slot))

    def __set__(self, agent: Any, value: int) -> None:
        if agent.sync_free:
            setattr(agent, self.slot, torch.tensor(int(value), device=agent.device))
        else:
            setattr(agent, self.slot, int(value))


def network_optimizer(
    module: torch.nn.Module, lr: float, eps: float, weight_decay: float
) -> torch.optim.Adam:
    """Adam for ``module``, or AdamW (decoupled decay of every parameter, as optax.adamw)
    when ``weight_decay`` > 0."""
    if weight_decay > 0:
        return torch.optim.AdamW(module.parameters(), lr=lr, eps=eps, weight_decay=weight_decay)
    return torch.optim.Adam(module.parameters(), lr=lr, eps=eps)


class MultiTaskSAC:
    """Multi-task SAC for T tasks; also a metaworld evaluation agent (eval_action / reset).

    Args:
        config: network and optimiser settings.
        aggregation_config: aggregator name, options, aggregated networks, task weights.
        num_tasks: T.
        obs_dim: observation size including the one-hot task id.
        action_dim: A (actions live in [-1, 1]^A).
        device: where networks live.
        seed: seeds the initial weights and the sampling noise.
        compile: ``torch.compile`` the all-task forward passes (Bellman targets and the
            summed-loss critic / actor losses; the vmapped per-task path stays eager). The
            results equal the eager ones up to float rounding; ``train.compile`` picks it.
        sync_free: decide skips on the device instead of the host (:meth:`update` reads no
            device value; see :mod:`agents.sync_free`). Only for methods whose networks all
            use the summed loss (``uniform``, or nothing aggregated): the aggregators run
            host-side logic. ``train.sync_free`` picks it.
        task_names: the T task names in training order; needed to read
            ``config.task_descriptions`` (CARE's frozen description embeddings).
    """

    def __init__(
        self,
        config: AgentConfig,
        aggregation_config: AggregationConfig,
        num_tasks: int,
        obs_dim: int,
        action_dim: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
        compile: bool = False,
        sync_free: bool = False,
        task_names: Sequence[str] | None = None,
    ) -> None:
        self.config = config
        self.num_tasks = num_tasks
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.device = torch.device(device)
        init_generator = torch.Generator().manual_seed(seed)
        descriptions = None
        if config.task_descriptions is not None:
            if task_names is None or len(task_names) != num_tasks:
                raise ValueError(
                    "agent.task_descriptions needs the names of the T tasks "
                    f"(task_names={task_names!r}, num_tasks={num_tasks})"
                )
            descriptions = load_task_descriptions(config.task_descriptions, task_names)
        shared_embedding_dim = config.task_embedding_dim if config.shared_task_embedding else None
        self.actor = TanhGaussianActor(
            config.variant,
            obs_dim,
            num_tasks,
            action_dim,
            config.actor_hidden,
            embedding_dim=config.task_embedding_dim,
            shared_embedding_dim=shared_embedding_dim,
            log_std_min=config.log_std_min,
            log_std_max=config.log_std_max,
            generator=init_generator,
            options=network_options(config),
            init=InitSpec(config.init, config.actor_head_init),
            task_descriptions=descriptions,
            log_std_bound=config.log_std_bound,
            trunk=trunk_spec(config, "actor"),
        ).to(self.device)
        self.critic = TwinCritic(
            config.variant,
            obs_dim,
            num_tasks,
            action_dim,
            config.critic_hidden,
            embedding_dim=config.task_embedding_dim,
            shared_embedding_dim=shared_embedding_dim,
            generator=init_generator,
            options=network_options(config),
            init=InitSpec(config.init, config.critic_head_init),
            trunk=trunk_spec(config, "critic"),
            support=critic_support(config),
            task_descriptions=descriptions,
        ).to(self.device)
        if shared_embedding_dim is not None:
            self.actor.read_task_embedding_of(self.critic)  # the online critic's, as BRC
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.full(
            (num_tasks,), math.log(config.init_temperature), device=self.device, requires_grad=True
        )
        self.target_entropy = (
            float(-action_dim) if config.target_entropy is None else float(config.target_entropy)
        )
        eps, decay = config.adam_eps, config.weight_decay
        self.actor_optimizer = network_optimizer(self.actor, config.actor_lr, eps, decay)
        self.critic_optimizer = network_optimizer(self.critic, config.critic_lr, eps, decay)
        self.alpha_optimizer = torch.optim.Adam(
            [self.log_alpha], lr=config.alpha_lr, eps=eps, betas=(config.alpha_beta1, 0.999)
        )
        self.noise_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.task_index = torch.arange(num_tasks, device=self.device)

        aggregation_config = copy.deepcopy(aggregation_config)
        resolve_aggregation(aggregation_config)
        task_weights = None
        if aggregation_config.task_weights is not None:
            if len(aggregation_config.task_weights) != num_tasks:
                raise ValueError(
                    f"aggregation.task_weights has {len(aggregation_config.task_weights)} "
                    f"entries but there are {num_tasks} tasks"
                )
            task_weights = torch.tensor(
                aggregation_config.task_weights, dtype=torch.float32, device=self.device
            )
        self.method = aggregation_config.method
        self.temperature_task_weights = bool(aggregation_config.temperature_task_weights)
        self.extreme_tasks = "off"
        self.extreme_loss_threshold = DEFAULT_EXTREME_LOSS_THRESHOLD
        if config.variant == "paco":
            self.extreme_tasks = config.extreme_tasks or DEFAULT_EXTREME_TASKS
            if config.extreme_loss_threshold is not None:
                self.extreme_loss_threshold = float(config.extreme_loss_threshold)
        elif config.extreme_tasks not in (None, "off"):
            raise ValueError(
                f"agent.extreme_tasks={config.extreme_tasks!r} needs variant paco (it resets "
                f"composition vectors), not {config.variant!r}"
            )
        if config.actor_after_critic_step and self.extreme_tasks != "off":
            raise ValueError(
                "agent.actor_after_critic_step=true needs agent.extreme_tasks=off (paco's mask "
                f"reads the actor losses before any step), not {self.extreme_tasks!r}"
            )
        self.extreme_task_counts = torch.zeros(num_tasks, dtype=torch.int64, device=self.device)
        self.reset_generator = torch.Generator(device=self.device).manual_seed(seed + 3)
        self.aggregators: dict[str, aggregation.Aggregator] = {
            network: aggregation.make_seeded(
                self.method, seed, network, **aggregation_config.options
            )
            for network in aggregation_config.networks
        }
        self.losses = SACLosses(self.actor, self.critic, config.q_reduction)
        self.compiled = bool(compile)
        critic_all, actor_all = self.losses.critic_loss, self.losses.actor_loss
        self._targets_fn = self._soft_targets
        if self.compiled:
            critic_all = torch.compile(critic_all, dynamic=False)
            actor_all = torch.compile(actor_all, dynamic=False)
            self._targets_fn = torch.compile(self._soft_targets, dynamic=False)
        self.gradients = {
            "critic": NetworkGradients(
                "critic",
                self.critic,
                self.losses.critic_loss,
                self.losses.critic_terms,
                self.aggregators.get("critic"),
                task_weights,
                all_task_loss_fn=critic_all,
            ),
            "actor": NetworkGradients(
                "actor",
                self.actor,
                self.losses.actor_loss,
                self.losses.actor_terms,
                self.aggregators.get("actor"),
                task_weights,
                all_task_loss_fn=actor_all,
            ),
        }
        self.sync_free = bool(sync_free)
        if self.sync_free and not summed_loss_only(aggregation_config):
            raise ValueError(
                f"the sync-free update (train.sync_free=on) needs summed-loss gradients, but "
                f"method {self.method!r} aggregates {aggregation_config.networks} with host-side "
                "logic; use train.sync_free=auto or off, method uniform, or aggregation.networks=[]"
            )
        self.update_calls = 0
        """Calls of :meth:`update`, skipped ones included (the loop's logging schedule)."""
        self.num_updates = 0
        self.nonfinite_skips = 0
        self.consecutive_nonfinite = 0
        self.longest_nonfinite_run = 0

    # Counters; device tensors on the sync-free path, read back only through these attributes.
    num_updates = _UpdateCounter()
    """Updates applied (skipped ones not counted)."""
    nonfinite_skips = _UpdateCounter()
    """Updates skipped for NaN/inf so far."""
    consecutive_nonfinite = _UpdateCounter()
    """Updates skipped in a row up to the last one (0 after an applied update)."""
    longest_nonfinite_run = _UpdateCounter()
    """The longest run of consecutive skipped updates since this agent was built (what the
    training loop checks on the sync-free path, where it reads counters only when logging)."""

    # -- acting ------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: Tensor | np.ndarray, deterministic: bool = False) -> Tensor:
        """Actions [T, A] in [-1, 1] for observations [T, obs_dim] (one per task)."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if obs_t.shape != (self.num_tasks, self.obs_dim):
            raise ValueError(
                f"observations must have shape [T, obs_dim] = [{self.num_tasks}, {self.obs_dim}], "
                f"got {tuple(obs_t.shape)}"
            )
        mean, log_std, _ = self.actor(obs_t.unsqueeze(1), self.task_index)  # [T, 1, A]
        if deterministic:
            return torch.tanh(mean[:, 0])
        noise = torch.randn(mean.shape, generator=self.noise_generator, device=self.device)
        action, _ = sample_tanh_gaussian(mean, log_std, noise)
        return action[:, 0]

    def eval_action(self, obs: np.ndarray) -> np.ndarray:
        """metaworld evaluation protocol: deterministic actions [T, A] as a numpy array."""
        return self.act(obs, deterministic=True).cpu().numpy()

    def reset(self, mask: np.ndarray | None = None) -> None:
        """metaworld evaluation protocol; the policy is memoryless, so nothing to reset."""
        del mask

    # -- learning ----------------------------------------------------------------------------
    def temperatures(self) -> Tensor:
        """The current entropy temperatures alpha [T] (detached, on the agent's device)."""
        return self.log_alpha.detach().exp()

    def _noise(self, shape: tuple[int, ...]) -> Tensor:
        return torch.randn(shape, generator=self.noise_generator, device=self.device)

    @torch.no_grad()
    def _bellman_targets(self, batch: Any, alpha: Tensor) -> Tensor:
        """Soft Bellman targets [T, B] (their target distributions [T, B, K] for a categorical
        critic, :mod:`agents.categorical`).

        y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s')), a' ~ pi(s'),
        with Q'_i the expectation of target critic i for a categorical critic, and the mean of
        the two instead of the min when ``agent.q_reduction`` is mean.
        """
        noise = self._noise((*batch.next_obs.shape[:-1], self.action_dim))
        return self._targets_fn(batch.next_obs, batch.rewards, batch.dones, noise, alpha)

    def _soft_targets(
        self, next_obs: Tensor, rewards: Tensor, dones: Tensor, noise: Tensor, alpha: Tensor
    ) -> Tensor:
        """The Bellman targets of :meth:`_bellman_targets` for given policy noise [T, B, A]."""
        mean, log_std, _ = self.actor(next_obs, self.task_index)
        next_action, next_log_prob = sample_tanh_gaussian(mean, log_std, noise)
        support = self.critic.support
        if support is not None and support.kind == "c51":
            return self._projected_targets(
                next_obs, next_action, next_log_prob, rewards, dones, alpha
            )
        q_next, _ = self.critic_target(next_obs, next_action, self.task_index)
        soft_value = twin_q(q_next, self.losses.q_reduction) - alpha.unsqueeze(-1) * next_log_prob
        targets = rewards + self.config.gamma * (1.0 - dones) * soft_value
        return targets if support is None else support.target(targets)

    def _projected_targets(
        self,
        next_obs: Tensor,
        next_action: Tensor,
        next_log_prob: Tensor,
        rewards: Tensor,
        dones: Tensor,
        alpha: Tensor,
    ) -> Tensor:
        """``c51`` target distributions [T, B, K] (BRC): the target critics' next-state
        distribution (their mean, or the one with the smaller expectation for
        ``q_reduction=min``) with atom z_k moved to r + gamma (1 - done) (z_k - alpha log pi)
        and projected onto the support."""
        support = self.critic.support
        q_next, _, logits = self.critic_target(
            next_obs, next_action, self.task_index, with_logits=True
        )
        probs = logits.softmax(-1)  # [2, T, B, K]
        if self.losses.q_reduction == "mean":
            next_probs = probs.mean(0)
        else:
            next_probs = torch.where((q_next[1] < q_next[0]).unsqueeze(-1), probs[1], probs[0])
        soft_atoms = support.atoms(next_probs) - (alpha.unsqueeze(-1) * next_log_prob).unsqueeze(-1)
        shifted = (
            rewards.unsqueeze(-1) + (self.config.gamma * (1.0 - dones)).unsqueeze(-1) * soft_atoms
        )
        return support.project(shifted, next_probs)

    def _zero_grads(self) -> None:
        for optimizer in (self.actor_optimizer, self.critic_optimizer, self.alpha_optimizer):
            optimizer.zero_grad(set_to_none=True)

    def _grads_finite(self) -> bool:
        return all_finite(
            [*self._grads_of(self.actor), *self._grads_of(self.critic), self.log_alpha.grad]
        )

    def update(self, batch: Any, collect_stats: bool = False) -> UpdateResult:
        """One SAC update from a replay batch (``obs [T, B, o]``, ``actions``, ``rewards [T, B]``,
        ``next_obs``, ``dones [T, B]``, e.g. ``envs.TransitionBatch``).

        Args:
            collect_stats: also return gradient stats and aggregator diagnostics per network.
        """
        self._check_batch(batch)
        self.update_calls += 1
        if self.config.actor_after_critic_step:
            if self.sync_free:
                return self._update_sync_free_after_critic(batch, collect_stats)
            return self._update_after_critic(batch, collect_stats)
        if self.sync_free:
            return self._update_sync_free(batch, collect_stats)
        alpha, critic_batch, actor_batch, critic_params = self._loss_inputs(batch)

        self._zero_grads()
        snapshot = self._aggregator_snapshot()
        critic_pending = self.gradients["critic"].begin(critic_batch, self.task_index, ())
        actor_pending = self.gradients["actor"].begin(
            actor_batch, self.task_index, (critic_params,)
        )
        alpha_losses = temperature_losses(self.log_alpha, actor_pending.aux, self.target_entropy)
        scale, extreme = self._loss_scale(critic_pending, actor_pending, alpha_losses)
        critic_step: NetworkStep = self.gradients["critic"].finish(
            critic_pending, scale, collect_stats
        )
        actor_step: NetworkStep = self.gradients["actor"].finish(
            actor_pending, scale, collect_stats
        )
        metrics = self._temperature_step(critic_step, actor_step, alpha, alpha_losses, extreme)
        finite = critic_step.finite and actor_step.finite and self._grads_finite()
        if not finite:
            self._zero_grads()
            self._restore_aggregators(snapshot)
            self._count_skip()
            return UpdateResult(skipped=True, metrics=metrics)
        self.consecutive_nonfinite = 0
        self._clip_gradients()
        self.critic_optimizer.step()
        self.actor_optimizer.step()
        self.alpha_optimizer.step()
        self._count_critic_step()
        self._handle_extreme_tasks(extreme, None, metrics, scale)
        return self._result(False, metrics, critic_step, actor_step)

    def _update_after_critic(self, batch: Any, collect_stats: bool) -> UpdateResult:
        """:meth:`update` in the order of metaworld-algorithms' MTSAC and BRC: the critic
        steps first, then the actor's losses are computed with the stepped critic, then the
        temperatures' from the actor's log-probabilities (``agent.actor_after_critic_step``).

        A non-finite critic step skips the whole update (nothing changes); a non-finite actor
        or temperature step after a finite critic step skips those two only (the critic's step
        and its aggregator's state stay, the actor's aggregator is rolled back)."""
        alpha, critic_batch, actor_batch, critic_params = self._loss_inputs(batch)
        self._zero_grads()
        snapshot = self._aggregator_snapshot()
        scale = self._temperature_scale()
        critic_step = self.gradients["critic"].compute(
            critic_batch, self.task_index, (), collect_stats, scale
        )
        critic_ok = critic_step.finite and all_finite(self._grads_of(self.critic))
        if critic_ok:
            self._clip_network("critic")
            self.critic_optimizer.step()  # critic_params are views: the actor sees the step
        actor_step = self.gradients["actor"].compute(
            actor_batch, self.task_index, (critic_params,), collect_stats, scale
        )
        alpha_losses = temperature_losses(self.log_alpha, actor_step.aux, self.target_entropy)
        metrics = self._temperature_step(critic_step, actor_step, alpha, alpha_losses, None)
        actor_ok = actor_step.finite and all_finite(
            [*self._grads_of(self.actor), self.log_alpha.grad]
        )
        if critic_ok:
            self._count_critic_step()
        if not (critic_ok and actor_ok):
            self._zero_grads()
            if critic_ok:  # the critic's step was taken: roll back the actor's aggregator only
                snapshot = {name: state for name, state in snapshot.items() if name == "actor"}
            self._restore_aggregators(snapshot)
            self._count_skip()
            return UpdateResult(skipped=True, metrics=metrics)
        self.consecutive_nonfinite = 0
        self._clip_network("actor")
        self.actor_optimizer.step()
        self.alpha_optimizer.step()
        return self._result(False, metrics, critic_step, actor_step)

    def _count_skip(self) -> None:
        """Count a skipped (non-finite) update of the per-update path."""
        self.nonfinite_skips += 1
        self.consecutive_nonfinite += 1
        self.longest_nonfinite_run = max(self.longest_nonfinite_run, self.consecutive_nonfinite)

    def _count_critic_step(self) -> None:
        """After an applied critic step: count it and move the targets when due."""
        self.num_updates += 1
        if self.num_updates % self.config.target_update_every == 0:
            self._update_targets()

    @staticmethod
    def _grads_of(module: torch.nn.Module) -> list[Tensor]:
        return [p.grad for p in module.parameters() if p.grad is not None]

    def _update_sync_free_after_critic(self, batch: Any, collect_stats: bool) -> UpdateResult:
        """:meth:`_update_after_critic` without host reads: device flags mask the critic's
        step (critic finite) and the actor's and temperatures' (critic and actor finite)."""
        alpha, critic_batch, actor_batch, critic_params = self._loss_inputs(batch)
        self._zero_grads()
        scale = self._temperature_scale()
        critic_step = self.gradients["critic"].compute_unchecked(
            critic_batch, self.task_index, (), collect_stats, scale
        )
        critic_ok = finite_flag([critic_step.losses, *self._grads_of(self.critic)])
        self._clip_network("critic")  # a clipped NaN stays NaN and is masked
        masked_adam_step(self.critic_optimizer, critic_ok)
        actor_step = self.gradients["actor"].compute_unchecked(
            actor_batch, self.task_index, (critic_params,), collect_stats, scale
        )
        alpha_losses = temperature_losses(self.log_alpha, actor_step.aux, self.target_entropy)
        metrics = self._temperature_step(critic_step, actor_step, alpha, alpha_losses, None)
        grads = [actor_step.losses, *self._grads_of(self.actor), self.log_alpha.grad]
        ok = critic_ok & finite_flag(grads)
        self._clip_network("actor")
        masked_adam_step(self.actor_optimizer, ok)
        masked_adam_step(self.alpha_optimizer, ok)
        self._count_masked(critic_ok, ok)
        return self._result(~ok, metrics, critic_step, actor_step)

    def _count_masked(self, critic_ok: Tensor, ok: Tensor) -> None:
        """Device-side counters and the masked target update of a sync-free update whose
        critic step applied where ``critic_ok`` and which applied fully where ``ok``."""
        critic_applied = critic_ok.to(torch.int64)
        applied = ok.to(torch.int64)
        self._num_updates = self._num_updates + critic_applied
        self._nonfinite_skips = self._nonfinite_skips + (1 - applied)
        self._consecutive_nonfinite = (self._consecutive_nonfinite + 1) * (1 - applied)
        self._longest_nonfinite_run = torch.maximum(
            self._longest_nonfinite_run, self._consecutive_nonfinite
        )
        every = self.config.target_update_every
        due = critic_ok if every == 1 else critic_ok & (self._num_updates % every == 0)
        masked_lerp_(
            list(self.critic_target.parameters()),
            list(self.critic.parameters()),
            due.to(torch.float32) * self.config.tau,
        )

    def _temperature_scale(self) -> Tensor | None:
        """The loss scale s [T] of ``aggregation.temperature_task_weights`` (None: off)."""
        if not self.temperature_task_weights:
            return None
        return self.num_tasks * torch.softmax(-self.log_alpha.detach(), dim=0)

    def _loss_inputs(self, batch: Any) -> tuple[Tensor, CriticBatch, ActorBatch, dict[str, Tensor]]:
        """``(alpha [T], critic batch with Bellman targets, actor batch with fresh policy
        noise, detached critic parameters)`` of one update."""
        alpha = self.temperatures()
        targets = self._bellman_targets(batch, alpha)
        critic_batch = CriticBatch(batch.obs, batch.actions, targets)
        actor_batch = ActorBatch(batch.obs, self._noise(tuple(batch.actions.shape)), alpha)
        critic_params = {n: p.detach() for n, p in self.critic.named_parameters()}
        return alpha, critic_batch, actor_batch, critic_params

    def _loss_scale(
        self, critic: PendingStep, actor: PendingStep, alpha_losses: Tensor
    ) -> tuple[Tensor | None, Tensor | None]:
        """``(s [T] or None, extreme [T] bool or None)``: the critic's and actor's loss scale
        of this update (module docstring) and PaCo's extreme tasks. Device-side only."""
        scale = self._temperature_scale()
        extreme = None
        if self.extreme_tasks != "off":
            total = critic.losses.detach() + actor.losses.detach() + alpha_losses.detach()
            extreme = total > self.extreme_loss_threshold  # NaN: False (the skip handles it)
            keep = (~extreme).to(total.dtype)
            scale = keep if scale is None else scale * keep
        return scale, extreme

    def _handle_extreme_tasks(
        self,
        extreme: Tensor | None,
        applied: Tensor | None,
        metrics: dict[str, Tensor],
        scale: Tensor | None,
    ) -> None:
        """After an applied update: count the masked tasks and (``mask-reset``) reset their
        composition vectors; ``applied`` is the sync-free path's device flag (None: applied)."""
        if scale is not None:
            metrics["loss_scale"] = scale
        if extreme is None:
            return
        if applied is not None:
            extreme = extreme & applied
        self.extreme_task_counts += extreme.to(torch.int64)
        metrics["extreme_task_count"] = self.extreme_task_counts.clone()
        if self.extreme_tasks == "mask-reset":
            draws = torch.rand(
                (self.num_tasks, self.num_tasks),
                generator=self.reset_generator,
                device=self.device,
            )
            reset_compositions(self._paco_pairs(), convex_mixtures(extreme, draws))

    def _paco_pairs(self) -> list[tuple[PaCoNetwork, PaCoNetwork | None]]:
        """(online, target) PaCo networks: the actor's (no target) and both critics'."""
        pairs: list[tuple[PaCoNetwork, PaCoNetwork | None]] = [(self.actor.net, None)]
        pairs += [(getattr(self.critic, q), getattr(self.critic_target, q)) for q in ("q1", "q2")]
        return pairs

    def _temperature_step(
        self,
        critic_step: NetworkStep,
        actor_step: NetworkStep,
        alpha: Tensor,
        alpha_losses: Tensor,
        extreme: Tensor | None,
    ) -> dict[str, Tensor]:
        """Write log_alpha's gradient from the temperature losses [T] (a task in ``extreme``
        [T] gets none; with ``agent.shared_temperature`` every entry gets their mean); return
        the update's per-task metrics [T]."""
        masked = alpha_losses if extreme is None else alpha_losses * (~extreme).to(alpha.dtype)
        (grad,) = torch.autograd.grad(masked.sum(), [self.log_alpha])
        if self.config.shared_temperature:
            grad = grad.mean().expand_as(grad).clone()
        self.log_alpha.grad = grad
        return {
            "critic_loss": critic_step.losses,
            "actor_loss": actor_step.losses,
            "alpha_loss": alpha_losses.detach(),
            "alpha": alpha,
            "mean_q": critic_step.aux,
            "log_prob": actor_step.aux,
        }

    def _result(
        self,
        skipped: bool | Tensor,
        metrics: dict[str, Tensor],
        critic_step: NetworkStep,
        actor_step: NetworkStep,
    ) -> UpdateResult:
        steps = {"critic": critic_step, "actor": actor_step}
        return UpdateResult(
            skipped=skipped,
            metrics=metrics,
            stats={name: st.stats for name, st in steps.items() if st.stats},
            interference={name: st.cosine for name, st in steps.items() if st.cosine is not None},
            weights={
                name: st.weights
                for name, st in steps.items()
                if st.weights is not None and name in self.aggregators
            },
        )

    def _update_sync_free(self, batch: Any, collect_stats: bool) -> UpdateResult:
        """:meth:`update` without host reads: the skip decision is a device flag that masks
        every state change (same results as the per-update path up to float rounding)."""
        alpha, critic_batch, actor_batch, critic_params = self._loss_inputs(batch)
        self._zero_grads()
        critic_pending = self.gradients["critic"].begin(critic_batch, self.task_index, ())
        actor_pending = self.gradients["actor"].begin(
            actor_batch, self.task_index, (critic_params,)
        )
        alpha_losses = temperature_losses(self.log_alpha, actor_pending.aux, self.target_entropy)
        scale, extreme = self._loss_scale(critic_pending, actor_pending, alpha_losses)
        critic_step = self.gradients["critic"].finish_unchecked(
            critic_pending, scale, collect_stats
        )
        actor_step = self.gradients["actor"].finish_unchecked(actor_pending, scale, collect_stats)
        metrics = self._temperature_step(critic_step, actor_step, alpha, alpha_losses, extreme)
        grads = [p.grad for m in (self.critic, self.actor) for p in m.parameters()]
        ok = finite_flag([critic_step.losses, actor_step.losses, *grads, self.log_alpha.grad])
        self._clip_gradients()  # a clipped NaN stays NaN and is masked below
        for optimizer in (self.critic_optimizer, self.actor_optimizer, self.alpha_optimizer):
            masked_adam_step(optimizer, ok)
        self._count_masked(ok, ok)
        self._handle_extreme_tasks(extreme, ok, metrics, scale)
        return self._result(~ok, metrics, critic_step, actor_step)

    def clip_norms(self) -> dict[str, float] | None:
        """The global norm each network's gradient is clipped at (None: no clipping).

        ``agent.grad_clip`` c is stated for the mean-reduced loss, as in the reference MT-SAC
        (the loss averaged over all samples of all tasks, and over the twin critics). Our
        per-task losses are means over samples, summed over the T tasks by the summed-loss
        path (and each critic loss sums its two Q networks), so a mean-loss gradient times
        T (actor) or 2T (critic) is ours: we clip at ``{"critic": 2 T c, "actor": T c}``. For
        ``uniform`` without task weights this is exactly the reference's clip; other
        aggregators get the same bound in the same units.
        """
        if self.config.grad_clip is None:
            return None
        clip = float(self.config.grad_clip)
        return {"critic": 2 * self.num_tasks * clip, "actor": self.num_tasks * clip}

    def _clip_gradients(self) -> None:
        """``agent.grad_clip``: clip the critic's and the actor's gradient norms, each at its
        :meth:`clip_norms` entry."""
        self._clip_network("critic")
        self._clip_network("actor")

    def _clip_network(self, name: str) -> None:
        """Clip the gradient norm of network ``name`` (critic or actor) at its
        :meth:`clip_norms` entry (nothing without ``agent.grad_clip``)."""
        norms = self.clip_norms()
        if norms is not None:
            torch.nn.utils.clip_grad_norm_(getattr(self, name).parameters(), norms[name])

    def _aggregator_snapshot(self) -> dict[str, dict[str, Any]]:
        """Deep copies of the aggregators' states (small: weights, EMAs, RNG states)."""
        return {name: copy.deepcopy(agg.state_dict()) for name, agg in self.aggregators.items()}

    def _restore_aggregators(self, snapshot: dict[str, dict[str, Any]]) -> None:
        """Load the snapshotted states back (the aggregators it names)."""
        for name, state in snapshot.items():
            self.aggregators[name].load_state_dict(state)

    @torch.no_grad()
    def _update_targets(self) -> None:
        online = list(self.critic.parameters())
        target = list(self.critic_target.parameters())
        torch._foreach_lerp_(target, online, self.config.tau)

    def _check_batch(self, batch: Any) -> None:
        num_tasks = self.num_tasks
        expected = {
            "obs": (num_tasks, None, self.obs_dim),
            "actions": (num_tasks, None, self.action_dim),
            "rewards": (num_tasks, None),
            "next_obs": (num_tasks, None, self.obs_dim),
            "dones": (num_tasks, None),
        }
        for name, shape in expected.items():
            tensor = getattr(batch, name, None)
            if tensor is None:
                raise ValueError(f"batch has no field {name!r}")
            ok = tensor.dim() == len(shape) and all(
                s is None or s == actual for s, actual in zip(shape, tensor.shape, strict=True)
            )
            if not ok:
                pretty = ", ".join("B" if s is None else str(s) for s in shape)
                raise ValueError(
                    f"batch.{name} must have shape [{pretty}], got {tuple(tensor.shape)}"
                )

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically: networks, targets, optimisers,
        temperatures, aggregator states, the noise generator and the counters."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "aggregators": {name: agg.state_dict() for name, agg in self.aggregators.items()},
            "noise_generator": self.noise_generator.get_state(),
            "num_updates": self.num_updates,
            "nonfinite_skips": self.nonfinite_skips,
            "consecutive_nonfinite": self.consecutive_nonfinite,
            "update_calls": self.update_calls,
            "extreme_task_counts": self.extreme_task_counts.clone(),
            "reset_generator": self.reset_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (raises ``ValueError`` on a shape or name mismatch)."""
        try:
            self.actor.load_state_dict(state["actor"])
            self.critic.load_state_dict(state["critic"])
            self.critic_target.load_state_dict(state["critic_target"])
        except RuntimeError as error:
            raise ValueError(f"agent state does not fit these networks: {error}") from None
        if tuple(state["log_alpha"].shape) != (self.num_tasks,):
            raise ValueError(
                f"agent state has {tuple(state['log_alpha'].shape)} temperatures, "
                f"expected [{self.num_tasks}]"
            )
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        if set(state["aggregators"]) != set(self.aggregators):
            raise ValueError(
                f"agent state aggregates {sorted(state['aggregators'])}, "
                f"this config aggregates {sorted(self.aggregators)}"
            )
        for name, agg in self.aggregators.items():
            agg.load_state_dict(state["aggregators"][name])
        self.noise_generator.set_state(state["noise_generator"].cpu())
        self.num_updates = int(state["num_updates"])
        self.nonfinite_skips = int(state["nonfinite_skips"])
        self.consecutive_nonfinite = int(state["consecutive_nonfinite"])
        # Checkpoints written before update_calls existed: every call was applied or skipped.
        self.update_calls = int(state.get("update_calls", self.num_updates + self.nonfinite_skips))
        # Checkpoints written before PaCo's extreme-task handling existed have neither.
        if "extreme_task_counts" in state:
            self.extreme_task_counts.copy_(state["extreme_task_counts"])
        if "reset_generator" in state:
            self.reset_generator.set_state(state["reset_generator"].cpu())
