"""Dynamic weight average (Liu et al., CVPR 2019, MTAN).

alpha_i = p_i T exp(r_i / tau) / sum_j exp(r_j / tau),  r_i = L_i(k-1) / L_i(k-2),
where L(k) is the mean loss of "period" k: with ``period=1`` every call is a period (the usual
choice in RL); for vision set it to the iterations per epoch to get the paper's epoch-level
version. Until two periods are complete, alpha = p. Needs the per-task losses at every call.

Losses of any sign: r_i is computed as 1 + (L_i(k-1) - L_i(k-2)) / |L_i(k-2)|, which equals
the paper's ratio for positive losses and keeps its meaning for negative ones (the SAC actor
loss): a task whose loss fell fast gets r_i < 1 and less weight. Only L_i(k-2) = 0 gives
r_i = 1 (``stats["zero_losses"]`` counts those).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import WeightingAggregator
from .loss_history import relative_rate


class DWA(WeightingAggregator):
    """``dwa``. Options: ``task_weights``, ``temperature`` (default 2), ``period`` (calls per
    averaging period, default 1)."""

    name = "dwa"
    uses_gram = False
    needs_losses = True

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        temperature: float = 2.0,
        period: int = 1,
    ) -> None:
        super().__init__(task_weights)
        if temperature <= 0 or period < 1:
            raise ValueError(f"need temperature > 0 and period >= 1, got {temperature}, {period}")
        self.temperature, self.period = float(temperature), int(period)
        self.history: list[Tensor] = []  # mean losses of the last two complete periods
        self._sum: Tensor | None = None
        self._count = 0
        self.stats = {"zero_losses": 0.0}

    def weights(self, gram: Tensor | None, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        assert losses is not None
        p = task_weights.to(torch.float64)
        num_tasks = p.shape[0]
        if self.history and self.history[-1].shape != (num_tasks,):
            raise ValueError(f"dwa was used with {self.history[-1].numel()} tasks, now {num_tasks}")
        if len(self.history) == 2:
            ratio, bad = relative_rate(self.history[1].to(p.device), self.history[0].to(p.device))
            self.stats["zero_losses"] += bad
            alpha = num_tasks * torch.softmax(ratio / self.temperature, dim=0) * p
        else:
            alpha = p.clone()
        self._accumulate(losses.to(torch.float64).cpu())
        return alpha

    def _accumulate(self, losses: Tensor) -> None:
        self._sum = losses.clone() if self._sum is None else self._sum + losses
        self._count += 1
        if self._count == self.period:
            self.history = (self.history + [self._sum / self._count])[-2:]
            self._sum, self._count = None, 0

    def _extra_state(self) -> dict[str, Any]:
        return {"history": list(self.history), "sum": self._sum, "count": self._count}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.history = list(extra["history"])
        self._sum, self._count = extra["sum"], int(extra["count"])
