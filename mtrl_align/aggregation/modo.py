"""MoDo (Chen, Fernando, Ying & Chen, "Three-Way Trade-Off in Multi-Objective Learning:
Optimization, Generalization and Conflict-Avoidance", NeurIPS 2023): one projected gradient
step per call on the MGDA weights,
    lambda <- Proj_simplex(lambda - gamma (G lambda + rho lambda)),   d = J^T lambda
(lambda starts uniform and is kept between calls, in ``state_dict``). The weights sum to 1, as
MGDA's. Pre-defined weights p scale the objectives (the method runs on p_i L_i):
G -> diag(p) G diag(p) and alpha = p * lambda; p = 1 is the paper's method.

``normalize=True`` (default) divides G by mean(diag G) inside the step so ``gamma`` is free of
the gradient scale (RL gradients vary by orders of magnitude); ``normalize=False`` is the raw
step of the paper and of torchjd's ``MoDoWeighting``. As for SDMGrad this is the single-batch
variant: the paper's estimator uses J_1 J_2^T from two independent batches, here G = J J^T.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import WeightingAggregator
from .simplex import project_onto_simplex


def simplex_step(lam: Tensor, G: Tensor, gamma: float, rho: float, normalize: bool) -> Tensor:
    """One step lambda <- Proj(lambda - gamma (G + rho I) lambda) (float64)."""
    if normalize:
        scale = float(G.diagonal().mean())
        G = G / scale if scale > 0 else torch.zeros_like(G)
    return project_onto_simplex(lam - gamma * (G @ lam + rho * lam))


class MoDo(WeightingAggregator):
    """``modo``. Options: ``task_weights`` (objective scales), ``gamma`` (step, 0.1), ``rho``
    (l2 regulariser, 0.1), ``normalize`` (True)."""

    name = "modo"

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        gamma: float = 0.1,
        rho: float = 0.1,
        normalize: bool = True,
    ) -> None:
        super().__init__(task_weights)
        if gamma <= 0 or rho < 0:
            raise ValueError(f"modo: need gamma > 0 and rho >= 0, got {gamma}, {rho}")
        self.gamma, self.rho, self.normalize = float(gamma), float(rho), bool(normalize)
        self.lam: Tensor | None = None  # [T] float64 CPU

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        p = task_weights.detach().to("cpu", torch.float64)
        G = gram.detach().to("cpu", torch.float64) * torch.outer(p, p)
        num_tasks = G.shape[0]
        if self.lam is None:
            self.lam = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
        elif self.lam.shape != (num_tasks,):
            raise ValueError(f"modo was used with {self.lam.numel()} tasks, now {num_tasks}")
        self.lam = simplex_step(self.lam, G, self.gamma, self.rho, self.normalize)
        return (p * self.lam).to(gram.device)

    def _extra_state(self) -> dict[str, Any]:
        return {"lam": None if self.lam is None else self.lam.clone()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.lam = None if extra["lam"] is None else extra["lam"].clone()
