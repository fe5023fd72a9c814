"""PCGrad (Yu et al., 2020): project a task gradient onto the normal plane of each other task's
gradient it conflicts with (negative inner product), visiting the others in random order.

Every projected gradient stays in the span of the rows of J, so it is tracked as coefficients
C [T, T] (g'_i = C[i] J) using only the Gram matrix; all tasks are processed at once, one
vectorised step per position in the random order. Direction: sum_i w_i g'_i = J^T (C^T w).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import WeightingAggregator
from .random_source import SeededRandom


def pcgrad_weights(gram: Tensor, task_weights: Tensor, orders: Tensor) -> Tensor:
    """alpha [T] for Gram [T, T]; ``orders`` [T, T-1]: row i = the order in which task i
    visits the other tasks."""
    G = gram.to(torch.float64)
    num_tasks = G.shape[0]
    C = torch.eye(num_tasks, dtype=G.dtype, device=G.device)
    sq_norms = G.diagonal()
    rows = torch.arange(num_tasks, device=G.device)
    orders = orders.to(G.device)
    for k in range(orders.shape[1]):
        j = orders[:, k]
        dots = (C * G[:, j].T).sum(dim=1)  # <g'_i, g_j>
        conflict = dots < 0
        coef = torch.where(conflict, dots / sq_norms[j].clamp(min=torch.finfo(G.dtype).tiny), 0.0)
        C[rows, j] -= coef
    return C.T @ task_weights.to(G.dtype)


class PCGrad(WeightingAggregator):
    """``pcgrad``. Options: ``task_weights``, ``seed`` (random visiting order)."""

    name = "pcgrad"

    def __init__(self, task_weights: Sequence[float] | Tensor | None = None, seed: int = 0) -> None:
        super().__init__(task_weights)
        self.random = SeededRandom(seed)

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        orders = self.random.permutations(gram.shape[0], include_self=True)
        return pcgrad_weights(gram, task_weights, orders)

    def _extra_state(self) -> dict[str, Any]:
        return {"random": self.random.state_dict()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.random.load_state_dict(extra["random"])
