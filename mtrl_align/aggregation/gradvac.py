"""Gradient Vaccine (Wang et al., 2021): raise the cosine between task gradients towards an EMA
target instead of only removing conflicts.

For task i and each other task j (random order), with phi = cos(g'_i, g_j) and the EMA target
phi_hat_ij: if phi < phi_hat,
    g'_i += |g'_i| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2))
            / (|g_j| sqrt(1 - phi_hat^2)) g_j,
then phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi. Applied to the whole shared-parameter
vector (the paper also studies per-layer granularity). Like PCGrad, g'_i is tracked as
coefficients over the rows of J using only the Gram matrix, all tasks at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import WeightingAggregator
from .random_source import SeededRandom


def gradvac_weights(
    gram: Tensor, task_weights: Tensor, orders: Tensor, targets: Tensor, beta: float
) -> Tensor:
    """alpha [T]; updates ``targets`` [T, T] (the EMA phi_hat, float64) in place."""
    G = gram.to(torch.float64)
    num_tasks = G.shape[0]
    tiny = torch.finfo(G.dtype).tiny
    C = torch.eye(num_tasks, dtype=G.dtype, device=G.device)
    norms_j = G.diagonal().clamp(min=0.0).sqrt()
    rows = torch.arange(num_tasks, device=G.device)
    orders = orders.to(G.device)
    for k in range(orders.shape[1]):
        j = orders[:, k]
        CG = C @ G
        dots = CG[rows, j]
        norm_i = (CG * C).sum(dim=1).clamp(min=0.0).sqrt()
        denom = norm_i * norms_j[j]
        phi = torch.where(denom > 0, dots / denom.clamp(min=tiny), 0.0).clamp(-1.0, 1.0)
        phi_hat = targets[rows, j]
        sin_phi = (1.0 - phi**2).clamp(min=0.0).sqrt()
        sin_hat = (1.0 - phi_hat**2).clamp(min=0.0).sqrt()
        scale = norms_j[j] * sin_hat
        adjust = (phi < phi_hat) & (scale > 0)
        coef = norm_i * (phi_hat * sin_phi - phi * sin_hat) / scale.clamp(min=tiny)
        C[rows, j] += torch.where(adjust, coef, 0.0)
        targets[rows, j] = (1.0 - beta) * phi_hat + beta * phi
    return C.T @ task_weights.to(G.dtype)


class GradVac(WeightingAggregator):
    """``gradvac``. Options: ``task_weights``, ``beta`` (EMA rate, paper 1e-2), ``seed``."""

    name = "gradvac"

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        beta: float = 1e-2,
        seed: int = 0,
    ) -> None:
        super().__init__(task_weights)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.beta = beta
        self.random = SeededRandom(seed)
        self.targets: Tensor | None = None  # [T, T] EMA of pairwise cosines

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        num_tasks = gram.shape[0]
        if self.targets is None:
            self.targets = torch.zeros(num_tasks, num_tasks, dtype=torch.float64)
        elif self.targets.shape != (num_tasks, num_tasks):
            raise ValueError(
                f"gradvac was used with {self.targets.shape[0]} tasks, now J has {num_tasks}"
            )
        self.targets = self.targets.to(gram.device)
        orders = self.random.permutations(num_tasks, include_self=False)
        return gradvac_weights(gram, task_weights, orders, self.targets, self.beta)

    def _extra_state(self) -> dict[str, Any]:
        return {"random": self.random.state_dict(), "targets": self.targets}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.random.load_state_dict(extra["random"])
        self.targets = extra["targets"]
