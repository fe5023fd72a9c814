"""Training-loop benchmark: where the wall time of a real run goes, and what aggregation costs
inside the real agent.

1. ``loop``: a real MT10 run (10 Meta-World tasks, the demo's small networks) driven by
   :class:`mtrl_align.training.Trainer` for a fixed number of env steps after a short warm-up,
   without evaluations or checkpoints. Wall time splits into env stepping
   (``MultiTaskEnv.step``), the update (replay sampling + ``MultiTaskSAC.update``) and the
   rest (acting, replay writes, logging, bookkeeping). Target: rest < 10 %.
2. ``update ratio``: full-size MultiTaskSAC updates (3 x 400 MLPs, 128 samples per task,
   T = 10, twin critics, targets, actor, temperatures) with ``aligned-mtl`` on critic and
   actor vs ``uniform`` (the plain summed loss), rounds interleaved in a shuffled order because
   the machine is shared; the ratio of median times. Target: <= 1.3. The same rounds time
   ``uniform`` with ``sync_free=True`` (key ``uniform/sync-free``): what deciding skips on the
   device costs where reading a value back is free (the CPU).
"""

from __future__ import annotations

import random
import statistics
import time
from typing import NamedTuple

import torch

from agents.sac import MultiTaskSAC
from mtrl_align.config import AgentConfig, AggregationConfig, load_train_config

NUM_TASKS, OBS_DIM, ACTION_DIM, BATCH = 10, 49, 4, 128


class _Batch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    dones: torch.Tensor


def _synthetic_batch(device: torch.device) -> _Batch:
    g = torch.Generator().manual_seed(0)
    one_hot = torch.eye(NUM_TASKS).unsqueeze(1).expand(NUM_TASKS, BATCH, NUM_TASKS)

    def observations() -> torch.Tensor:
        state = torch.randn(NUM_TASKS, BATCH, OBS_DIM - NUM_TASKS, generator=g)
        return torch.cat([state, one_hot], dim=-1)

    batch = _Batch(
        observations(),
        torch.rand(NUM_TASKS, BATCH, ACTION_DIM, generator=g) * 2 - 1,
        torch.randn(NUM_TASKS, BATCH, generator=g),
        observations(),
        torch.zeros(NUM_TASKS, BATCH),
    )
    return _Batch(*(t.to(device) for t in batch))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def update_ratio(
    methods: tuple[str, ...] = ("uniform", "aligned-mtl"),
    rounds: int = 5,
    device: str = "cpu",
) -> dict[str, float]:
    """Median seconds per full-size MT10 update for each method, and for ``uniform`` with the
    sync-free update (key ``uniform/sync-free``), from interleaved rounds."""
    torch_device = torch.device(device)
    batch = _synthetic_batch(torch_device)
    variants = [(m, m, False) for m in methods] + [("uniform/sync-free", "uniform", True)]
    agents = {
        key: MultiTaskSAC(
            AgentConfig(),
            AggregationConfig(method=method),
            NUM_TASKS,
            OBS_DIM,
            ACTION_DIM,
            device=torch_device,
            seed=0,
            sync_free=sync_free,
        )
        for key, method, sync_free in variants
    }
    return interleaved_update_medians(agents, batch, rounds, torch_device)


def interleaved_update_medians(
    agents: dict, batch: _Batch, rounds: int, device: torch.device, per_round: int = 1
) -> dict:
    """Median seconds of ``agent.update(batch)`` per key of ``agents``: one warm-up update
    each (allocations, lazy init), then ``rounds`` rounds in a freshly shuffled order, each
    timing ``per_round`` consecutive updates of a key and counting their mean."""
    for agent in agents.values():
        agent.update(batch)
    times: dict = {key: [] for key in agents}
    order = list(agents)
    shuffle = random.Random(0)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for key in order:
            _sync(device)
            start = time.perf_counter()
            for _ in range(per_round):
                agents[key].update(batch)
            _sync(device)
            times[key].append((time.perf_counter() - start) / per_round)
    return {key: statistics.median(v) for key, v in times.items()}


def loop_breakdown(steps: int, warmup: int = 100) -> dict[str, float]:
    """Seconds in env stepping, updates and the rest for a real MT10 demo-size run."""
    import tempfile

    from mtrl_align.training.loop import Timings, Trainer

    with tempfile.TemporaryDirectory() as tmp:
        config = load_train_config(
            None,
            [
                "device=cpu",
                "num_threads=1",
                "env.benchmark=MT10",
                "env.max_episode_steps=150",
                "agent.actor_hidden=[128,128]",
                "agent.critic_hidden=[128,128]",
                "train.batch_size_per_task=64",
                "train.buffer_capacity=100000",
                f"train.warmup_env_steps={warmup}",
                f"train.total_env_steps={warmup + steps}",
                "train.progress_bar=false",
                f"eval.every_env_steps={10 * (warmup + steps)}",
                f"run_dir={tmp}/run",
            ],
        )
        trainer = Trainer(config)
        try:
            # the warm-up (random actions, no updates) runs first and is not measured
            trainer.config.train.total_env_steps = warmup
            trainer._train()
            trainer.timings = Timings()
            trainer.config.train.total_env_steps = warmup + steps
            trainer._train()
            timings = trainer.timings
        finally:
            trainer.close()
    rest = timings.total - timings.env - timings.update
    return {
        "total_s": timings.total,
        "env_s": timings.env,
        "update_s": timings.update,
        "rest_s": rest,
        "rest_fraction": rest / timings.total,
        "steps": steps,
    }


def run(quick: bool = False) -> dict:
    """Print and return the loop breakdown and the aligned-mtl / uniform update ratio."""
    threads = torch.get_num_threads()
    loop = loop_breakdown(steps=60 if quick else 400)
    print(
        f"loop (MT10, 10 tasks, 2x128 nets, {loop['steps']} steps): env {loop['env_s']:.1f}s, "
        f"update {loop['update_s']:.1f}s, rest {loop['rest_s']:.2f}s "
        f"-> rest fraction {100 * loop['rest_fraction']:.1f}% (target < 10%)"
    )
    torch.set_num_threads(threads)
    medians = update_ratio(rounds=3 if quick else 9)
    ratio = medians["aligned-mtl"] / medians["uniform"]
    print(
        f"update (T=10, 3x400 nets, 128/task, {threads} threads): uniform "
        f"{1000 * medians['uniform']:.0f} ms, aligned-mtl {1000 * medians['aligned-mtl']:.0f} ms "
        f"-> ratio {ratio:.2f} (target <= 1.3)"
    )
    sync_free = medians["uniform/sync-free"] / medians["uniform"]
    print(
        f"update, uniform sync-free / per-update checks: "
        f"{1000 * medians['uniform/sync-free']:.0f} ms -> ratio {sync_free:.2f}"
    )
    return {
        "loop": loop,
        "update_ms": {m: 1000 * v for m, v in medians.items()},
        "update_ratio_aligned_mtl_over_uniform": ratio,
        "update_ratio_sync_free_over_checked": sync_free,
        "threads": threads,
    }
