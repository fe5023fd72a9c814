"""Efficient-critic benchmark: the cost of one MT10 update of the efficient-critic study's agent
(``configs/mt10_cpu_efficient.yaml``) with each of the study's aggregators, against MT-SAC
(``configs/mt10_cpu_study.yaml``, the plain summed loss), on one thread as the study runs.

The study's runs span sessions and machines, so their wall times compare only within a machine;
this section measures every row's update on one machine in one run. T = 10 tasks, 128 samples
per task, MT10 dims (obs 39 + 10, action 4). Rounds are interleaved in a shuffled order (the
machine is shared) and the median is reported, with the ratios to the efficient critic with
``uniform`` and to MT-SAC. The update is most of a run's time (about 80% on the study's
machines; the rest is env stepping and evaluation, the same for every row).

A second table prices subnormal floats (``flush_denormals``): the pcgrad row's update with its
categorical critics sharpened until far atoms' probabilities fall below float32's smallest
normal number, timed with subnormals kept and flushed to zero, interleaved. A stress case: the
study's pcgrad critics held no subnormal probabilities up to 100k steps. On Intel
CPUs arithmetic on subnormals takes a slow path; the study's config flushes them.
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
from mtrl_align.device import describe_machine, set_flush_denormals, torch_threads

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MT_SAC = "mt-sac"
ROWS = {  # row label: (config file, aggregation method)
    MT_SAC: ("mt10_cpu_study.yaml", "uniform"),
    "efficient/uniform": ("mt10_cpu_efficient.yaml", "uniform"),
    "efficient/aligned-mtl": ("mt10_cpu_efficient.yaml", "aligned-mtl"),
    "efficient/pcgrad": ("mt10_cpu_efficient.yaml", "pcgrad"),
}
BASELINE = "efficient/uniform"
SUBNORMAL_ROW = "efficient/pcgrad"
SHARPNESS = 11.0


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
    rounds = 3 if quick else 15
    with torch_threads(1):
        medians = interleaved_update_medians(
            build_agents(), _synthetic_batch(torch.device("cpu")), rounds, torch.device("cpu")
        )
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
        "subnormals": subnormal_cost(rounds),
    }


def sharpen_critics(agent: MultiTaskSAC, sharpness: float = SHARPNESS) -> None:
    """Make the online and target categorical critics very confident (a stress case: the
    study's critics never got this sharp).

    Each critic's output weights [K, h] are multiplied by ``sharpness`` and its output bias [K]
    falls linearly from 0 at the middle atom to ``-sharpness**2`` at both ends, so that the far
    atoms' probabilities are subnormal (or zero) in float32.
    """
    if agent.critic.support is None:
        raise ValueError("sharpen_critics needs a categorical critic (critic_loss: c51)")
    with torch.no_grad():
        for critic in (agent.critic, agent.critic_target):
            for head in (critic.q1, critic.q2):
                num_atoms = head.out_bias.numel()
                distance = torch.linspace(-1.0, 1.0, num_atoms).abs()
                head.out_weight.mul_(sharpness)
                head.out_bias.copy_(-(sharpness**2) * distance)


def subnormal_fraction(agent: MultiTaskSAC, batch) -> float:
    """Share of the online critics' atom probabilities on ``batch`` (obs [T, B, o]) that are
    subnormal in float32: nonzero and below its smallest normal number (~1.18e-38)."""
    tasks = torch.arange(batch.obs.shape[0])
    with torch.no_grad():
        _, _, logits = agent.critic(batch.obs, batch.actions, tasks, with_logits=True)
    probabilities = torch.softmax(logits.double(), dim=-1)  # [2, T, B, K], exact in float64
    finfo = torch.finfo(torch.float32)
    # float32 rounds to nearest: above half its smallest subnormal (2**-149) a value stays nonzero
    half_smallest_subnormal = finfo.tiny * 2.0**-24
    subnormal = (probabilities < finfo.tiny) & (probabilities > half_smallest_subnormal)
    return float(subnormal.double().mean())


class _UpdateWithFlushing:
    """``agent.update`` run with subnormals flushed (``flush``) or kept: two keys of one agent
    for :func:`interleaved_update_medians` (setting the mode costs microseconds)."""

    def __init__(self, agent: MultiTaskSAC, flush: bool) -> None:
        self.agent, self.flush = agent, flush

    def update(self, batch) -> None:
        set_flush_denormals(self.flush)
        self.agent.update(batch)


def subnormal_cost(rounds: int) -> dict:
    """Print and return ms per update of the pcgrad row with sharpened critics, subnormals
    kept against flushed (interleaved, shuffled rounds, one thread as the study runs), and the
    share of subnormal atoms."""
    config_name, method = ROWS[SUBNORMAL_ROW]
    agent = build_agents({SUBNORMAL_ROW: (config_name, method)})[SUBNORMAL_ROW]
    batch = _synthetic_batch(torch.device("cpu"))
    sharpen_critics(agent)
    fraction = subnormal_fraction(agent, batch)
    updates = {flush: _UpdateWithFlushing(agent, flush) for flush in (False, True)}
    with torch_threads(1):
        try:
            medians = interleaved_update_medians(updates, batch, rounds, torch.device("cpu"))
        finally:
            set_flush_denormals(False)
    kept, flushed = (1000 * medians[flush] for flush in (False, True))
    print(
        f"subnormals: {SUBNORMAL_ROW} with critics sharpened ({100 * fraction:.0f}% of atom "
        f"probabilities subnormal), median of {rounds} rounds"
    )
    print(f"{'kept ms':>10}{'flushed ms':>12}{'kept / flushed':>16}")
    print(f"{kept:>10.1f}{flushed:>12.1f}{kept / flushed:>16.2f}")
    return {
        "subnormal_fraction": fraction,
        "kept_ms": kept,
        "flushed_ms": flushed,
        "ratio_kept_to_flushed": kept / flushed,
    }
