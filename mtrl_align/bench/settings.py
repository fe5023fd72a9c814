"""What the reference MT-SAC's settings cost per update: the study's MT-SAC (2 x 128 MLPs, 128
samples per task, T = 10, one thread) with the settings of configs/mt10_cpu_study.yaml (He-uniform
init, small heads, gradient clip 1.0, Adam eps 1e-5, log-std clip) against those of
configs/mt10_cpu_study_v1.yaml (none of them), in interleaved rounds; the ratio of median update
times. Target (docs/results/mt10_reference_parity.md): <= 1.1, the whole run's wall time bound.
Only the clip adds work (two gradient norms per update); the rest changes numbers, not cost.
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
from mtrl_align.device import torch_threads

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "reference settings": ROOT / "configs" / "mt10_cpu_study.yaml",
    "v1 settings": ROOT / "configs" / "mt10_cpu_study_v1.yaml",
}


def run(quick: bool = False) -> dict[str, float]:
    """Median ms per update for both settings and their ratio (one thread, as the study)."""
    cpu = torch.device("cpu")
    with torch_threads(1):
        batch = _synthetic_batch(cpu)
        agents = {}
        for name, path in CONFIGS.items():
            config = load_train_config(path)
            agents[name] = MultiTaskSAC(
                config.agent, config.aggregation, NUM_TASKS, OBS_DIM, ACTION_DIM, seed=0
            )
        rounds, per_round = (3, 10) if quick else (9, 40)
        medians = interleaved_update_medians(agents, batch, rounds, cpu, per_round=per_round)
    result = {f"{name} update ms": 1000 * seconds for name, seconds in medians.items()}
    result["ratio reference / v1"] = (
        result["reference settings update ms"] / result["v1 settings update ms"]
    )
    for key, value in result.items():
        print(f"{key}: {value:.3f}")
    return result
