"""Adam on the aggregated gradient of the synthetic two-task benchmark, many runs at once.

B independent runs (start point x task weights) share one parameter tensor theta [B, 2]. Adam
is element-wise, so one ``torch.optim.Adam`` over [B, 2] is exactly B independent Adams. Each
step computes the losses [B, 2] and Jacobians [B, 2, 2] of all runs in one backward pass per
task, then calls each run's own aggregator instance (methods may keep state) on its [2, 2]
Jacobian, and writes the B directions into ``theta.grad``.

How the task weights (a, 1 - a) enter (``weighting``):

* ``"losses"`` -- the losses are scaled, ``(a * L1, (1 - a) * L2)``, and the aggregator gets
  the scaled Jacobian with its default unit task weights. This is what the public toy scripts
  of Nash-MTL and Aligned-MTL do; it works for every method.
* ``"aggregator"`` -- the unscaled Jacobian goes to the aggregator with ``weights=(a, 1 - a)``
  (the pre-defined task weights ``w`` of Algorithm 1); only for methods that accept weights.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtrl_align import aggregation
from mtrl_align.device import resolve_device

from .problem import NUM_TASKS, PAPER_LR, PAPER_STEPS, synthetic_jacobian

WEIGHTINGS = ("losses", "aggregator")


@dataclass
class SyntheticResult:
    """Outcome of B runs.

    Attributes:
        method: aggregator name.
        weighting: how the task weights entered (see module docstring).
        starts: [B, 2] initial points.
        task_weights: [B, 2] task weights (a, 1 - a) of each run.
        steps: Adam steps taken.
        lr: Adam learning rate.
        recorded_steps: [K] step index of each recorded point (0 = start, last = ``steps``).
        trajectory: [B, K, 2] theta at the recorded steps.
        trajectory_losses: [B, K, 2] unscaled (L1, L2) at the recorded steps.
        aggregator_stats: per-run ``agg.stats`` at the end.
    """

    method: str
    weighting: str
    starts: np.ndarray
    task_weights: np.ndarray
    steps: int
    lr: float
    recorded_steps: np.ndarray
    trajectory: np.ndarray
    trajectory_losses: np.ndarray
    aggregator_stats: list[dict[str, float]] = field(default_factory=list)

    @property
    def final_theta(self) -> np.ndarray:
        """[B, 2] theta after the last step."""
        return self.trajectory[:, -1]

    @property
    def final_losses(self) -> np.ndarray:
        """[B, 2] unscaled (L1, L2) after the last step."""
        return self.trajectory_losses[:, -1]

    def run_dict(self, index: int, with_trajectory: bool = True) -> dict[str, Any]:
        """JSON-able record of run ``index``: final ``theta``, ``losses``, ``steps`` (+ path)."""
        record: dict[str, Any] = {
            "start": self.starts[index].tolist(),
            "task_weights": self.task_weights[index].tolist(),
            "theta": self.final_theta[index].tolist(),
            "losses": self.final_losses[index].tolist(),
            "weighted_loss": float(self.final_losses[index] @ self.task_weights[index]),
            "steps": int(self.steps),
        }
        if self.aggregator_stats:
            record["aggregator_stats"] = self.aggregator_stats[index]
        if with_trajectory:
            record["trajectory"] = {
                "steps": self.recorded_steps.tolist(),
                "theta": self.trajectory[index].tolist(),
                "losses": self.trajectory_losses[index].tolist(),
            }
        return record


def _as_pairs(values: Sequence[Sequence[float]] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise ValueError(f"{what} must have shape [B, 2] with B >= 1, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} must be finite, got {array.tolist()}")
    return array


def run_synthetic(
    method: str,
    starts: Sequence[Sequence[float]] | np.ndarray,
    task_weights: Sequence[Sequence[float]] | np.ndarray,
    *,
    steps: int = PAPER_STEPS,
    lr: float = PAPER_LR,
    weighting: str = "losses",
    record_every: int | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    aggregator_options: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    seed: int = 0,
) -> SyntheticResult:
    """Run Adam on the aggregated gradient from each start with its task weights.

    Args:
        method: aggregator name (see ``mtrl_align.aggregation.available()``).
        starts: [B, 2] initial points.
        task_weights: [B, 2] non-negative task weights, one pair per run (use
            :func:`problem_grid` to cross starts with weights).
        steps: Adam steps (paper: 35000).
        lr: Adam learning rate (paper: 1e-3).
        weighting: ``"losses"`` or ``"aggregator"`` (module docstring).
        record_every: record theta every this many steps (default: about 1000 points).
        device: ``cpu``, ``cuda`` or ``auto``.
        dtype: float dtype of theta and the Jacobians (paper: float32; the aggregator's rank
            tolerance follows it).
        aggregator_options: keyword options for ``aggregation.make``.
        progress: called with the step index after every step (e.g. a tqdm update).
        seed: seeds randomised aggregators; run i draws from ``derive_seed(seed, "run<i>")``.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose from: {', '.join(WEIGHTINGS)}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    starts_np = _as_pairs(starts, "starts")
    weights_np = _as_pairs(task_weights, "task_weights")
    if starts_np.shape != weights_np.shape:
        raise ValueError(
            f"starts {starts_np.shape} and task_weights {weights_np.shape} must have the same shape"
        )
    if (weights_np < 0).any():
        raise ValueError(f"task weights must be >= 0, got {weights_np.tolist()}")
    options = dict(aggregator_options or {})
    num_runs = starts_np.shape[0]
    aggregators = [
        aggregation.make_seeded(method, seed, f"run{i}", **options) for i in range(num_runs)
    ]
    if weighting == "aggregator" and not aggregators[0].accepts_weights:
        raise ValueError(
            f"aggregator {method!r} does not take pre-defined task weights; "
            "use weighting='losses' (scale the task losses) instead"
        )
    if aggregators[0].uses_representation:
        raise ValueError(
            f"aggregator {method!r} works on a shared representation; the synthetic problem "
            "has none (use its non-UB variant)"
        )
    if record_every is None:
        record_every = max(1, steps // 1000)
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")

    dev = resolve_device(device)
    theta = torch.nn.Parameter(torch.as_tensor(starts_np, dtype=dtype, device=dev).clone())
    weights = torch.as_tensor(weights_np, dtype=dtype, device=dev)
    optimizer = torch.optim.Adam([theta], lr=lr)

    recorded_steps: list[int] = []
    path: list[torch.Tensor] = []
    path_losses: list[torch.Tensor] = []
    directions = torch.empty_like(theta)
    # Aggregators warn on every degenerate step (e.g. nash-mtl solver fallbacks on the Pareto
    # front, thousands per run); they are counted in agg.stats and summarized once here.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(steps + 1):
            losses, jac = synthetic_jacobian(theta)  # [B, 2], [B, 2, 2]
            if step % record_every == 0 or step == steps:
                recorded_steps.append(step)
                path.append(theta.detach().clone())
                path_losses.append(losses.clone())
            if step == steps:
                break
            if not bool(torch.isfinite(jac).all()):
                bad = torch.nonzero(~torch.isfinite(jac).flatten(1).all(1)).flatten().tolist()
                raise ValueError(f"non-finite gradient at step {step} for run(s) {bad}")
            if weighting == "losses":
                jac = jac * weights[:, :, None]
                losses = losses * weights
            for run, agg in enumerate(aggregators):
                if weighting == "aggregator":
                    directions[run] = agg(jac[run], losses[run], weights=weights[run])
                else:
                    directions[run] = agg(jac[run], losses[run])
            theta.grad = directions.clone()
            optimizer.step()
            if progress is not None:
                progress(step)
    if caught:
        first = str(caught[0].message)
        warnings.warn(
            f"{method}: {len(caught)} warning(s) from the aggregators during {num_runs} run(s) "
            f"(counts in aggregator_stats); first: {first}",
            RuntimeWarning,
            stacklevel=2,
        )

    return SyntheticResult(
        method=method,
        weighting=weighting,
        starts=starts_np,
        task_weights=weights_np,
        steps=steps,
        lr=lr,
        recorded_steps=np.asarray(recorded_steps),
        trajectory=torch.stack(path, dim=1).cpu().double().numpy(),
        trajectory_losses=torch.stack(path_losses, dim=1).cpu().double().numpy(),
        aggregator_stats=[dict(agg.stats) for agg in aggregators],
    )


def problem_grid(
    starts: Sequence[Sequence[float]], weights: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Cross starts [S, 2] with task weights a [W] -> (starts [W*S, 2], task_weights [W*S, 2]).

    Runs are ordered weight-major: run ``i * S + j`` has weight ``weights[i]`` and start
    ``starts[j]``; its task weights are ``(a, 1 - a)``.
    """
    starts_np = _as_pairs(starts, "starts")
    a = np.asarray(weights, dtype=np.float64).reshape(-1)
    if ((a < 0) | (a > 1)).any():
        raise ValueError(f"task weight a must lie in [0, 1], got {a.tolist()}")
    tiled = np.tile(starts_np, (a.size, 1))
    pairs = np.repeat(np.stack((a, 1.0 - a), axis=-1), starts_np.shape[0], axis=0)
    return tiled, pairs


__all__ = ["NUM_TASKS", "WEIGHTINGS", "SyntheticResult", "problem_grid", "run_synthetic"]
