"""Task interference: the [T, T] cosine matrix of the per-task gradients, logged and drawn.

At every logged update the agent computes, per network (critic, actor), the cosines
cos_ij = <g_i, g_j> / (|g_i| |g_j|) between the per-task gradients g_t of the network's
shared parameters (:func:`mtrl_align.aggregation.cosine_matrix_from_gram`). Negative entries
are conflicting task pairs. The training logger writes

- one scalar per task pair i < j, ``interference/<network>/<i>_<j>`` (i, j: positions in the
  run's task order, that of ``env.tasks`` or of the benchmark, as in ``eval.jsonl``), which the
  run archive keeps in ``scalars.jsonl`` (about 3.5 KB per logged update at T = 10, both
  networks together);
- ``aggregation/<network>/mean_cos``: the mean over the pairs;
- a heatmap image with the task names, ``interference/<network>`` (TensorBoard's Images tab).

``mtrl-align report`` averages the matrices over each run's logged updates and then over seeds
(:mod:`mtrl_align.sweep.interference`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

KEY_PREFIX = "interference"
PAIR_KEY_PATTERN = r"interference/[^/]+/\d+_\d+"
"""Regular expression of the per-pair scalar keys (for the run archive)."""
_PAIR_KEY = re.compile(r"^interference/(?P<network>[^/]+)/(?P<i>\d+)_(?P<j>\d+)$")


def pair_key(network: str, i: int, j: int) -> str:
    """Scalar key of task pair (i, j), i < j, of ``network``."""
    return f"{KEY_PREFIX}/{network}/{i}_{j}"


def pair_scalars(network: str, cosine: Any) -> dict[str, float]:
    """The per-pair scalars {key: cos_ij} (i < j) of a cosine matrix [T, T] (tensor or array)."""
    matrix = np.asarray(cosine.detach().cpu() if hasattr(cosine, "detach") else cosine)
    num_tasks = matrix.shape[0]
    return {
        pair_key(network, i, j): float(matrix[i, j])
        for i in range(num_tasks)
        for j in range(i + 1, num_tasks)
    }


def matrix_from_scalars(row: Mapping[str, Any], network: str, num_tasks: int) -> np.ndarray | None:
    """The [T, T] cosine matrix of ``network`` from one scalar row (``scalars.jsonl`` or
    TensorBoard; diagonal 1), or None when the row has none of its pairs. Missing pairs are
    NaN."""
    matrix = np.full((num_tasks, num_tasks), np.nan)
    np.fill_diagonal(matrix, 1.0)
    found = False
    for key, value in row.items():
        match = _PAIR_KEY.match(key)
        if match is None or match["network"] != network:
            continue
        i, j = int(match["i"]), int(match["j"])
        if i < num_tasks and j < num_tasks:
            matrix[i, j] = matrix[j, i] = float(value)
            found = True
    return matrix if found else None


def draw_heatmap(ax: Any, matrix: np.ndarray, names: Sequence[str], title: str) -> Any:
    """Draw a cosine matrix [T, T] on a matplotlib axis (red: conflict, blue: agreement; values
    written in the cells for T <= 12). Returns the image artist (for a colour bar)."""
    image = ax.imshow(matrix, cmap="RdBu", vmin=-1.0, vmax=1.0)
    num_tasks = matrix.shape[0]
    short = [name.removesuffix("-v3").removesuffix("-v2") for name in names]
    ax.set_xticks(range(num_tasks), short, rotation=90, fontsize=6)
    ax.set_yticks(range(num_tasks), short, fontsize=6)
    ax.set_title(title, fontsize=8)
    if num_tasks <= 12:
        for i in range(num_tasks):
            for j in range(num_tasks):
                if i != j and np.isfinite(matrix[i, j]):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=5)
    return image


def heatmap_image(matrix: np.ndarray, names: Sequence[str], title: str) -> np.ndarray:
    """The heatmap of :func:`draw_heatmap` rendered to an RGB array [H, W, 3] (uint8), without
    pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.0, 4.5), dpi=80)
    canvas = FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    image = draw_heatmap(ax, matrix, names, title)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
