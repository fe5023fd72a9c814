"""Meta-World multi-task runner, evaluator, per-task replay buffer and seed statistics.

Names are loaded on first use, so env worker processes (which import ``envs.tasks`` and
``envs.vector_backends``) do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "make_multitask_env": "envs.multitask_env",
    "MultiTaskEnv": "envs.multitask_env",
    "StepResult": "envs.multitask_env",
    "evaluate": "envs.evaluation",
    "EvaluationResult": "envs.evaluation",
    "Policy": "envs.evaluation",
    "MultiTaskReplayBuffer": "envs.replay_buffer",
    "TransitionBatch": "envs.replay_buffer",
    "summarize_over_seeds": "envs.statistics",
    "SeedSummary": "envs.statistics",
    "BENCHMARKS": "envs.tasks",
    "all_task_names": "envs.tasks",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from envs.evaluation import EvaluationResult, Policy, evaluate  # noqa: F401
    from envs.multitask_env import MultiTaskEnv, StepResult, make_multitask_env  # noqa: F401
    from envs.replay_buffer import MultiTaskReplayBuffer, TransitionBatch  # noqa: F401
    from envs.statistics import SeedSummary, summarize_over_seeds  # noqa: F401
    from envs.tasks import BENCHMARKS, all_task_names  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'envs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
