"""MoCo (Fernando, Shen, Liu, Chaudhury, Murugesan & Chen, "Mitigating Gradient Bias in
Multi-objective Learning: A Provably Convergent Approach", ICLR 2023): MGDA weights computed on
*tracked* task gradients Y [T, n] (an average over steps, which removes the bias of
stochastic MGDA), with one projected step on the weights per call:
    Y <- Y - beta_k (Y - J),            beta_k  = beta / k^beta_sigma
    lambda <- Proj_simplex(lambda - gamma_k (Y Y^T + rho I) lambda),
                                         gamma_k = gamma / k^gamma_sigma
    d = Y^T lambda                       (k = 1, 2, ... counts calls)
The rows change (d is not J^T lambda), so this is an :class:`Aggregator`; ``last_weights`` is
lambda (the weights of the tracked rows). Y starts at the first J (LibMTL starts at 0, which
halves the first steps), lambda uniform; both, and k, are in ``state_dict`` (Y has J's dtype
and device, [T, n]). Pre-defined weights p scale the objectives: the rows are p_i g_i.
``normalize=True`` (default) divides Y Y^T by its mean diagonal inside the lambda step (scale-free
``gamma``); LibMTL instead rescales each gradient to norm L_i, which needs positive losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import Aggregator, all_finite, gram_matrix
from .modo import simplex_step


class MoCo(Aggregator):
    """``moco``. Options: ``task_weights`` (objective scales), ``beta`` (0.5), ``beta_sigma``
    (0.5), ``gamma`` (0.1), ``gamma_sigma`` (0.5), ``rho`` (0), ``normalize`` (True)."""

    name = "moco"

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        beta: float = 0.5,
        beta_sigma: float = 0.5,
        gamma: float = 0.1,
        gamma_sigma: float = 0.5,
        rho: float = 0.0,
        normalize: bool = True,
    ) -> None:
        super().__init__(task_weights)
        if not 0 < beta <= 1 or beta_sigma < 0 or gamma <= 0 or gamma_sigma < 0 or rho < 0:
            raise ValueError(
                "moco: need 0 < beta <= 1, beta_sigma >= 0, gamma > 0, gamma_sigma >= 0, "
                f"rho >= 0, got {beta}, {beta_sigma}, {gamma}, {gamma_sigma}, {rho}"
            )
        self.beta, self.beta_sigma = float(beta), float(beta_sigma)
        self.gamma, self.gamma_sigma = float(gamma), float(gamma_sigma)
        self.rho, self.normalize = float(rho), bool(normalize)
        self.step = 0
        self.tracked: Tensor | None = None  # Y [T, n]
        self.lam: Tensor | None = None  # [T] float64 CPU

    def aggregate(self, J: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        if not all_finite([J]):  # before the state changes
            raise ValueError("J contains NaN or inf; check the task losses")
        rows = task_weights.to(J.dtype)[:, None] * J
        num_tasks = J.shape[0]
        if self.tracked is not None and self.tracked.shape != rows.shape:
            raise ValueError(
                f"moco was used with J of shape {tuple(self.tracked.shape)}, now {tuple(J.shape)}"
            )
        self.step += 1
        if self.tracked is None:
            self.tracked = rows.clone()
            self.lam = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
        else:
            beta = self.beta / self.step**self.beta_sigma
            self.tracked = self.tracked.to(rows) - beta * (self.tracked.to(rows) - rows)
        gram = gram_matrix(self.tracked).detach().to("cpu", torch.float64)
        gamma = self.gamma / self.step**self.gamma_sigma
        self.lam = simplex_step(self.lam, gram, gamma, self.rho, self.normalize)
        self.last_weights = self.lam.to(device=J.device, dtype=J.dtype)
        return self.last_weights @ self.tracked

    def _extra_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tracked": None if self.tracked is None else self.tracked.clone(),
            "lam": None if self.lam is None else self.lam.clone(),
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.step = int(extra["step"])
        self.tracked = None if extra["tracked"] is None else extra["tracked"].clone()
        self.lam = None if extra["lam"] is None else extra["lam"].clone()
