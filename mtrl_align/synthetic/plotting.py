"""Figures of synthetic runs in the style of the Aligned-MTL paper (Figs. 1 and 6).

Left: trajectories in loss space (L1, L2) over the Pareto front (thick grey), starts as black
dots, the optimum of the weighted objective as a star. Right: the same trajectories in
parameter space over the contours of L0 = a L1 + (1 - a) L2, with the Pareto set in grey.
Colour along a trajectory goes from light (start) to dark (end).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .problem import synthetic_losses_numpy  # noqa: E402
from .reference import pareto_front, weighted_optimum  # noqa: E402
from .runner import SyntheticResult  # noqa: E402

FRONT_COLOR = "#72727A"


def _pareto_set(num_points: int = 21) -> np.ndarray:
    return np.array(
        [
            weighted_optimum(a, grid_points=401, candidates=2).theta
            for a in np.linspace(0.0, 1.0, num_points)
        ]
    )


def plot_synthetic(result: SyntheticResult, path: str | Path, title: str | None = None) -> Path:
    """Draw ``result`` (runs sharing one task weight pair) to ``path`` (PNG/PDF by suffix)."""
    weights = result.task_weights / result.task_weights.sum(axis=1, keepdims=True)
    a_values = np.unique(np.round(weights[:, 0], 9))
    if a_values.size != 1:
        raise ValueError(
            f"plot_synthetic draws runs with one task weight pair; got a = {a_values.tolist()}"
        )
    a = float(a_values[0])
    optimum = weighted_optimum(a)

    fig, (ax_loss, ax_param) = plt.subplots(1, 2, figsize=(12, 5.2))
    front = pareto_front()
    ax_loss.plot(
        front[:, 0],
        front[:, 1],
        "-",
        lw=8,
        color=FRONT_COLOR,
        label="Pareto front",
        zorder=1,
        solid_capstyle="round",
    )

    axis = np.linspace(-10, 10, 300)
    grid_x, grid_y = np.meshgrid(axis, axis)
    grid_losses = synthetic_losses_numpy(np.stack((grid_x, grid_y), axis=-1))
    total = grid_losses @ np.array([a, 1.0 - a])
    contours = ax_param.contourf(grid_x, grid_y, total, levels=30, cmap="viridis", alpha=0.85)
    fig.colorbar(
        contours, ax=ax_param, shrink=0.85, label=r"$a\,\mathcal{L}_1+(1-a)\,\mathcal{L}_2$"
    )
    pareto_set = _pareto_set()
    ax_param.plot(
        pareto_set[:, 0],
        pareto_set[:, 1],
        "-",
        lw=6,
        color=FRONT_COLOR,
        label="Pareto set",
        zorder=2,
    )

    for run in range(result.trajectory.shape[0]):
        colors = matplotlib.cm.magma_r(np.linspace(0.1, 0.6, result.trajectory.shape[1]))
        losses, path_theta = result.trajectory_losses[run], result.trajectory[run]
        ax_loss.scatter(losses[:, 0], losses[:, 1], color=colors, s=5, zorder=3, rasterized=True)
        ax_param.scatter(
            path_theta[:, 0], path_theta[:, 1], color=colors, s=5, zorder=3, rasterized=True
        )
        label = "initial point" if run == 0 else None
        ax_loss.scatter(*losses[0], color="k", s=90, zorder=5, label=label)
        ax_param.scatter(*path_theta[0], color="k", s=90, zorder=5, label=label)

    ax_loss.scatter(*optimum.losses, marker="*", color="k", s=400, zorder=6, label="optimum")
    ax_param.scatter(
        *optimum.theta, marker="*", color="w", edgecolors="k", s=400, zorder=6, label="optimum"
    )
    ax_loss.set_xlabel(r"$\mathcal{L}_1$", fontsize=14)
    ax_loss.set_ylabel(r"$\mathcal{L}_2$", fontsize=14)
    ax_loss.spines[["top", "right"]].set_visible(False)
    ax_loss.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    ax_param.set_xlabel(r"$\theta_1$", fontsize=14)
    ax_param.set_ylabel(r"$\theta_2$", fontsize=14)
    ax_param.set_xlim(-10, 10)
    ax_param.set_ylim(-10, 10)
    ax_param.set_aspect("equal")
    ax_param.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    heading = title or (
        f"{result.method} (weighting: {result.weighting}), task weights ({a:g}, {1 - a:g}), "
        f"{result.steps} Adam steps, lr {result.lr:g}"
    )
    fig.suptitle(heading)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
