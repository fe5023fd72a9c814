"""Evaluate a finished (or running) run from its checkpoint, and print success tables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mtrl_align.training.run_files import RunFiles


def format_success_table(
    success: Mapping[str, float], mean_success: float, returns: Mapping[str, float] | None = None
) -> str:
    """A plain-text table: one row per task (success rate, mean return) and the mean."""
    width = max([len(name) for name in success] + [len("mean")])
    header = f"{'task':<{width}}  success" + ("   return" if returns is not None else "")
    lines = [header, "-" * len(header)]
    for name, rate in success.items():
        row = f"{name:<{width}}  {rate:7.2f}"
        if returns is not None:
            row += f"  {returns[name]:8.1f}"
        lines.append(row)
    lines.append("-" * len(header))
    lines.append(f"{'mean':<{width}}  {mean_success:7.2f}")
    return "\n".join(lines)


def evaluate_run(
    run_dir: str | Path,
    episodes_per_task: int | None = None,
    checkpoint: str = "latest",
    device: str | None = None,
    seed: int | None = None,
):
    """Evaluate the agent of a run's ``latest`` or ``best`` checkpoint.

    Args:
        run_dir: a run directory written by ``mtrl-align train``.
        episodes_per_task: default: the run's ``eval.episodes_per_task``.
        checkpoint: ``latest`` or ``best``.
        device: override the run's device (cpu, cuda, auto).
        seed: evaluation env seed (default: the run's seed + eval.seed_offset).

    Returns:
        ``envs.EvaluationResult``.

    Raises:
        FileNotFoundError: not a run directory or no such checkpoint.
        CheckpointError: corrupt checkpoint or one from another config.
    """
    import dataclasses

    from agents.sac import MultiTaskSAC
    from envs import evaluate
    from mtrl_align.config import load_train_config
    from mtrl_align.device import resolve_device
    from mtrl_align.training.checkpoint import load_run_checkpoint
    from mtrl_align.training.loop import make_env

    if checkpoint not in ("latest", "best"):
        raise ValueError(f"unknown checkpoint {checkpoint!r}; choose from: latest, best")
    files = RunFiles(run_dir)
    if not files.config.is_file():
        raise FileNotFoundError(f"'{run_dir}' is not a run directory (no {files.config.name})")
    path = files.latest if checkpoint == "latest" else files.best
    if not path.is_file():
        raise FileNotFoundError(f"run '{run_dir}' has no checkpoint {path.relative_to(files.root)}")
    config = load_train_config(files.config)
    if device is not None:
        config = dataclasses.replace(config, device=device)
    torch_device = resolve_device(config.device)
    seed = config.seed + config.eval.seed_offset if seed is None else seed
    env = make_env(config, seed)
    try:
        state = load_run_checkpoint(path, config, list(env.task_names))
        agent = MultiTaskSAC(
            config.agent,
            config.aggregation,
            env.num_tasks,
            env.obs_dim,
            env.action_dim,
            device=torch_device,
            seed=config.seed,
            task_names=list(env.task_names),
        )
        agent.load_state_dict(state["agent"])
        return evaluate(
            agent,
            env,
            episodes_per_task=episodes_per_task or config.eval.episodes_per_task,
            seed=seed,
        )
    finally:
        env.close()
