"""The evaluation protocol of a run, and the rule that one table holds one protocol.

Success rates from different protocols are not comparable: Meta-World reward v1 vs v2,
150- vs 500-step episodes, 2M vs 200k env steps, 10 vs 50 evaluation episodes, a different
task set. A report states its protocol once (the "stamp") and refuses runs that differ in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mtrl_align.sweep.runs import RunRecord

# (label in the stamp, dotted config key)
PROTOCOL_KEYS: tuple[tuple[str, str], ...] = (
    ("benchmark", "env.benchmark"),
    ("reward version", "env.reward_version"),
    ("episode length", "env.max_episode_steps"),
    ("terminate on success", "env.terminate_on_success"),
    ("env steps per task", "train.total_env_steps"),
    ("evaluation episodes per task", "eval.episodes_per_task"),
)


class ProtocolMismatchError(ValueError):
    """Runs of different evaluation protocols were asked to share one table."""


@dataclass(frozen=True)
class Protocol:
    """What a success rate in a report means.

    Attributes:
        benchmark: e.g. ``MT10``.
        tasks: evaluated task names, in the runs' order.
        reward_version: Meta-World reward version.
        episode_length: max steps per episode.
        terminate_on_success: whether episodes end at the first success.
        env_steps: training length in env steps per task.
        eval_episodes: evaluation episodes per task per evaluation.
    """

    benchmark: str
    tasks: tuple[str, ...]
    reward_version: str
    episode_length: int
    terminate_on_success: bool
    env_steps: int
    eval_episodes: int

    def stamp(self) -> str:
        """One line for the report, e.g. ``MT10 (10 tasks), reward v2, 500-step episodes, ...``."""
        ending = ", episodes end at success" if self.terminate_on_success else ""
        names = f": {', '.join(self.tasks)}" if len(self.tasks) <= 4 else ""
        episodes = "episode" if self.eval_episodes == 1 else "episodes"
        return (
            f"{self.benchmark} ({len(self.tasks)} tasks{names}), reward {self.reward_version}, "
            f"{self.episode_length}-step episodes{ending}, {self.env_steps:,} env steps per task, "
            f"{self.eval_episodes} evaluation {episodes} per task"
        )

    def as_row(self) -> dict[str, object]:
        """Columns for the CSV."""
        return {
            "benchmark": self.benchmark,
            "num_tasks": len(self.tasks),
            "reward_version": self.reward_version,
            "episode_length": self.episode_length,
            "terminate_on_success": self.terminate_on_success,
            "env_steps_per_task": self.env_steps,
            "eval_episodes_per_task": self.eval_episodes,
        }


def config_value(config: dict, dotted: str) -> object:
    """``config["a"]["b"]`` for ``"a.b"``; ``None`` where missing."""
    node: object = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def protocol_of(run: RunRecord) -> Protocol:
    """The protocol ``run`` was trained and evaluated under."""
    config = run.config
    missing = [key for _, key in PROTOCOL_KEYS if config_value(config, key) is None]
    missing = [k for k in missing if k != "env.terminate_on_success"]
    if missing:
        raise ValueError(
            f"run '{run.run_dir}' has no {', '.join(missing)} in its config.yaml; "
            "not written by mtrl-align train?"
        )
    episodes = [e.episodes_per_task for e in run.evaluations if e.episodes_per_task is not None]
    eval_episodes = episodes[-1] if episodes else config_value(config, "eval.episodes_per_task")
    return Protocol(
        benchmark=str(config_value(config, "env.benchmark")),
        tasks=tuple(run.task_names),
        reward_version=str(config_value(config, "env.reward_version")),
        episode_length=int(config_value(config, "env.max_episode_steps")),
        terminate_on_success=bool(config_value(config, "env.terminate_on_success") or False),
        env_steps=int(config_value(config, "train.total_env_steps")),
        eval_episodes=int(eval_episodes),
    )


_FIELD_LABELS = {
    "benchmark": "benchmark",
    "tasks": "task set",
    "reward_version": "reward version",
    "episode_length": "episode length",
    "terminate_on_success": "terminate on success",
    "env_steps": "env steps per task",
    "eval_episodes": "evaluation episodes per task",
}


def common_protocol(runs: Sequence[RunRecord]) -> Protocol:
    """The one protocol shared by ``runs``.

    Raises:
        ProtocolMismatchError: the runs differ in a protocol field; the message names the field,
            the values and a run directory with each value.
    """
    if not runs:
        raise ValueError("no runs to report")
    protocols = [protocol_of(run) for run in runs]
    reference = protocols[0]
    for field_name, label in _FIELD_LABELS.items():
        examples: dict[object, str] = {}
        for run, protocol in zip(runs, protocols, strict=True):
            value = getattr(protocol, field_name)
            if field_name == "tasks":  # the same tasks in another order are the same protocol
                value = tuple(sorted(value))
            examples.setdefault(value, str(run.run_dir))
        if len(examples) > 1:
            shown = "; ".join(f"{_show(v)} in {d}" for v, d in examples.items())
            raise ProtocolMismatchError(
                f"runs of different protocols cannot share one table: {label} differs "
                f"({shown}). Report each protocol separately (point RUNS_DIR at the runs of one "
                "protocol)."
            )
    return reference


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return f"[{', '.join(map(str, value))}]" if len(value) <= 4 else f"{len(value)} tasks"
    return repr(value)
