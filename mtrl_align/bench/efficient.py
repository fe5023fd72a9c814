"""Efficient-critic benchmark: the cost of one MT10 update of the efficient-critic study's agent
(``configs/mt10_cpu_efficient.yaml``) with each of the study's aggregators, against MT-SAC
(``configs/mt10_cpu_study.yaml``, the plain summed loss), on one thread as the study runs.

The study's runs span sessions and machines, so their wall times compare only within a machine;
this section measures every row's update on one machine in one run. T = 10 tasks, 128 samples
per task, MT10 dims (obs 39 + 10, action 4). Rounds are interleaved in a shuffled order (the
machine is shared) and the median is reported, with the ratios to the efficient critic with
``uniform`` and to MT-SAC. The update is most of a run's time (about 80% on the study's
machines; the rest is env stepping and evaluation, the same for every row).
"""

from __future__ import annotations

from pathlib import Path

import torch

from agents.sac import MultiTaskSAC
from mtrl_align.bench.training import (
    ACTION_DIM,
    NUM_TASKS,
    OBS_DIM,
    _synthetic_batch,
    interleaved_update_medians,
)
from mtrl_align.config import load_train_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MT_SAC = "mt-sac"
ROWS = {  # row label: (config file, aggregation method)
    MT_SAC: ("mt10_cpu_study.yaml", "uniform"),
    "efficient/uniform": ("mt10_cpu_efficient.yaml", "uniform"),
    "efficient/aligned-mtl": ("mt10_cpu_efficient.yaml", "aligned-mtl"),
    "efficient/pcgrad": ("mt10_cpu_efficient.yaml", "pcgrad"),
}
BASELINE = "efficient/uniform"


def build_agents(rows: dict[str, tuple[str, str]] = ROWS) -> dict[str, MultiTaskSAC]:
    """One agent per row, built from the row's config with its aggregation method."""
    agents = {}
    for label, (config_name, method) in rows.items():
        config = load_train_config(CONFIGS / config_name, [f"aggregation.method={method}"])
        agents[label] = MultiTaskSAC(
            config.agent,
            config.aggregation,
            NUM_TASKS,
            OBS_DIM,
            ACTION_DIM,
            seed=0,
        )
    return agents


def run(quick: bool = False) -> dict:
    """Print and return ms per update of every row and its ratios, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rounds = 3 if quick else 15
        medians = interleaved_update_medians(
            build_agents(), _synthetic_batch(torch.device("cpu")), rounds, torch.device("cpu")
        )
    finally:
        torch.set_num_threads(threads)
    from mtrl_align.device import describe_machine

    machine = describe_machine(torch.device("cpu"))
    print(
        f"update (T={NUM_TASKS}, 128/task, 1 thread, median of {rounds} rounds, {machine}; "
        f"ratios to {BASELINE} and to {MT_SAC})"
    )
    print(f"{'row':<24}{'ms':>8}{'/ ' + BASELINE:>22}{'/ ' + MT_SAC:>12}")
    for label, seconds in medians.items():
        print(
            f"{label:<24}{1000 * seconds:>8.1f}{seconds / medians[BASELINE]:>22.2f}"
            f"{seconds / medians[MT_SAC]:>12.2f}"
        )
    return {
        "update_ms": {label: 1000 * s for label, s in medians.items()},
        f"ratio_to_{BASELINE}": {label: s / medians[BASELINE] for label, s in medians.items()},
        f"ratio_to_{MT_SAC}": {label: s / medians[MT_SAC] for label, s in medians.items()},
        "machine": machine,
        "rounds": rounds,
        "quick": quick,
    }
