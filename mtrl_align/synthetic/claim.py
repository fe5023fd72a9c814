"""Judge where synthetic runs ended against the independent ground truth.

A run "ends at the optimum" when its final weighted loss ``L0 = a L1 + (1 - a) L2`` is within
``value_tol`` of the optimum's (found by grid + Nelder-Mead, :mod:`.reference`). The loss is
very flat along theta_2 near the front (moving theta_2 by 0.05 changes L0 by ~1e-5), so theta
itself is reported, not used as the criterion; ``value_tol = 1e-3`` corresponds to
|theta_1 - theta_1*| of about 0.1. A run "ends on the Pareto front" when its loss vector is
dominated by the front by at most ``front_tol`` (additive, in loss units).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from .reference import dominance_gap, pareto_front, pareto_stationarity, weighted_optimum
from .runner import SyntheticResult

VALUE_TOL = 1e-3
FRONT_TOL = 1e-2


@dataclass(frozen=True)
class RunVerdict:
    """Where one run ended relative to the optimum of its weighted objective and the front."""

    method: str
    weighting: str
    weight: float
    start: tuple[float, float]
    theta: tuple[float, float]
    optimum_theta: tuple[float, float]
    value_gap: float  # L0(theta) - L0(theta*) >= ~0
    theta_distance: float  # |theta - theta*|
    front_gap: float  # additive dominance by the Pareto front (0 on the front)
    stationarity: float  # relative min-norm of conv{g1, g2} (0: Pareto-stationary)
    at_optimum: bool
    on_front: bool

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=32)
def _optimum(weight: float):
    return weighted_optimum(weight)


@lru_cache(maxsize=1)
def dense_front(points: int = 5001) -> np.ndarray:
    """The front of :func:`pareto_front` linearly interpolated to ``points`` points [P, 2].

    The front is convex, so interpolated chords never dominate true front points; the dense
    version only removes the over-estimate of the gap between samples.
    """
    front = pareto_front()
    l1 = np.linspace(front[0, 0], front[-1, 0], points)
    return np.stack((l1, np.interp(l1, front[:, 0], front[:, 1])), axis=-1)


def judge_runs(
    result: SyntheticResult, value_tol: float = VALUE_TOL, front_tol: float = FRONT_TOL
) -> list[RunVerdict]:
    """One :class:`RunVerdict` per run of ``result``."""
    front = dense_front()
    gaps = dominance_gap(result.final_losses, front)
    station = pareto_stationarity(result.final_theta)
    verdicts = []
    for run in range(result.final_theta.shape[0]):
        weights = result.task_weights[run]
        total = float(weights.sum())
        if total <= 0:
            raise ValueError(f"run {run} has all-zero task weights")
        a = float(weights[0] / total)
        optimum = _optimum(round(a, 12))
        value = float(result.final_losses[run] @ np.array([a, 1.0 - a]))
        value_gap = value - optimum.value
        verdicts.append(
            RunVerdict(
                method=result.method,
                weighting=result.weighting,
                weight=a,
                start=tuple(float(v) for v in result.starts[run]),
                theta=tuple(float(v) for v in result.final_theta[run]),
                optimum_theta=tuple(float(v) for v in optimum.theta),
                value_gap=value_gap,
                theta_distance=float(np.linalg.norm(result.final_theta[run] - optimum.theta)),
                front_gap=float(gaps[run]),
                stationarity=float(station[run]),
                at_optimum=bool(value_gap <= value_tol),
                on_front=bool(gaps[run] <= front_tol),
            )
        )
    return verdicts


def format_verdicts(verdicts: list[RunVerdict]) -> str:
    """A fixed-width table, one row per run."""
    header = (
        f"{'method':<12} {'weighting':<10} {'a':>4} {'start':>13} {'final theta':>17} "
        f"{'theta*':>17} {'L0-L0*':>9} {'front gap':>9} {'optimum':>7} {'front':>5}"
    )
    lines = [header, "-" * len(header)]
    for v in verdicts:
        start = f"({v.start[0]:g},{v.start[1]:g})"
        theta = f"({v.theta[0]:.3f},{v.theta[1]:.3f})"
        opt = f"({v.optimum_theta[0]:.3f},{v.optimum_theta[1]:.3f})"
        lines.append(
            f"{v.method:<12} {v.weighting:<10} {v.weight:>4.1f} {start:>13} {theta:>17} "
            f"{opt:>17} {v.value_gap:>9.2e} {v.front_gap:>9.2e} "
            f"{'yes' if v.at_optimum else 'NO':>7} {'yes' if v.on_front else 'NO':>5}"
        )
    return "\n".join(lines)


def summarize_verdicts(verdicts: list[RunVerdict]) -> str:
    """Counts per (method, weighting): runs at the optimum and on the front."""
    groups: dict[tuple[str, str], list[RunVerdict]] = {}
    for v in verdicts:
        groups.setdefault((v.method, v.weighting), []).append(v)
    lines = [f"{'method':<12} {'weighting':<10} {'runs':>4} {'at optimum':>10} {'on front':>8}"]
    for (method, weighting), group in groups.items():
        lines.append(
            f"{method:<12} {weighting:<10} {len(group):>4} "
            f"{sum(v.at_optimum for v in group):>10} {sum(v.on_front for v in group):>8}"
        )
    return "\n".join(lines)
