"""Linear scalarization: d = sum_t w_t g_t (w: pre-defined task weights, default 1 = sum)."""

from __future__ import annotations

from torch import Tensor

from .base import Aggregator


class Uniform(Aggregator):
    """``uniform``: the gradient of the weighted sum of task losses, J^T w. No Gram needed."""

    name = "uniform"

    def aggregate(self, J: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        self.last_weights = task_weights
        return task_weights @ J
