"""Linear scalarization: d = sum_t w_t g_t (w: pre-defined task weights, default 1 = sum)."""

from __future__ import annotations

from torch import Tensor

from .base import WeightingAggregator


class Uniform(WeightingAggregator):
    """``uniform``: the gradient of the weighted sum of task losses, J^T w. No Gram needed."""

    name = "uniform"
    uses_gram = False

    def weights(self, gram: Tensor | None, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        return task_weights
