"""Ground truth for the synthetic benchmark, computed without any gradient aggregator.

* :func:`weighted_optimum` -- the minimizer of ``L0 = a * L1 + (1 - a) * L2``: a dense grid over
  [-10, 10]^2, then Nelder-Mead (scipy) from the best grid points, in float64.
* :func:`pareto_front` -- the Pareto front as the curve of weighted optima for a in [0, 1]
  (the front of this problem is convex, so linear scalarization traces all of it).
* :func:`dominance_gap` -- by how much (additively) a loss vector is dominated by the front:
  0 for points on or beyond the front.
* :func:`pareto_stationarity` -- the norm of the min-norm convex combination of the two task
  gradients, relative to the larger gradient (0 at Pareto-stationary points).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.optimize import minimize

from .problem import synthetic_jacobian, synthetic_losses_numpy

#: the square the grid search covers; all starts and optima of the paper lie inside
SEARCH_BOX = (-10.0, 10.0)


@dataclass(frozen=True)
class Optimum:
    """Minimizer of ``a * L1 + (1 - a) * L2``: ``theta`` [2], ``losses`` [2], ``value``."""

    weight: float
    theta: np.ndarray
    losses: np.ndarray
    value: float


@lru_cache(maxsize=4)
def _grid(points_per_axis: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(*SEARCH_BOX, points_per_axis)
    xs, ys = np.meshgrid(axis, axis)
    thetas = np.stack((xs.ravel(), ys.ravel()), axis=-1)
    return thetas, synthetic_losses_numpy(thetas)


def _check_weight(weight: float) -> float:
    weight = float(weight)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"task weight a must lie in [0, 1], got {weight}")
    return weight


def weighted_optimum(weight: float, grid_points: int = 801, candidates: int = 8) -> Optimum:
    """Global minimizer of ``weight * L1 + (1 - weight) * L2`` over the search box.

    Args:
        weight: a in [0, 1].
        grid_points: grid resolution per axis (spacing 20 / (grid_points - 1)).
        candidates: number of best grid points refined with Nelder-Mead.
    """
    weight = _check_weight(weight)
    w = np.array([weight, 1.0 - weight])
    thetas, losses = _grid(grid_points)
    values = losses @ w
    best: tuple[float, np.ndarray] | None = None
    candidates = min(candidates, values.size)
    best_indices = np.argpartition(values, candidates - 1)[:candidates]
    for index in best_indices:
        result = minimize(
            lambda theta: float(synthetic_losses_numpy(theta) @ w),
            thetas[index],
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 4000},
        )
        if best is None or result.fun < best[0]:
            best = (float(result.fun), np.asarray(result.x, dtype=np.float64))
    assert best is not None
    value, theta = best
    return Optimum(weight, theta, synthetic_losses_numpy(theta), value)


@lru_cache(maxsize=8)
def pareto_front(num_points: int = 101) -> np.ndarray:
    """Points of the Pareto front in loss space, [num_points, 2], ordered by increasing L1.

    Computed as the weighted optima for a evenly spaced in [0, 1] on a 401 x 401 grid plus
    local refinement.
    """
    weights = np.linspace(0.0, 1.0, num_points)
    front = np.array([weighted_optimum(a, grid_points=401, candidates=2).losses for a in weights])
    return front[np.argsort(front[:, 0])]


def dominance_gap(losses: np.ndarray, front: np.ndarray | None = None) -> np.ndarray:
    """Additive amount by which loss vectors are dominated by the Pareto front.

    ``gap = max over front points p of min_k (losses_k - p_k)``, clipped at 0: the smallest
    epsilon such that ``losses - epsilon`` is not dominated. 0 on the front; positive above it.
    Between two sampled front points the gap is overestimated by at most the sampling step.

    Args:
        losses: [..., 2] loss vectors.
        front: [P, 2] front points (default: :func:`pareto_front`).

    Returns:
        [...] gaps (>= 0).
    """
    front = pareto_front() if front is None else np.asarray(front, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    diff = losses[..., None, :] - front  # [..., P, 2]
    return np.maximum(diff.min(axis=-1).max(axis=-1), 0.0)


def pareto_stationarity(theta: np.ndarray) -> np.ndarray:
    """Relative norm of the min-norm element of conv{g1, g2} at each point.

    Args:
        theta: [..., 2] points.

    Returns:
        [...] values ``|lambda g1 + (1 - lambda) g2| / max(|g1|, |g2|)`` minimized over
        lambda in [0, 1] (0: Pareto-stationary).
    """
    theta = np.asarray(theta, dtype=np.float64)
    flat = torch.as_tensor(theta.reshape(-1, 2), dtype=torch.float64)
    _, jac = synthetic_jacobian(flat)
    g1, g2 = jac[:, 0].numpy(), jac[:, 1].numpy()
    diff = g1 - g2
    denom = np.maximum((diff * diff).sum(-1), 1e-300)
    lam = np.clip(-(g2 * diff).sum(-1) / denom, 0.0, 1.0)
    combo = lam[:, None] * g1 + (1.0 - lam[:, None]) * g2
    scale = np.maximum(np.linalg.norm(g1, axis=-1), np.linalg.norm(g2, axis=-1))
    ratio = np.linalg.norm(combo, axis=-1) / np.maximum(scale, 1e-300)
    return ratio.reshape(theta.shape[:-1])
