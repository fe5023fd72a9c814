"""Geometric loss strategy (Chennupati, Sistu, Yogamani & Rawashdeh, "MultiNet++: Multi-Stream
Feature Aggregation and Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019):
minimise the geometric mean of the task losses, L_gls = (prod_i L_i)^(1/T).

Its gradient is (L_gls / T) sum_i g_i / L_i. With pre-defined weights p the weighted geometric
mean exp(sum_i p_i log L_i / sum p) is used, and the weights are scaled by sum(p) so that equal
losses give alpha = p (the summed-loss scale):
    alpha_i = p_i L_gls / L~_i,    L~ = L + eps  (eps = 1e-8 keeps a zero loss finite).
Only defined for losses >= 0 (a geometric mean of negative numbers is not): negative losses
raise ``ValueError`` (``requires_positive_losses``). Stateless; needs the losses each call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import WeightingAggregator
from .positive_losses import check_nonnegative

EPS = 1e-8


class GLS(WeightingAggregator):
    """``gls``. Options: ``task_weights``."""

    name = "gls"
    uses_gram = False
    needs_losses = True
    requires_positive_losses = True

    def __init__(self, task_weights: Sequence[float] | Tensor | None = None) -> None:
        super().__init__(task_weights)

    def weights(self, gram: Tensor | None, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        assert losses is not None
        L = losses.detach().to("cpu", torch.float64)
        check_nonnegative(self.name, L)
        p = task_weights.detach().to("cpu", torch.float64)
        total = float(p.sum())
        if not total > 0:
            return torch.zeros_like(p).to(task_weights.device)
        log_losses = (L + EPS).log()
        log_mean = (p * log_losses).sum() / total
        return (p * torch.exp(log_mean - log_losses)).to(task_weights.device)
