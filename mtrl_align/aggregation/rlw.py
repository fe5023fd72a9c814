"""Random loss weighting (Lin et al., 2021): w = softmax(eps), eps ~ N(0, I), drawn each call.

Scaled by T (E[T softmax(eps)_i] = 1 per task, the same scale as the summed-loss ``uniform``)
and multiplied by the pre-defined task weights p: alpha_i = p_i T softmax(eps)_i.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import WeightingAggregator
from .random_source import SeededRandom


class RLW(WeightingAggregator):
    """``rlw``. Options: ``task_weights``, ``seed``."""

    name = "rlw"
    uses_gram = False

    def __init__(self, task_weights: Sequence[float] | Tensor | None = None, seed: int = 0) -> None:
        super().__init__(task_weights)
        self.random = SeededRandom(seed)

    def weights(self, gram: Tensor | None, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        num_tasks = task_weights.shape[0]
        noise = torch.randn(num_tasks, generator=self.random.generator("cpu"), dtype=torch.float64)
        alpha = num_tasks * torch.softmax(noise, dim=0)
        return alpha.to(task_weights.device) * task_weights.to(torch.float64)

    def _extra_state(self) -> dict[str, Any]:
        return {"random": self.random.state_dict()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.random.load_state_dict(extra["random"])
