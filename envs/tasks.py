"""Meta-World task sets: benchmark names, task-name validation and picklable env factories.

A *task set* is the ordered list of Meta-World tasks one multi-task env runs, one
sub-environment per task. It is named by a benchmark (``"MT10"``, ``"MT25"``, ``"MT50"``),
by ``"MT1:<task>"`` or by an explicit list of task names (``["reach-v3", "push-v3"]``).

Sub-environments are built exactly as metaworld's registered gymnasium vector envs build
them (``Meta-World/MT10`` etc.: ``metaworld._init_each_env``), so observations, rewards,
goals and seeding are those of ``gymnasium.make_vec("Meta-World/...")``; the tests check this.
The only deliberate difference: for custom task lists metaworld seeds sub-env ``i`` with
``seed + i`` *except* that ``seed=0`` silently means "unseeded"; here every seed, 0
included, is honoured.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import metaworld
from metaworld.env_dict import ALL_V3_ENVIRONMENTS
from metaworld.types import Task

BENCHMARKS = ("MT10", "MT25", "MT50")
"""Multi-task benchmarks metaworld defines (task order is metaworld's)."""

REWARD_VERSIONS = ("v1", "v2")
"""Meta-World reward function versions (``v2`` is metaworld's default)."""

MAX_EPISODE_STEPS_LIMIT = 500
"""Meta-World environments refuse to step past 500 steps without a reset."""


def all_task_names() -> list[str]:
    """Every Meta-World v3 task name, e.g. ``reach-v3``, in metaworld's order."""
    return list(ALL_V3_ENVIRONMENTS.keys())


def check_task_name(name: str) -> str:
    """Return ``name`` if it is a Meta-World v3 task, else raise a ``ValueError`` listing them."""
    if name in ALL_V3_ENVIRONMENTS:
        return name
    close = difflib.get_close_matches(str(name), all_task_names(), n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise ValueError(
        f"unknown Meta-World task {name!r}{hint}; choose from: {', '.join(all_task_names())}"
    )


@dataclass(frozen=True)
class TaskSet:
    """An ordered set of Meta-World tasks and how each sub-environment is seeded.

    Attributes:
        benchmark: canonical name (``"MT10"``, ``"MT1:reach-v3"``, ``"custom"``).
        task_names: task name per sub-environment, in sub-environment order.
        env_seeds: seed given to each sub-environment at construction.
    """

    benchmark: str
    task_names: tuple[str, ...]
    env_seeds: tuple[int, ...]

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)


def resolve_task_set(benchmark: str | Sequence[str], seed: int) -> TaskSet:
    """Validate a benchmark name or task list and fix the task order and seeds.

    Args:
        benchmark: ``"MT10"``, ``"MT25"``, ``"MT50"``, ``"MT1:<task>"`` or a list of task names.
        seed: base seed (an int; 0 is a valid seed).

    Raises:
        ValueError: unknown benchmark or task (the message lists the valid ones), an
            empty or duplicated task list, or a seed that is not an int.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if isinstance(benchmark, str):
        if benchmark in BENCHMARKS:
            names = tuple(_benchmark_classes(benchmark).keys())
            return TaskSet(benchmark, names, (seed,) * len(names))
        if benchmark.startswith("MT1:"):
            name = check_task_name(benchmark[len("MT1:") :])
            return TaskSet(f"MT1:{name}", (name,), (seed,))
        if benchmark in ALL_V3_ENVIRONMENTS:
            raise ValueError(
                f"benchmark {benchmark!r} is a single task; write 'MT1:{benchmark}' "
                f"or pass a list of task names"
            )
        raise ValueError(
            f"unknown benchmark {benchmark!r}; choose from: {', '.join(BENCHMARKS)}, "
            f"'MT1:<task>' or a list of task names (tasks: {', '.join(all_task_names())})"
        )
    names = tuple(benchmark)
    if not names:
        raise ValueError("the task list is empty; give at least one Meta-World task name")
    for name in names:
        check_task_name(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"task list repeats {duplicates}; each task may appear once")
    return TaskSet("custom", names, tuple(seed + i for i in range(len(names))))


def _benchmark_classes(name: str) -> dict[str, type]:
    """Task name -> env class of a metaworld MT benchmark (cheap: no goals sampled)."""
    import metaworld.env_dict as env_dict

    return dict(getattr(env_dict, f"{name}_V3"))


@functools.lru_cache(maxsize=8)
def _benchmark_tasks(benchmark: str, seed: int) -> dict[str, tuple[Task, ...]]:
    """Goal variants (metaworld ``Task``s) per task name, cached per process.

    Building a metaworld benchmark samples 50 goals per task by resetting a fresh env 50
    times (about 9 s for MT10 and 50 s for MT50 on one CPU core); an evaluation env built
    with the same benchmark and seed reuses the result.
    """
    if benchmark in BENCHMARKS:
        bench = getattr(metaworld, benchmark)(seed=seed)
    else:
        bench = metaworld.MT1(benchmark, seed=seed)
    grouped: dict[str, list[Task]] = {name: [] for name in bench.train_classes}
    for task in bench.train_tasks:
        grouped[task.env_name].append(task)
    return {name: tuple(tasks) for name, tasks in grouped.items()}


def build_sub_env(
    task_name: str,
    tasks: tuple[Task, ...],
    seed: int,
    env_id: int,
    num_tasks: int,
    max_episode_steps: int,
    reward_version: str,
    terminate_on_success: bool,
) -> gym.Env:
    """Build one Meta-World sub-environment the way ``gymnasium.make_vec("Meta-World/...")`` does.

    Wrapper stack (outermost first): CheckpointWrapper, RandomTaskSelectWrapper (a random
    goal variant of ``tasks`` at each reset), RecordEpisodeStatistics, OneHotWrapper
    (``env_id`` of ``num_tasks`` appended to the 39-dim observation),
    AutoTerminateOnSuccessWrapper, TimeLimit(``max_episode_steps``).
    """
    init_each_env = getattr(metaworld, "_init_each_env", None)
    if init_each_env is None:  # pragma: no cover - depends on the installed metaworld
        raise RuntimeError(
            f"metaworld {getattr(metaworld, '__version__', '?')} has no _init_each_env; "
            "mtrl-align needs metaworld 3.x"
        )
    return init_each_env(
        env_cls=ALL_V3_ENVIRONMENTS[task_name],
        tasks=list(tasks),
        seed=seed,
        max_episode_steps=max_episode_steps,
        terminate_on_success=terminate_on_success,
        use_one_hot=True,
        env_id=env_id,
        num_tasks=num_tasks,
        reward_function_version=reward_version,
    )


def make_env_factories(
    task_set: TaskSet,
    seed: int,
    max_episode_steps: int,
    reward_version: str,
    terminate_on_success: bool,
) -> list[Callable[[], gym.Env]]:
    """One picklable zero-argument factory per sub-environment (for worker processes).

    For a benchmark, every sub-environment draws its goals from the benchmark built with
    ``seed`` and is seeded with ``seed`` (as metaworld does); for ``MT1`` and custom lists,
    sub-env ``i`` uses ``metaworld.MT1(task, seed=env_seeds[i])`` and is seeded with it.
    """
    if reward_version not in REWARD_VERSIONS:
        raise ValueError(
            f"unknown reward_version {reward_version!r}; choose from: {', '.join(REWARD_VERSIONS)}"
        )
    if (
        isinstance(max_episode_steps, bool)
        or not isinstance(max_episode_steps, int)
        or not 1 <= max_episode_steps <= MAX_EPISODE_STEPS_LIMIT
    ):
        raise ValueError(
            f"max_episode_steps must be an int in [1, {MAX_EPISODE_STEPS_LIMIT}] "
            f"(Meta-World's limit), got {max_episode_steps!r}"
        )
    factories = []
    for env_id, (name, env_seed) in enumerate(
        zip(task_set.task_names, task_set.env_seeds, strict=True)
    ):
        if task_set.benchmark in BENCHMARKS:
            tasks = _benchmark_tasks(task_set.benchmark, seed)[name]
        else:
            tasks = _benchmark_tasks(name, env_seed)[name]
        factories.append(
            functools.partial(
                build_sub_env,
                name,
                tasks,
                env_seed,
                env_id,
                task_set.num_tasks,
                max_episode_steps,
                reward_version,
                terminate_on_success,
            )
        )
    return factories
