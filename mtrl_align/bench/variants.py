"""Network-variant benchmark: the cost of one full-size MT10 ``MultiTaskSAC.update`` for every
network variant, with the plain summed loss (``uniform``) and with ``aligned-mtl`` (per-task
Jacobian through the fused vmap path, aggregated on critic and actor).

Each variant uses the agent settings of its shipped config (``configs/mt10_<variant>.yaml``,
e.g. 3 x 400 networks, 4 MOORE experts); T = 10 tasks, 128 samples per task, MT10 dims (obs
39 + 10, action 4). Rounds are interleaved in a shuffled order (the machine is shared) and the
median is reported, with the ratio to the shared / uniform update.
"""

from __future__ import annotations

from pathlib import Path

import torch

from agents.networks import VARIANTS
from agents.sac import MultiTaskSAC
from mtrl_align.bench.training import (
    ACTION_DIM,
    NUM_TASKS,
    OBS_DIM,
    _synthetic_batch,
    interleaved_update_medians,
)
from mtrl_align.config import AggregationConfig, load_train_config

METHODS = ("uniform", "aligned-mtl")
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CONFIG_OF = {"shared": "mt10_uniform.yaml"}


def _agent_config(variant: str):
    name = CONFIG_OF.get(variant, f"mt10_{variant.replace('-', '_')}.yaml")
    config = load_train_config(CONFIGS / name).agent
    if config.variant != variant:
        raise ValueError(f"{name} configures variant {config.variant!r}, expected {variant!r}")
    return config


def update_times(
    variants: tuple[str, ...] = VARIANTS,
    methods: tuple[str, ...] = METHODS,
    rounds: int = 5,
    device: str = "cpu",
) -> dict[str, dict[str, float]]:
    """Median seconds per update, ``{variant: {method: s}}`` (interleaved, shuffled rounds)."""
    torch_device = torch.device(device)
    batch = _synthetic_batch(torch_device)
    agents = {
        (v, m): MultiTaskSAC(
            _agent_config(v),
            AggregationConfig(method=m),
            NUM_TASKS,
            OBS_DIM,
            ACTION_DIM,
            device=torch_device,
            seed=0,
        )
        for v in variants
        for m in methods
    }
    medians = interleaved_update_medians(agents, batch, rounds, torch_device)
    return {v: {m: medians[(v, m)] for m in methods} for v in variants}


def parameter_counts(variants: tuple[str, ...] = VARIANTS) -> dict[str, dict[str, int]]:
    """Actor and critic parameter counts (total and task-specific) of each variant's config."""
    counts = {}
    for v in variants:
        agent = MultiTaskSAC(
            _agent_config(v), AggregationConfig(), NUM_TASKS, OBS_DIM, ACTION_DIM, seed=0
        )
        row = {}
        for name, module in (("actor", agent.actor), ("critic", agent.critic)):
            named = dict(module.named_parameters())
            row[name] = sum(p.numel() for p in named.values())
            row[f"{name}_task_specific"] = sum(
                p.numel() for n, p in named.items() if module.is_task_specific(n)
            )
        counts[v] = row
    return counts


def run(quick: bool = False) -> dict:
    """Print and return ms per update for every variant x method and the ratio to shared."""
    threads = torch.get_num_threads()
    medians = update_times(rounds=2 if quick else 7)
    base = medians["shared"]["uniform"]
    counts = parameter_counts()
    print(
        f"update (T={NUM_TASKS}, 128/task, obs {OBS_DIM}, action {ACTION_DIM}, {threads} "
        f"threads, median of {2 if quick else 7} rounds; ratio to shared/uniform)"
    )
    header = f"{'variant':<14}{'params a/c':>16}"
    print(header + "".join(f"{m + ' ms':>16}{'ratio':>7}" for m in METHODS))
    for v, row in medians.items():
        params = f"{counts[v]['actor'] / 1e6:.2f}M/{counts[v]['critic'] / 1e6:.2f}M"
        cells = "".join(f"{1000 * row[m]:>16.0f}{row[m] / base:>7.2f}" for m in METHODS)
        print(f"{v:<14}{params:>16}{cells}")
    return {
        "update_ms": {v: {m: 1000 * s for m, s in row.items()} for v, row in medians.items()},
        "ratio_to_shared_uniform": {
            v: {m: s / base for m, s in row.items()} for v, row in medians.items()
        },
        "parameters": counts,
        "threads": threads,
        "quick": quick,
    }
