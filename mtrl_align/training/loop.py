"""The training loop of ``mtrl-align train``: env steps, replay, SAC updates, evaluation,
logging and checkpoints, readable top to bottom in :meth:`Trainer.run`.

Schedule (all counts are env steps *per task*; one vector step advances every task by one):

- steps < ``train.warmup_env_steps``: uniformly random actions, no updates;
- afterwards: actions from the stochastic policy and ``train.updates_per_env_step`` updates
  after each step;
- every ``eval.every_env_steps`` and at the end: evaluation on a separate env
  (``envs.evaluate``), appended to ``eval.jsonl`` and TensorBoard;
- checkpoints (``checkpoints/latest.pt``) are due every ``train.checkpoint_every_env_steps``
  (default: at every evaluation) and are written at the next episode boundary, where the env
  state can be restored exactly; so an interrupted run resumed with ``--resume`` continues
  bit-for-bit like an uninterrupted one (on CPU).
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.reward_normalization import RewardNormalizer
from agents.sac import MultiTaskSAC, UpdateResult
from mtrl_align.allocator import keep_freed_memory
from mtrl_align.config import (
    TrainConfig,
    resolve_compile,
    resolve_sync_free,
    validate_train_config,
)
from mtrl_align.config_io import save_config
from mtrl_align.device import describe_machine, resolve_device, set_flush_denormals
from mtrl_align.training.checkpoint import (
    capture_rng_states,
    load_run_checkpoint,
    restore_rng_states,
    run_meta,
    save_checkpoint,
)
from mtrl_align.training.logger import TrainLogger
from mtrl_align.training.run_files import RunFiles, default_run_name


class NonFiniteTrainingError(RuntimeError):
    """Too many updates in a row had NaN/inf losses or gradients."""


@dataclasses.dataclass
class LoopCounters:
    """Counters of the loop, saved in every checkpoint."""

    env_steps: int = 0
    """Env steps per task taken so far."""
    evaluations: int = 0
    """Evaluations done (= records in eval.jsonl)."""
    best_mean_success: float = -math.inf
    """Best mean evaluation success so far."""
    last_mean_success: float | None = None
    """Mean success of the latest evaluation."""
    wall_time_s: float = 0.0
    """Training wall time over all sessions, evaluations included."""
    cpu_time_s: float | None = 0.0
    """CPU seconds (user + system) over all sessions, of this process and of its env worker
    processes, up to the latest evaluation or checkpoint (each session counted from the end of
    its set-up, as ``wall_time_s``): the cost of a run, which other work beside it does not
    inflate as it does the wall time. ``None`` once a run resumed from a checkpoint that did
    not record it."""
    next_eval_step: int = 0
    """Env step of the next evaluation."""
    next_checkpoint_step: int = 0
    """Env step from which the next checkpoint is due."""


@dataclasses.dataclass
class Timings:
    """Seconds spent per part of the loop in this session (for perf logs and benchmarks)."""

    env: float = 0.0
    """Waiting for the env step (with overlap: only the part the update did not hide)."""
    act: float = 0.0
    """Choosing actions (policy forward or random warm-up actions)."""
    sample: float = 0.0
    """Replay sampling (included in ``update``)."""
    update: float = 0.0
    """Replay sampling and gradient updates."""
    evaluation: float = 0.0
    checkpoint: float = 0.0
    total: float = 0.0


def task_names_of(config: TrainConfig) -> str | list[str]:
    """The ``benchmark`` argument of ``envs.make_multitask_env`` for this config.

    ``env.tasks`` picks a subset of the benchmark's tasks (in the given order); unknown
    names raise ``ValueError`` listing the benchmark's tasks.
    """
    if config.env.tasks is None:
        return config.env.benchmark
    from envs.tasks import resolve_task_set

    available = resolve_task_set(config.env.benchmark, config.seed).task_names
    unknown = [name for name in config.env.tasks if name not in available]
    if unknown:
        raise ValueError(
            f"env.tasks has {unknown}, not in {config.env.benchmark}; "
            f"choose from: {', '.join(available)}"
        )
    return list(config.env.tasks)


def make_env(config: TrainConfig, seed: int):
    """The vectorized multi-task env of ``config`` seeded with ``seed``."""
    from envs import make_multitask_env

    return make_multitask_env(
        task_names_of(config),
        vector_strategy=config.env.vector_strategy,
        seed=seed,
        max_episode_steps=config.env.max_episode_steps,
        reward_version=config.env.reward_version,
        terminate_on_success=config.env.terminate_on_success,
        num_workers=config.env.num_workers,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """One training run (fresh or resumed) in one run directory.

    Args:
        config: the run's config (validated again here).
        resume: continue from ``RUN_DIR/checkpoints/latest.pt`` (``config.run_dir`` must be set).
    """

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        self.config = validate_train_config(config)
        self.device = resolve_device(config.device)
        keep_freed_memory()
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        set_flush_denormals(config.flush_denormals)
        if config.run_dir is None:
            if resume:
                raise ValueError("resume needs config.run_dir")
            name = default_run_name(
                config.env.benchmark, config.aggregation.method, config.agent.variant, config.seed
            )
            config.run_dir = str(Path(config.runs_root) / name)
        self.files = RunFiles(config.run_dir)
        if not resume and self.files.latest.is_file():
            raise ValueError(
                f"run directory '{self.files.root}' already holds a checkpoint; continue it with "
                f"'mtrl-align train --resume {self.files.root}' or choose another run_dir"
            )
        seed_everything(config.seed)
        self.env = make_env(config, config.seed)
        self.task_names = list(self.env.task_names)
        self.num_tasks = self.env.num_tasks
        self.eval_env = None
        self.agent = MultiTaskSAC(
            config.agent,
            config.aggregation,
            self.num_tasks,
            self.env.obs_dim,
            self.env.action_dim,
            device=self.device,
            seed=config.seed,
            compile=resolve_compile(config.train.compile, str(self.device)),
            sync_free=resolve_sync_free(
                config.train.sync_free, str(self.device), config.aggregation
            ),
            task_names=self.task_names,
        )
        self.reward_normalizer = (
            RewardNormalizer(
                self.num_tasks,
                config.agent.gamma,
                config.agent.v_max,
                self.agent.target_entropy,
            )
            if config.agent.reward_normalization
            else None
        )
        from envs import MultiTaskReplayBuffer

        self.buffer = MultiTaskReplayBuffer(
            self.num_tasks,
            self.env.obs_dim,
            self.env.action_dim,
            capacity=config.train.buffer_capacity,
            device=self.device,
            seed=config.seed + 2,
        )
        self.counters = LoopCounters(
            next_eval_step=config.eval.every_env_steps,
            next_checkpoint_step=self._checkpoint_every(),
        )
        self.timings = Timings()
        self._last_eval_step = -1
        self.last_evaluation: dict[str, Any] | None = None
        self.files.create()
        purge_step = None
        if resume:
            self.obs = self._restore(self.files.latest)
            purge_step = self.counters.env_steps + 1
            self.files.keep_evaluations(self.counters.evaluations)
        else:
            self.files.clear_outputs()  # left by an attempt that died before its first checkpoint
            self.obs = self.env.reset(seed=config.seed)
        save_config(config, self.files.config)
        self._cpu_at_start = self.counters.cpu_time_s
        self._cpu_clock_start = time.process_time()
        self._machine = describe_machine(self.device)
        self.logger = TrainLogger(self.files.tensorboard, self.task_names, purge_step=purge_step)

    # -- schedule ----------------------------------------------------------------------------
    def _checkpoint_every(self) -> int:
        every = self.config.train.checkpoint_every_env_steps
        return every if every is not None else self.config.eval.every_env_steps

    @property
    def finished(self) -> bool:
        return self.counters.env_steps >= self.config.train.total_env_steps

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> Path:
        """Train to ``train.total_env_steps``, evaluate at the end and return the run dir."""
        self.files.write_status("running", self.counters.env_steps)
        try:
            self._train()
            if self.counters.evaluations == 0 or self._last_eval_step != self.counters.env_steps:
                self._evaluate()
            self._save_latest()
        except BaseException as error:
            message = _describe(error)
            self.files.write_status("failed", self.counters.env_steps, message)
            self.close()
            raise
        self.files.write_status("finished", self.counters.env_steps)
        self.close()
        return self.files.root

    def _train(self) -> None:
        loop = self.config.train
        progress = _progress_bar(self.config, self.counters.env_steps)
        session_start = time.perf_counter()
        wall_at_start = self.counters.wall_time_s
        window_start, window_steps, window_updates, window_update_time = session_start, 0, 0, 0.0
        try:
            while not self.finished:
                update_time = self._step()
                window_steps += 1
                if update_time is not None:
                    window_updates += loop.updates_per_env_step
                    window_update_time += update_time
                now = time.perf_counter()
                self.counters.wall_time_s = wall_at_start + (now - session_start)
                self.timings.total = now - session_start
                if self.counters.env_steps >= self.counters.next_eval_step:
                    self._evaluate()
                    self.counters.next_eval_step += self.config.eval.every_env_steps
                if self.counters.env_steps >= self.counters.next_checkpoint_step and (
                    self.env.at_episode_boundary
                    or self.counters.env_steps
                    >= self.counters.next_checkpoint_step + self.config.env.max_episode_steps
                ):
                    self._save_latest()
                    every = self._checkpoint_every()
                    while self.counters.next_checkpoint_step <= self.counters.env_steps:
                        self.counters.next_checkpoint_step += every
                if now - window_start >= 5.0 or self.finished:
                    elapsed = now - window_start
                    perf = {
                        "env_steps_per_s": window_steps / elapsed,
                        "updates_per_s": window_updates / elapsed,
                        "update_ms": 1000 * window_update_time / max(window_updates, 1)
                        if window_updates
                        else math.nan,
                        "nonfinite_skips": float(self.agent.nonfinite_skips),
                    }
                    self.logger.log_perf(self.counters.env_steps, perf)
                    progress.set_postfix(
                        steps_per_s=f"{perf['env_steps_per_s']:.1f}",
                        success=_fmt(self.counters.last_mean_success),
                        refresh=False,
                    )
                    window_start, window_steps, window_updates, window_update_time = now, 0, 0, 0.0
                progress.update(1)
        finally:
            progress.close()

    def _step(self) -> float | None:
        """One vector env step and the updates after it; returns the update seconds (or None).

        With ``train.overlap_env_steps`` the updates run while the env workers step, so they
        sample the buffer before this step's transition is in it (see the config docstring).
        """
        config = self.config
        start = time.perf_counter()
        if self.counters.env_steps < config.train.warmup_env_steps:
            actions = self.env.sample_actions()
        else:
            actions = self.agent.act(self.obs).cpu().numpy()
        self.timings.act += time.perf_counter() - start
        overlap = config.train.overlap_env_steps
        learning = self.counters.env_steps + 1 > config.train.warmup_env_steps
        start = time.perf_counter()
        self.env.step_async(actions)
        step_number = self.counters.env_steps + 1
        update_time = self._updates(step_number) if overlap and learning else None
        result = self.env.step_wait()
        self.timings.env += time.perf_counter() - start - (update_time or 0.0)
        self.buffer.add(
            self.obs, actions, result.rewards, result.next_obs, result.terminated, result.truncated
        )
        if self.reward_normalizer is not None:
            self.reward_normalizer.observe(result.rewards, result.terminated, result.truncated)
        self.obs = result.obs
        self.counters.env_steps += 1
        done = result.terminated | result.truncated
        if done.any():
            finished = {
                self.task_names[t]: (
                    float(result.infos["episode_return"][t]),
                    bool(result.infos["episode_success"][t]),
                )
                for t in np.flatnonzero(done)
            }
            self.logger.log_episodes(self.counters.env_steps, finished)
        if not learning:
            return None
        return update_time if overlap else self._updates(step_number)

    def _updates(self, step_number: int) -> float:
        """``train.updates_per_env_step`` updates from replay batches after env step
        ``step_number`` (the step logged with them); returns their seconds."""
        config = self.config
        start = time.perf_counter()
        for _ in range(config.train.updates_per_env_step):
            collect = (self.agent.update_calls + 1) % config.train.log_every_updates == 0
            sample_start = time.perf_counter()
            batch = self.buffer.sample(config.train.batch_size_per_task)
            if self.reward_normalizer is not None:
                batch = self._normalize_rewards(batch, step_number if collect else None)
            self.timings.sample += time.perf_counter() - sample_start
            result_update = self.agent.update(batch, collect_stats=collect)
            skipped = result_update.skipped
            if isinstance(skipped, torch.Tensor):  # sync-free update: read back when logging
                if not collect:
                    continue
                self._on_nonfinite(result_update, self.agent.longest_nonfinite_run)
                skipped = bool(skipped)
            elif skipped:
                self._on_nonfinite(result_update, self.agent.consecutive_nonfinite)
            if collect and not skipped:
                self.logger.log_update(step_number, result_update)
        elapsed = time.perf_counter() - start
        self.timings.update += elapsed
        return elapsed

    def _normalize_rewards(self, batch: Any, log_step: int | None) -> Any:
        """``batch`` with each task's rewards scaled by ``agent.reward_normalization`` (at the
        current temperatures); logs the scales and return bounds when ``log_step`` is set."""
        assert self.reward_normalizer is not None
        alpha = self.agent.temperatures()
        if log_step is not None:
            self.logger.log_reward_normalization(
                log_step,
                self.reward_normalizer.scales(alpha).cpu().tolist(),
                self.reward_normalizer.return_bounds().tolist(),
            )
        return self.reward_normalizer.normalize(batch, alpha)

    def _on_nonfinite(self, result: UpdateResult, run_length: int) -> None:
        """Stop with a message once ``run_length`` updates in a row were skipped."""
        limit = self.config.train.max_consecutive_nonfinite
        if run_length < limit:
            return
        bad = []
        for key in ("critic_loss", "actor_loss", "alpha_loss"):
            values = result.metrics[key].detach().cpu()
            tasks = [self.task_names[t] for t in torch.nonzero(~torch.isfinite(values)).flatten()]
            if tasks:
                bad.append(f"{key} of {tasks}")
        where = "; ".join(bad) if bad else "the gradients (losses were finite)"
        raise NonFiniteTrainingError(
            f"{run_length} updates in a row were skipped because of NaN/inf "
            f"in {where} (env step {self.counters.env_steps}, "
            f"{self.agent.nonfinite_skips} skipped in total); stopping. Try lower learning "
            "rates, agent.grad_clip, or check the rewards (train.max_consecutive_nonfinite "
            f"= {self.config.train.max_consecutive_nonfinite})"
        )

    # -- evaluation --------------------------------------------------------------------------
    def _evaluate(self) -> dict[str, Any]:
        from envs import evaluate

        start = time.perf_counter()
        if self.eval_env is None:
            self.eval_env = make_env(self.config, self.config.seed + self.config.eval.seed_offset)
        result = evaluate(
            self.agent,
            self.eval_env,
            episodes_per_task=self.config.eval.episodes_per_task,
            seed=self.config.seed + self.config.eval.seed_offset + self.counters.evaluations,
        )
        self.timings.evaluation += time.perf_counter() - start
        returns = {name: float(np.mean(r)) for name, r in result.returns.items()}
        step = self.counters.env_steps
        record = {
            "env_steps": step,
            "total_env_steps": step * self.num_tasks,
            "updates": self.agent.num_updates,
            "mean_success": result.mean_success_rate,
            "success": dict(result.success_rate),
            "mean_return": result.mean_return,
            "returns": returns,
            "episodes_per_task": result.episodes_per_task,
            "wall_time_s": round(self.counters.wall_time_s, 3),
            "cpu_time_s": self._measure_cpu_time(),
            "machine": self._machine,
        }
        self.files.append_evaluation(record)
        self.logger.log_evaluation(step, result.success_rate, returns)
        self.logger.flush()
        self.counters.evaluations += 1
        self.counters.last_mean_success = result.mean_success_rate
        self._last_eval_step = step
        if result.mean_success_rate > self.counters.best_mean_success:
            self.counters.best_mean_success = result.mean_success_rate
            save_checkpoint(
                {
                    "meta": run_meta(self.config, self.task_names, "best"),
                    "agent": self.agent.state_dict(),
                    "env_steps": step,
                    "mean_success": result.mean_success_rate,
                },
                self.files.best,
            )
        self.last_evaluation = record
        return record

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """Everything :meth:`_restore` needs to continue this run exactly."""
        return {
            "meta": run_meta(self.config, self.task_names, "latest"),
            "agent": self.agent.state_dict(),
            "buffer": self.buffer.state_dict(),
            "env": self.env.state_dict(),
            "rng": capture_rng_states(),
            "counters": dataclasses.asdict(self.counters),
            "last_eval_step": self._last_eval_step,
            "reward_normalizer": (
                None if self.reward_normalizer is None else self.reward_normalizer.state_dict()
            ),
        }

    def _measure_cpu_time(self) -> float | None:
        """Set and return ``counters.cpu_time_s`` (rounded to ms; None when unknown)."""
        if self._cpu_at_start is None:
            return None
        workers = sum(
            env.worker_cpu_time_s() for env in (self.env, self.eval_env) if env is not None
        )
        session = time.process_time() - self._cpu_clock_start + workers
        self.counters.cpu_time_s = round(self._cpu_at_start + session, 3)
        return self.counters.cpu_time_s

    def _save_latest(self) -> None:
        start = time.perf_counter()
        self._measure_cpu_time()
        save_checkpoint(self.checkpoint_state(), self.files.latest)
        self.files.write_status("running", self.counters.env_steps)
        self.timings.checkpoint += time.perf_counter() - start

    def _restore(self, path: Path) -> np.ndarray:
        # loaded on the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest
        state = load_run_checkpoint(path, self.config, self.task_names, kind="latest")
        try:
            self.agent.load_state_dict(state["agent"])
            self.buffer.load_state_dict(state["buffer"])
            obs = self.env.load_state_dict(state["env"])
            if self.reward_normalizer is not None:
                if state.get("reward_normalizer") is None:
                    raise ValueError("it holds no reward normaliser state")
                self.reward_normalizer.load_state_dict(state["reward_normalizer"])
        except (KeyError, ValueError, RuntimeError) as error:
            from mtrl_align.checkpointing import CheckpointError

            raise CheckpointError(f"checkpoint '{path}' cannot be restored: {error}") from None
        restore_rng_states(state["rng"])
        self.counters = LoopCounters(**state["counters"])
        if "cpu_time_s" not in state["counters"]:  # saved before CPU time was recorded
            self.counters.cpu_time_s = None
        self._last_eval_step = int(state["last_eval_step"])
        return obs  # identical to the saved one when saved at an episode boundary

    def close(self) -> None:
        for env in (self.env, self.eval_env):
            if env is not None:
                env.close()
        logger = getattr(self, "logger", None)
        if logger is not None:
            logger.close()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt); continue with --resume"
    text = f"{type(error).__name__}: {error}"
    if not isinstance(error, NonFiniteTrainingError | ValueError):
        text += "\n" + "".join(traceback.format_tb(error.__traceback__)[-3:])
    return text


def _progress_bar(config: TrainConfig, initial: int):
    from tqdm import tqdm

    return tqdm(
        total=config.train.total_env_steps,
        initial=initial,
        unit="step",
        desc=f"{config.aggregation.method}/{config.agent.variant}",
        disable=not config.train.progress_bar,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=1.0,
    )


def train(config: TrainConfig | None = None, resume_dir: str | Path | None = None) -> Path:
    """Train (or resume) a run; returns its run directory.

    Args:
        config: the run config. With ``resume_dir`` and no config, the run's saved
            ``config.yaml`` is used.
        resume_dir: continue the run in this directory from ``checkpoints/latest.pt``.
    """
    if resume_dir is not None:
        resume_dir = Path(resume_dir)
        if config is None:
            from mtrl_align.config import load_train_config

            saved = resume_dir / "config.yaml"
            if not saved.is_file():
                raise FileNotFoundError(f"'{resume_dir}' is not a run directory (no config.yaml)")
            config = load_train_config(saved)
        if not (resume_dir / "checkpoints" / "latest.pt").is_file():
            raise FileNotFoundError(
                f"run directory '{resume_dir}' has no checkpoints/latest.pt to resume from"
            )
        config = dataclasses.replace(config, run_dir=str(resume_dir))
        trainer = Trainer(config, resume=True)
    else:
        if config is None:
            raise ValueError("train() needs a config or a resume_dir")
        trainer = Trainer(config)
    return trainer.run()
