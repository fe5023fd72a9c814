"""Config schema of a multi-task SAC training run (``mtrl-align train CONFIG.yaml``).

Every hyper-parameter lives in one of the dataclasses below, with a one-line docstring per
field. A YAML file only lists what differs from these defaults; ``key=value`` overrides on the
command line go on top (see :func:`load_train_config`). Defaults follow the common MT10 SAC
settings (3 x 400 MLPs, Adam 3e-4, gamma 0.99, tau 0.005, 128 samples per task, 1e6 buffer).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtrl_align.config_io import ConfigError, load_config, to_dict

MLP_VARIANTS = ("shared", "task-encoder", "multi-head")
VARIANTS = (*MLP_VARIANTS, "soft-modules", "care", "moore", "paco", "film", "film-per-unit")
NETWORKS = ("critic", "actor")
REWARD_VERSIONS = ("v1", "v2")
VECTOR_STRATEGIES = ("sync", "async")
INIT_SCHEMES = ("torch", "he-uniform", "orthogonal")
LOG_STD_BOUNDS = ("tanh", "clip")
CRITIC_LOSSES = ("mse", "two-hot", "hl-gauss", "c51")
Q_REDUCTIONS = ("min", "mean")
TRUNKS = ("mlp", "bronet")
DEVICES = ("cpu", "cuda", "auto")


@dataclass
class EnvConfig:
    """Which Meta-World tasks to train on and how episodes are run."""

    benchmark: str = "MT10"
    """Task set: MT10, MT50 or MT1:<task-name>."""
    tasks: list[str] | None = None
    """Subset of the benchmark's task names to train on; null means all of them."""
    max_episode_steps: int = 500
    """Episode length (truncation); the paper protocol uses 150."""
    reward_version: str = "v2"
    """Meta-World reward function version: v2 (default of metaworld 3) or v1."""
    vector_strategy: str = "sync"
    """Vector env backend: sync (all tasks in this process) or async (worker processes)."""
    num_workers: int | None = None
    """async only: env worker processes (null: one per CPU core, at most one per task)."""
    terminate_on_success: bool = False
    """End an episode as soon as the task is solved."""


@dataclass
class AgentConfig:
    """Multi-task SAC networks and their optimisation."""

    variant: str = "shared"
    """Network layout: shared, task-encoder, multi-head, soft-modules, care, moore, paco, film or
    film-per-unit."""
    actor_hidden: list[int] = field(default_factory=lambda: [400, 400, 400])
    """Hidden layer widths of the actor MLP."""
    critic_hidden: list[int] = field(default_factory=lambda: [400, 400, 400])
    """Hidden layer widths of each of the two critic MLPs."""
    task_embedding_dim: int = 50
    """Size of the learned task embedding (task-encoder, care, film, film-per-unit variants)."""
    shared_task_embedding: bool = False
    """task-encoder only: BRC's task embedding, one table [T, task_embedding_dim] in the critic,
    read as unit-length rows by both Q networks and, as a constant (no actor gradient), by the
    actor (BRC: 32 wide); false: actor, q1 and q2 each learn an unnormalised table."""
    num_experts: int | None = None
    """Experts (moore), encoders (care) or parameter sets (paco); null = MT10 default 4 / 6 / 5."""
    num_modules: int | None = None
    """Modules per layer of soft-modules; null = MT10 default 2."""
    num_module_layers: int | None = None
    """Layers of modules of soft-modules; null = MT10 default 2."""
    module_hidden: int | None = None
    """Width of each soft-modules module and of its routing network; null = MT10 default 256."""
    identical_init: bool | None = None
    """paco only: start the K parameter sets of every layer identical (the authors'
    use_identical_init); null = true (their MT10 config)."""
    extreme_tasks: str | None = None
    """paco only, the authors' handling of a task whose loss (critic + actor + temperature)
    exceeds agent.extreme_loss_threshold: mask-reset (its losses count zero that update and its
    composition vectors are reset to a random convex combination of the other tasks'), mask
    (only the first), off; null = mask-reset (their MT10 config)."""
    extreme_loss_threshold: float | None = None
    """paco only: the per-task loss above which agent.extreme_tasks acts; null = 3e3 (the
    authors' MT10 config)."""
    task_descriptions: str | None = None
    """care only: JSON file of frozen per-task description embeddings, {task name: [P numbers]}
    (mtrl's metadata format), used for CARE's context instead of a learned task table; null:
    the learned table."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin critics."""
    alpha_lr: float = 3e-4
    """Adam learning rate of the per-task log-temperatures."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak factor of the target critics (target += tau * (online - target))."""
    target_update_every: int = 1
    """Update the target critics every this many updates."""
    init_temperature: float = 1.0
    """Initial entropy temperature alpha of every task."""
    shared_temperature: bool = False
    """One temperature for all tasks (BRC): the T entries of log_alpha start equal and each
    gets the mean over tasks of the per-task temperature-loss gradients, so they stay equal;
    false: one temperature per task (MT-SAC)."""
    target_entropy: float | None = None
    """Target entropy per task; null means -|A| (minus the action dimension)."""
    log_std_min: float = -20.0
    """Lower bound of the actor's Gaussian log standard deviation."""
    log_std_max: float = 2.0
    """Upper bound of the actor's Gaussian log standard deviation."""
    grad_clip: float | None = None
    """Clip the critic's and the actor's gradient (each its own global norm, after aggregation)
    at this norm, stated for the mean-reduced loss (the reference MT-SAC's): our losses sum over
    the T tasks (and the critic's over its two Q networks), so the norm applied is
    grad_clip * T for the actor and grad_clip * 2T for the critic, whatever the aggregator
    (reference: 1.0); null disables."""
    init: str = "torch"
    """Initial weights of actor and critics: torch (PyTorch's Linear default, weights and
    biases U(+-1/sqrt(fan_in))), he-uniform (the reference MT-SAC's: weights
    U(+-sqrt(6/fan_in)), biases 0) or orthogonal (BRC's: orthogonal weights times sqrt(2),
    biases 0)."""
    actor_head_init: float | None = None
    """Actor output layer's weights and biases from U(-x, x) (reference: 1e-3); null: as the
    hidden layers (agent.init)."""
    critic_head_init: float | None = None
    """Q output layers' weights and biases from U(-x, x) (reference: 3e-3); null: as the hidden
    layers (agent.init)."""
    adam_eps: float = 1e-8
    """Adam's epsilon for actor, critics and temperatures (PyTorch's default 1e-8; the
    reference MT-SAC uses 1e-5)."""
    weight_decay: float = 0.0
    """Decoupled weight decay of actor and critics (AdamW; BRC: optax.adamw's default 1e-4);
    0: plain Adam."""
    alpha_beta1: float = 0.9
    """Adam's beta1 of the temperatures (PyTorch's default 0.9; BRC: 0.5)."""
    log_std_bound: str = "tanh"
    """How the actor's log-std stays in [log_std_min, log_std_max]: tanh (smooth squash; a raw
    output near 0 means std ~1e-4 for [-20, 2]) or clip (the reference's clamp; raw 0 means
    std 1)."""
    critic_loss: str = "mse"
    """Critic target and loss: mse (scalar Q, squared TD error) or a categorical critic with
    num_bins logits over [-v_max, v_max], Q = the expectation, trained by cross-entropy to the
    two-hot or hl-gauss distribution of the clipped scalar Bellman target, or to c51: the
    target critics' distribution shifted by the soft Bellman update and projected onto the
    support (BRC's target)."""
    actor_after_critic_step: bool = False
    """Compute the actor's (and so the temperatures') losses with the critic after this
    update's critic step, as metaworld-algorithms' MTSAC and BRC do; false: every loss of an
    update from the same pre-update parameters (the original SAC's simultaneous step). With
    true, a non-finite actor step after a finite critic step skips the actor and temperature
    steps only (the critic's stays). paco needs agent.extreme_tasks=off with it (its mask
    reads the actor losses before any step)."""
    q_reduction: str = "min"
    """How the twin critics become one Q in the Bellman target and the actor loss: min (SAC's
    clipped double Q) or mean (BRC: the mean of the two critics, for a categorical critic the
    expectation of their mean distribution, which is the mean of their expectations)."""
    num_bins: int = 101
    """Atoms of the categorical critic's support (BRC's default 101)."""
    v_max: float = 10.0
    """Largest atom of the categorical support [-v_max, v_max], and the return that reward
    normalisation scales each task to (BRC's default 10)."""
    hl_gauss_sigma: float = 0.75
    """hl-gauss: standard deviation of the Gaussian in bin widths (0.75: Farebrother et al.
    2024, "Stop Regressing")."""
    reward_normalization: bool = False
    """Scale task i's rewards in every update by v_max / (G_i + lambda_i) (BRC): G_i the
    largest absolute discounted return of its finished training episodes so far, lambda_i =
    alpha_i |target_entropy| / (2 (1 - gamma)) the entropy correction."""
    critic_trunk: str = "mlp"
    """Hidden layers of the critics: mlp (critic_hidden Linear-ReLU layers) or bronet (BRC's
    residual LayerNorm blocks of width critic_hidden[0]; critic_hidden must be one width)."""
    actor_trunk: str = "mlp"
    """Hidden layers of the actor: mlp or bronet (width actor_hidden[0]), as critic_trunk."""
    critic_blocks: int = 2
    """Residual blocks of a bronet critic (BRC's critic depth 2)."""
    actor_blocks: int = 1
    """Residual blocks of a bronet actor (BRC's actor depth 1)."""
    layer_norm: bool = False
    """LayerNorm after every hidden Linear of the mlp trunks (Linear-LayerNorm-ReLU); bronet
    trunks always have it."""


@dataclass
class AggregationConfig:
    """How the per-task gradients of the shared parameters become one update."""

    method: str = "uniform"
    """Aggregator name from mtrl_align.aggregation.available(), e.g. uniform, aligned-mtl."""
    networks: list[str] | None = None
    """Networks whose shared parameters are aggregated; the others use the plain loss sum.
    null: [critic, actor], or [critic] for methods only defined for losses >= 0."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword options passed to the aggregator (free-form, e.g. {c: 0.9} for cagrad)."""
    task_weights: list[float] | None = None
    """Pre-defined task weights w [T] (in the order of env.tasks); null means all ones. Task t's
    loss counts w_t times everywhere: the aggregator gets w, and each task-specific parameter
    (head, embedding row) gets w_t times its own task's gradient. ``options.task_weights`` is
    the same setting (moved here when given there)."""
    temperature_task_weights: bool = False
    """Scale each task's critic and actor loss by s_t = T softmax(-log alpha)_t, recomputed
    every update from the current temperatures, no gradient (Soft Modularization's and the
    reference MT-SAC's use_task_weights): tasks the policy is still uncertain on (high alpha)
    count less. The aggregator sees the scaled losses and rows s_t g_t, with task_weights still
    as its pre-defined weights (uniform: direction J^T (w * s)); any method."""


@dataclass
class LoopConfig:
    """Length of training, replay and update schedule."""

    total_env_steps: int = 2_000_000
    """Environment steps per task (each vector step advances every task by one)."""
    warmup_env_steps: int = 1500
    """Steps per task with uniformly random actions before learning starts."""
    batch_size_per_task: int = 128
    """Transitions sampled per task for each update (batch is [T, B, ...])."""
    buffer_capacity: int = 1_000_000
    """Replay capacity in transitions, all tasks together (capacity / T per task; the oldest
    transitions of a task are overwritten first)."""
    updates_per_env_step: int = 1
    """Gradient updates after each vector env step (once warm-up is over)."""
    checkpoint_every_env_steps: int | None = None
    """Write checkpoints/latest.pt this often (per-task steps); null means at every evaluation."""
    max_consecutive_nonfinite: int = 10
    """Stop the run after this many updates in a row skipped for NaN/inf losses or gradients."""
    log_every_updates: int = 100
    """Write losses, temperatures, weights and gradient stats to TensorBoard this often."""
    progress_bar: bool = True
    """Show a tqdm progress bar (env steps, env steps/s, last mean success)."""
    compile: str = "auto"
    """torch.compile the all-task forward passes of the update: on, off, or auto (off: on the
    CPU the compiled update measured slower than eager, scripts/benchmark.py --sections loop;
    not yet measured on a GPU). Compile time is paid once per process, at the first update."""
    sync_free: str = "auto"
    """Decide skipped (NaN/inf) updates on the device, so that nothing inside an update waits
    for it: on, off, or auto (on for a CUDA device when every network uses the summed loss,
    i.e. method uniform or aggregation.networks=[]; off on the CPU, where reading a value back
    costs nothing). The skip counters and the max_consecutive_nonfinite stop are read back at
    logged updates only. Results equal the per-update path up to float rounding."""
    overlap_env_steps: bool = False
    """Step the envs (env.vector_strategy=async workers) while the learner updates. Acting
    still uses the newest policy, but the updates after step k sample a replay buffer that
    does not yet hold transition k (it arrives one step later). Off: the exact protocol."""


@dataclass
class EvalConfig:
    """Periodic evaluation with the deterministic policy."""

    every_env_steps: int = 20_000
    """Evaluate every this many steps per task (and always once at the end)."""
    episodes_per_task: int = 10
    """Evaluation episodes per task."""
    seed_offset: int = 0
    """The evaluation env is built with seed + seed_offset: 0 evaluates on the training goal
    variants (Meta-World's protocol); another value draws different goal variants."""


@dataclass
class TrainConfig:
    """A full training run: seed, device, run directory and the parts above."""

    seed: int = 0
    """Seed of every random number generator (python, numpy, torch, envs, replay)."""
    device: str = "auto"
    """Where networks and replay live: cpu, cuda, cuda:N or auto."""
    run_dir: str | None = None
    """Run directory; null means <runs_root>/<benchmark>_<method>_<variant>_s<seed>_<time>."""
    runs_root: str = "runs"
    """Parent folder of automatically named run directories."""
    num_threads: int | None = None
    """torch CPU threads (torch.set_num_threads); null leaves torch's default."""
    flush_denormals: bool = False
    """Flush subnormal floats (below ~1.2e-38 in float32) to zero on the CPU while training
    (torch.set_flush_denormal, on the training thread), as JAX/XLA's CPU backend does. Results
    change only at that scale, like with another thread count, so a run may switch it between
    sessions. A guard on Intel CPUs, where arithmetic on subnormals is slow: an update of a
    categorical critic sharpened until 14% of its atom probabilities were subnormal took 1.78x
    as long with them kept (scripts/benchmark.py --sections efficient)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """Tasks and episodes."""
    agent: AgentConfig = field(default_factory=AgentConfig)
    """Networks and optimisers."""
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    """Gradient aggregation of the shared parameters."""
    train: LoopConfig = field(default_factory=LoopConfig)
    """Training loop schedule."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation schedule."""


# ------------------------------------------------------------------------------------------
def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"bad value for config key '{key}': {value!r}; choose from: {', '.join(allowed)}"
        )


def _positive(key: str, value: float | int, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"bad value for config key '{key}': {value!r}; must be {bound}")


COMPILE_MODES = ("auto", "on", "off")


def resolve_compile(mode: str, device: str) -> bool:
    """Whether ``train.compile=mode`` compiles on ``device``: auto is eager everywhere for now
    (CPU: the inductor-compiled update measured ~2x the eager CPU time at 2 x 128 and 1.3x at
    3 x 400; GPU: no measurement yet, so the safe eager path)."""
    del device
    return mode == "on"


SYNC_FREE_MODES = ("auto", "on", "off")


def summed_loss_only(agg: AggregationConfig) -> bool:
    """Whether every network's gradient is the summed (weighted) loss: no aggregator logic."""
    return agg.method == "uniform" or agg.networks == []


def resolve_sync_free(mode: str, device: str, agg: AggregationConfig) -> bool:
    """Whether ``train.sync_free=mode`` runs the sync-free update on ``device`` (auto: on a
    CUDA device with summed-loss gradients; ``on`` is validated by validate_train_config)."""
    if mode == "auto":
        return str(device).startswith("cuda") and summed_loss_only(agg)
    return mode == "on"


def default_networks(method: str) -> list[str]:
    """Networks a method aggregates when ``aggregation.networks`` is null: both, except for
    methods only defined for losses >= 0 (the SAC actor loss is negative once Q is large)."""
    from mtrl_align import aggregation

    if aggregation.aggregator_class(method).requires_positive_losses:
        return ["critic"]
    return ["critic", "actor"]


def resolve_aggregation(agg: AggregationConfig) -> None:
    """In place: fill in the default networks, refuse the actor for methods that need losses
    >= 0, and keep one source of pre-defined task weights (``ConfigError`` otherwise)."""
    from mtrl_align import aggregation

    if agg.networks is None:
        agg.networks = default_networks(agg.method)
    for network in agg.networks:
        _choice("aggregation.networks", network, NETWORKS)
    needs_nonnegative = aggregation.aggregator_class(agg.method).requires_positive_losses
    if "actor" in agg.networks and needs_nonnegative:
        raise ConfigError(
            f"aggregation.method={agg.method} is only defined for losses >= 0, but the SAC actor "
            "loss (alpha log pi - Q) is negative once Q is large; use "
            "aggregation.networks=[critic] (the default for this method)"
        )
    if "task_weights" in agg.options:
        if agg.task_weights is not None:
            raise ConfigError(
                "pre-defined task weights are set twice (aggregation.task_weights and "
                "aggregation.options.task_weights); keep only aggregation.task_weights"
            )
        agg.task_weights = list(agg.options.pop("task_weights"))


_NETWORK_OPTION_VARIANTS = {
    "num_experts": ("care", "moore", "paco"),
    "num_modules": ("soft-modules",),
    "num_module_layers": ("soft-modules",),
    "module_hidden": ("soft-modules",),
    "identical_init": ("paco",),
    "extreme_tasks": ("paco",),
    "extreme_loss_threshold": ("paco",),
    "task_descriptions": ("care",),
}
EXTREME_TASK_MODES = ("mask-reset", "mask", "off")


def _validate_efficient_critic(agent: AgentConfig) -> None:
    """Categorical critic, reward normalisation and trunk options (``ConfigError``)."""
    _choice("agent.critic_loss", agent.critic_loss, CRITIC_LOSSES)
    _choice("agent.q_reduction", agent.q_reduction, Q_REDUCTIONS)
    if isinstance(agent.num_bins, bool) or agent.num_bins < 2:
        raise ConfigError(
            f"bad value for config key 'agent.num_bins': {agent.num_bins!r}; must be >= 2"
        )
    _positive("agent.v_max", agent.v_max)
    _positive("agent.hl_gauss_sigma", agent.hl_gauss_sigma)
    for network in NETWORKS:
        kind = getattr(agent, f"{network}_trunk")
        _choice(f"agent.{network}_trunk", kind, TRUNKS)
        _positive(f"agent.{network}_blocks", getattr(agent, f"{network}_blocks"))
        widths = getattr(agent, f"{network}_hidden")
        if kind == "bronet" and len(widths) != 1:
            raise ConfigError(
                f"agent.{network}_trunk=bronet takes one width (agent.{network}_hidden=[w]; the "
                f"depth is agent.{network}_blocks), got agent.{network}_hidden={widths!r}"
            )
        if kind != "mlp" and agent.variant not in MLP_VARIANTS:
            raise ConfigError(
                f"agent.{network}_trunk={kind} only applies to agent.variant in "
                f"{', '.join(MLP_VARIANTS)}, not {agent.variant!r}; use {network}_trunk=mlp"
            )
    if agent.reward_normalization and not agent.gamma < 1.0:
        raise ConfigError(
            f"agent.reward_normalization=true needs agent.gamma < 1 (its returns are discounted "
            f"sums and its entropy correction has 1 / (1 - gamma)), got {agent.gamma}"
        )
    if agent.layer_norm and agent.variant not in MLP_VARIANTS:
        raise ConfigError(
            f"agent.layer_norm=true only applies to agent.variant in {', '.join(MLP_VARIANTS)}, "
            f"not {agent.variant!r}; use agent.layer_norm=false"
        )


def validate_train_config(config: TrainConfig) -> TrainConfig:
    """Check values that the type system cannot (choices, ranges); raise ``ConfigError``."""
    from mtrl_align import aggregation

    if config.device != "auto" and config.device != "cpu" and not config.device.startswith("cuda"):
        raise ConfigError(
            f"bad value for config key 'device': {config.device!r}; "
            "choose from: cpu, cuda, cuda:N, auto"
        )
    _choice("env.reward_version", config.env.reward_version, REWARD_VERSIONS)
    _choice("env.vector_strategy", config.env.vector_strategy, VECTOR_STRATEGIES)
    # YAML reads a bare on/off as a boolean: take it back to the mode's name
    spelled = {"true": "on", "false": "off"}
    config.train.compile = spelled.get(str(config.train.compile).lower(), config.train.compile)
    _choice("train.compile", config.train.compile, COMPILE_MODES)
    config.train.sync_free = spelled.get(
        str(config.train.sync_free).lower(), config.train.sync_free
    )
    _choice("train.sync_free", config.train.sync_free, SYNC_FREE_MODES)
    if config.agent.extreme_tasks is not None:  # a bare off
        extreme = config.agent.extreme_tasks
        config.agent.extreme_tasks = "off" if str(extreme).lower() == "false" else extreme
    if config.train.sync_free == "on" and not summed_loss_only(config.aggregation):
        raise ConfigError(
            "train.sync_free=on needs summed-loss gradients (aggregation.method=uniform or "
            f"aggregation.networks=[]); aggregation.method={config.aggregation.method} runs "
            "host-side aggregator logic in every update; use train.sync_free=auto or off"
        )
    if config.env.num_workers is not None:
        _positive("env.num_workers", config.env.num_workers)
    if config.train.overlap_env_steps and config.env.vector_strategy != "async":
        raise ConfigError(
            "train.overlap_env_steps=true needs env.vector_strategy=async (worker processes "
            "step the envs during the update); got "
            f"env.vector_strategy={config.env.vector_strategy}"
        )
    _positive("env.max_episode_steps", config.env.max_episode_steps)
    if config.env.tasks is not None and not config.env.tasks:
        raise ConfigError(
            "bad value for config key 'env.tasks': empty list; use null for all tasks"
        )
    if config.env.tasks is not None and len(set(config.env.tasks)) != len(config.env.tasks):
        raise ConfigError(
            f"bad value for config key 'env.tasks': duplicate names in {config.env.tasks}"
        )
    _choice("agent.variant", config.agent.variant, VARIANTS)
    for key, variants in _NETWORK_OPTION_VARIANTS.items():
        value = getattr(config.agent, key)
        if value is None:
            continue
        if key == "extreme_tasks":
            _choice("agent.extreme_tasks", value, EXTREME_TASK_MODES)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            _positive(f"agent.{key}", value)
        if config.agent.variant not in variants:
            raise ConfigError(
                f"config key 'agent.{key}' only applies to variant(s) {', '.join(variants)}; "
                f"agent.variant is {config.agent.variant!r} (set it to null)"
            )
    for key in ("actor_hidden", "critic_hidden"):
        widths = getattr(config.agent, key)
        if not widths or any(w <= 0 for w in widths):
            raise ConfigError(
                f"bad value for config key 'agent.{key}': {widths!r}; need one or more widths > 0"
            )
    for key in ("actor_lr", "critic_lr", "alpha_lr", "init_temperature", "task_embedding_dim"):
        _positive(f"agent.{key}", getattr(config.agent, key))
    if not 0.0 <= config.agent.gamma <= 1.0:
        raise ConfigError(
            f"bad value for config key 'agent.gamma': {config.agent.gamma}; must be in [0, 1]"
        )
    if not 0.0 < config.agent.tau <= 1.0:
        raise ConfigError(
            f"bad value for config key 'agent.tau': {config.agent.tau}; must be in (0, 1]"
        )
    if config.agent.log_std_min >= config.agent.log_std_max:
        raise ConfigError("agent.log_std_min must be smaller than agent.log_std_max")
    if config.agent.grad_clip is not None:
        _positive("agent.grad_clip", config.agent.grad_clip)
    extreme = config.agent.extreme_tasks or "mask-reset"
    if config.agent.actor_after_critic_step and config.agent.variant == "paco" and extreme != "off":
        raise ConfigError(
            "agent.actor_after_critic_step=true needs agent.extreme_tasks=off with variant "
            f"paco (got {extreme!r}): paco's extreme-task mask reads the actor losses before "
            "any step"
        )
    _choice("agent.init", config.agent.init, INIT_SCHEMES)
    _choice("agent.log_std_bound", config.agent.log_std_bound, LOG_STD_BOUNDS)
    for key in ("actor_head_init", "critic_head_init"):
        if getattr(config.agent, key) is not None:
            _positive(f"agent.{key}", getattr(config.agent, key))
    _positive("agent.adam_eps", config.agent.adam_eps)
    if not config.agent.weight_decay >= 0:
        raise ConfigError(
            f"bad value for config key 'agent.weight_decay': {config.agent.weight_decay!r}; "
            "must be >= 0"
        )
    if not 0.0 <= config.agent.alpha_beta1 < 1.0:
        raise ConfigError(
            f"bad value for config key 'agent.alpha_beta1': {config.agent.alpha_beta1!r}; "
            "must be in [0, 1)"
        )
    _positive("agent.target_update_every", config.agent.target_update_every)
    _validate_efficient_critic(config.agent)
    if config.agent.shared_task_embedding and config.agent.variant != "task-encoder":
        raise ConfigError(
            "agent.shared_task_embedding=true needs agent.variant=task-encoder (BRC's task "
            f"embedding replaces its per-network tables), not {config.agent.variant!r}"
        )
    methods = aggregation.available()
    _choice("aggregation.method", config.aggregation.method, tuple(methods))
    resolve_aggregation(config.aggregation)
    if len(set(config.aggregation.networks)) != len(config.aggregation.networks):
        raise ConfigError(
            "bad value for config key 'aggregation.networks': "
            f"duplicates in {config.aggregation.networks}"
        )
    if config.aggregation.task_weights is not None and any(
        w < 0 for w in config.aggregation.task_weights
    ):
        raise ConfigError("aggregation.task_weights must all be >= 0")
    loop = config.train
    _positive("train.total_env_steps", loop.total_env_steps)
    _positive("train.warmup_env_steps", loop.warmup_env_steps, allow_zero=True)
    _positive("train.batch_size_per_task", loop.batch_size_per_task)
    _positive("train.buffer_capacity", loop.buffer_capacity)
    _positive("train.updates_per_env_step", loop.updates_per_env_step, allow_zero=True)
    _positive("train.max_consecutive_nonfinite", loop.max_consecutive_nonfinite)
    _positive("train.log_every_updates", loop.log_every_updates)
    if loop.checkpoint_every_env_steps is not None:
        _positive("train.checkpoint_every_env_steps", loop.checkpoint_every_env_steps)
    _positive("eval.every_env_steps", config.eval.every_env_steps)
    _positive("eval.episodes_per_task", config.eval.episodes_per_task)
    if config.num_threads is not None:
        _positive("num_threads", config.num_threads)
    return config


def load_train_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> TrainConfig:
    """Load a :class:`TrainConfig` from YAML plus ``key=value`` overrides and validate it.

    Raises:
        ConfigError: unknown key (with the closest valid one), wrong type or bad value.
    """
    config = load_config(TrainConfig, path, overrides, free_prefixes=("aggregation.options",))
    return validate_train_config(config)


def config_fingerprint(config: TrainConfig) -> str:
    """Short hash of the settings a checkpoint is tied to.

    Leaves out what may change between sessions of one run: run_dir, device, threads, flushing
    of subnormals, env worker processes, the progress bar, logging frequency and
    ``train.total_env_steps`` (so a run can be extended).
    Stored in checkpoints, so that resuming with another config is caught.
    """
    data = to_dict(config)
    for key in ("run_dir", "runs_root", "device", "num_threads", "flush_denormals"):
        data.pop(key, None)
    data["env"].pop("num_workers", None)
    for key in ("progress_bar", "total_env_steps", "log_every_updates", "compile", "sync_free"):
        data["train"].pop(key, None)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
