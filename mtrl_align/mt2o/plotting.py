"""Figures of MT2O runs: hypervolume curves and final Pareto sets, MT2O vs the baseline."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .hypervolume import nondominated  # noqa: E402
from .optimizer import Comparison  # noqa: E402


def plot_comparison(comparison: Comparison, path: str | Path, title: str | None = None) -> Path:
    """Left: hypervolume over steps (MT2O, baseline, the baseline's final value dashed).
    Right: the final loss vectors of both (first two tasks), non-dominated ones joined."""
    mt2o, baseline = comparison.mt2o, comparison.baseline
    fig, (ax_hv, ax_front) = plt.subplots(1, 2, figsize=(12, 5))
    ax_hv.plot(mt2o.eval_steps, mt2o.hypervolume, lw=2, color="tab:red", label="MT2O (transfer)")
    ax_hv.plot(
        baseline.eval_steps,
        baseline.hypervolume,
        lw=2,
        color="tab:blue",
        label="baseline (no transfer)",
    )
    ax_hv.axhline(
        comparison.target, ls="--", color="gray", lw=1, label="baseline final hypervolume"
    )
    reached = comparison.steps_to_target()
    for key, color in (("mt2o", "tab:red"), ("baseline", "tab:blue")):
        if reached[key] is not None:
            ax_hv.axvline(reached[key], ls=":", color=color, lw=1)
    ax_hv.set_xlabel("step")
    ax_hv.set_ylabel("hypervolume")
    ax_hv.grid(alpha=0.3)
    ax_hv.legend(frameon=False)

    names = mt2o.task_names
    for result, color, label in ((mt2o, "tab:red", "MT2O"), (baseline, "tab:blue", "baseline")):
        final = result.final_losses[:, :2]
        ax_front.scatter(final[:, 0], final[:, 1], color=color, s=30, label=label, zorder=3)
        keep = nondominated(final)
        front = final[keep]
        front = front[np.argsort(front[:, 0])]
        ax_front.plot(front[:, 0], front[:, 1], "-", color=color, lw=1, alpha=0.7)
    ref = mt2o.reference_point
    ax_front.scatter(ref[0], ref[1], marker="x", color="k", s=60, label="reference point")
    ax_front.set_xlabel(names[0])
    ax_front.set_ylabel(names[1])
    ax_front.grid(alpha=0.3)
    ax_front.legend(frameon=False)
    config = mt2o.config
    fig.suptitle(
        title
        or f"MT2O: {config.subproblems} subproblems, {config.steps} steps, "
        f"{config.optimizer} lr {config.lr:g}, transfer {config.transfer_weight:g} "
        f"({config.transfer_decay}, K={config.neighbours})"
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
