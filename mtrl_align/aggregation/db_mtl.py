"""DB-MTL, dual-balancing (Lin, Ye, Xu, Shi & Zhang, "Dual-Balancing for Multi-Task Learning",
arXiv 2308.12029, 2023): balance the loss scales with a log transform and the gradient
magnitudes by normalisation.

1. loss-scale balancing: the gradient of log L~_i is g_i / L~_i (L~ = L + eps, eps = 1e-8);
2. an EMA of those gradients, b_i <- g_i / L~_i + beta_k (b_i - g_i / L~_i),
   beta_k = beta / k^beta_sigma
   (k = 1, 2, ... counts calls; b starts at the first call's g / L~, LibMTL starts at 0);
3. gradient-magnitude balancing: d = max_j |b_j| * sum_i p_i b_i / |b_i| (a zero b_i is
   skipped), so every task contributes with the largest task's magnitude.
The rows change (d is a combination of the EMA rows b, not of J), so this is an
:class:`Aggregator`; ``last_weights`` holds the coefficients of the rows b, and b [T, n]
(J's dtype and device) and k are in ``state_dict``. Only defined for losses >= 0 (log L;
``requires_positive_losses``): negative losses raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import Aggregator, all_finite
from .positive_losses import check_nonnegative

EPS = 1e-8


class DBMTL(Aggregator):
    """``db-mtl``. Options: ``task_weights``, ``beta`` (EMA, 0.9), ``beta_sigma`` (0.5)."""

    name = "db-mtl"
    needs_losses = True
    requires_positive_losses = True

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        beta: float = 0.9,
        beta_sigma: float = 0.5,
    ) -> None:
        super().__init__(task_weights)
        if not 0 <= beta < 1 or beta_sigma < 0:
            raise ValueError(
                f"db-mtl: need 0 <= beta < 1, beta_sigma >= 0, got {beta}, {beta_sigma}"
            )
        self.beta, self.beta_sigma = float(beta), float(beta_sigma)
        self.step = 0
        self.buffer: Tensor | None = None  # b [T, n]

    def aggregate(self, J: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        assert losses is not None
        if not all_finite([J]):  # before the state changes
            raise ValueError("J contains NaN or inf; check the task losses")
        L = losses.detach().to("cpu", torch.float64)
        check_nonnegative(self.name, L)
        if self.buffer is not None and self.buffer.shape != J.shape:
            raise ValueError(
                f"db-mtl was used with J of shape {tuple(self.buffer.shape)}, now {tuple(J.shape)}"
            )
        inv = (1.0 / (L + EPS)).to(device=J.device, dtype=J.dtype)
        log_grads = inv[:, None] * J
        self.step += 1
        if self.buffer is None:
            self.buffer = log_grads.clone()
        else:
            beta = self.beta / self.step**self.beta_sigma
            self.buffer = log_grads + beta * (self.buffer.to(log_grads) - log_grads)
        norms = torch.linalg.vector_norm(self.buffer, dim=1, dtype=torch.float64)
        largest = norms.max()
        p = task_weights.to(device=norms.device, dtype=torch.float64)
        coef = torch.where(norms > 0, p * largest / torch.where(norms > 0, norms, 1.0), 0.0)
        self.last_weights = coef.to(J.dtype)
        return self.last_weights @ self.buffer

    def _extra_state(self) -> dict[str, Any]:
        return {"step": self.step, "buffer": None if self.buffer is None else self.buffer.clone()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.step = int(extra["step"])
        self.buffer = None if extra["buffer"] is None else extra["buffer"].clone()
