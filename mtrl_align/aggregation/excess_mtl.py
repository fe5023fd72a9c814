"""ExcessMTL (He, Zhou, Zhang, Yun, Xu, Zeng, Chilimbi & Zhao, "Robust Multi-Task Learning
with Excess Risks", ICML 2024): weight the tasks by their estimated *excess* risk (distance
to their own optimum) instead of their raw loss, which makes the weighting robust to label noise.

Per call: S <- S + J * J (element-wise, AdaGrad's accumulated squared gradients, [T, n]);
the excess risk of task i is estimated by the second-order Taylor bound
e_i = sum_k J_ik^2 / sqrt(S_ik + 1e-7) (Eqs. 6-7, AdaGrad's diagonal as the Hessian);
e is divided by the baseline e^(0) (+1e-7), the first non-warm-up call's e (Section 3.2, "scale
processing"; the first call itself uses e raw, as the reference, LibMTL and torchjd do), or the
mean e over ``warmup`` calls during which the weights stay uniform (Appendix C.1). Then one
exponentiated-gradient step on the simplex, in log space (no overflow):
    w <- softmax(log w + eta e)                               (Eq. 9, eta = ``robust_step_size``)
and d = J^T alpha with alpha = T p * w (p = 1: T times torchjd's ``ExcessMTL``; the weights
start uniform). Needs J itself (not only G), so it is an :class:`Aggregator`; S is one [T, n]
float64 tensor on J's device (blockwise calls use views of it), in ``state_dict`` with w, the
baseline and the step count.
Sign: uses gradients only (no loss values), so negative losses are fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import Aggregator, all_finite

EPS = 1e-7


class ExcessMTL(Aggregator):
    """``excess-mtl``. Options: ``task_weights``, ``robust_step_size`` (eta, 1.0), ``warmup``
    (calls with uniform weights that set the baseline, 0)."""

    name = "excess-mtl"

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        robust_step_size: float = 1.0,
        warmup: int = 0,
    ) -> None:
        super().__init__(task_weights)
        if robust_step_size <= 0 or warmup < 0:
            raise ValueError(
                f"excess-mtl: need robust_step_size > 0, warmup >= 0, got {robust_step_size}, "
                f"{warmup}"
            )
        self.robust_step_size, self.warmup = float(robust_step_size), int(warmup)
        self.step = 0
        self.sq_sum: Tensor | None = None  # S [T, n], float64
        self.w: Tensor | None = None  # [T] float64 CPU, on the simplex
        self.baseline: Tensor | None = None  # e^(0) [T]
        self.warmup_sum: Tensor | None = None

    def aggregate(self, J: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        return self.aggregate_flat_blocks([J], losses, task_weights)[0]

    def aggregate_flat_blocks(
        self, flat: list[Tensor], losses: Tensor | None, task_weights: Tensor
    ) -> list[Tensor]:
        if not all_finite(flat):  # before the state changes
            raise ValueError("J contains NaN or inf; check the task losses")
        num_tasks = flat[0].shape[0]
        n = sum(f.shape[1] for f in flat)
        self._ensure(num_tasks, n, flat[0].device)
        excess = torch.zeros(num_tasks, dtype=torch.float64, device=flat[0].device)
        for f, S in zip(flat, self.sq_sum.split([f.shape[1] for f in flat], dim=1), strict=True):
            sq = f.to(torch.float64).square()
            S.add_(sq)
            excess += (sq / (S + EPS).sqrt()).sum(dim=1)
        excess = excess.cpu()
        self.step += 1
        if self.step <= self.warmup:
            self.warmup_sum += excess
        else:
            if self.baseline is None:
                if self.warmup > 0:
                    self.baseline = self.warmup_sum / self.warmup
                    excess = excess / (self.baseline + EPS)
                else:
                    self.baseline = excess.clone()
            else:
                excess = excess / (self.baseline + EPS)
            self.w = torch.softmax(self.w.log() + self.robust_step_size * excess, dim=0)
        p = task_weights.detach().to("cpu", torch.float64)
        alpha = (num_tasks * p * self.w).to(device=flat[0].device, dtype=flat[0].dtype)
        self.last_weights = alpha
        return [alpha @ f for f in flat]

    def _ensure(self, num_tasks: int, n: int, device: torch.device) -> None:
        if self.sq_sum is None:
            self.sq_sum = torch.zeros(num_tasks, n, dtype=torch.float64, device=device)
            self.w = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
            self.warmup_sum = torch.zeros(num_tasks, dtype=torch.float64)
        elif self.sq_sum.shape != (num_tasks, n):
            raise ValueError(
                f"excess-mtl was used with J of shape {tuple(self.sq_sum.shape)}, now "
                f"{(num_tasks, n)}"
            )
        self.sq_sum = self.sq_sum.to(device)

    def _extra_state(self) -> dict[str, Any]:
        def copy(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.clone()

        return {
            "step": self.step,
            "sq_sum": copy(self.sq_sum),
            "w": copy(self.w),
            "baseline": copy(self.baseline),
            "warmup_sum": copy(self.warmup_sum),
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.step = int(extra["step"])
        self.sq_sum, self.w = extra["sq_sum"], extra["w"]
        self.baseline, self.warmup_sum = extra["baseline"], extra["warmup_sum"]
        for key in ("sq_sum", "w", "baseline", "warmup_sum"):
            value = getattr(self, key)
            setattr(self, key, None if value is None else value.clone())
