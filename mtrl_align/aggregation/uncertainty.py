"""Uncertainty weighting (Kendall et al., CVPR 2018).

Total loss sum_i p_i (1/2 exp(-s_i) L_i + 1/2 s_i) with learned log-variances s [T] (init 0).
The shared-parameter direction is J^T alpha with alpha_i = p_i / 2 exp(-s_i) (s before this
call's update); s is then updated in place with Adam on its own gradient
p_i / 2 (1 - exp(-s_i) L_i). The log-variances and Adam's moments are in ``state_dict``.
Only defined for losses >= 0 (``requires_positive_losses``): the objective is a Gaussian
negative log-likelihood, and with L_i < 0 it decreases without bound as s_i -> -inf (weights
grow to exp(s_max)); a negative loss raises, and the SAC agent aggregates only the critic with
it. ``s`` is clamped to [-``s_max``, ``s_max``] to keep exp(-s) finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import WeightingAggregator


class Uncertainty(WeightingAggregator):
    """``uncertainty``. Options: ``task_weights``, ``lr`` (Adam step for s, default 1e-3),
    ``s_max`` (clamp, default 20)."""

    name = "uncertainty"
    uses_gram = False
    needs_losses = True
    requires_positive_losses = True

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        lr: float = 1e-3,
        s_max: float = 20.0,
    ) -> None:
        super().__init__(task_weights)
        if lr <= 0 or s_max <= 0:
            raise ValueError(f"need lr > 0 and s_max > 0, got {lr}, {s_max}")
        self.lr, self.s_max = float(lr), float(s_max)
        self.log_vars: Tensor | None = None  # s [T], float64, CPU
        self._optimizer: torch.optim.Adam | None = None

    def _ensure(self, num_tasks: int) -> None:
        if self.log_vars is None:
            self.log_vars = torch.zeros(num_tasks, dtype=torch.float64, requires_grad=True)
        elif self.log_vars.shape != (num_tasks,):
            raise ValueError(
                f"uncertainty was used with {self.log_vars.numel()} tasks, now {num_tasks}"
            )
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam([self.log_vars], lr=self.lr)

    def weights(self, gram: Tensor | None, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        assert losses is not None
        self._ensure(task_weights.shape[0])
        p = task_weights.detach().to("cpu", torch.float64)
        L = losses.detach().to("cpu", torch.float64)
        s = self.log_vars
        alpha = 0.5 * p * torch.exp(-s.detach())
        self._optimizer.zero_grad()
        s.grad = 0.5 * p * (1.0 - torch.exp(-s.detach()) * L)
        self._optimizer.step()
        with torch.no_grad():
            s.clamp_(-self.s_max, self.s_max)
        return alpha

    def _extra_state(self) -> dict[str, Any]:
        return {
            "log_vars": None if self.log_vars is None else self.log_vars.detach().clone(),
            "optimizer": None if self._optimizer is None else self._optimizer.state_dict(),
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.log_vars, self._optimizer = None, None
        if extra["log_vars"] is not None:
            self.log_vars = extra["log_vars"].clone().requires_grad_(True)
            self._ensure(self.log_vars.numel())
            if extra["optimizer"] is not None:
                self._optimizer.load_state_dict(extra["optimizer"])
