"""FAMO (Liu, Liu, Jin, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS
2023): a loss weighting that decreases all log-losses at a balanced rate, O(1) in T per step.

Task logits xi [T] (init 0), z = softmax(xi). The update follows the gradient of
sum_i z_i log L~_i, rescaled by c = 1 / sum_j z_j / L~_j:
    alpha_i = T p_i c z_i / L~_i,   L~_i = L_i - min_losses_i + eps  (eps = 1e-8),
so alpha_i <= T p_i (bounded) and alpha = p when all losses and logits are equal (the summed-loss
scale; the paper's weights are alpha / T). The logits learn from the realised change of the
log-losses: at every call after the first, with r = log L~(previous call) - log L~(this call),
xi gets the gradient delta = d/dxi [z^T r] = z * (r - z^T r) and one Adam step
(``lr`` = 0.025, weight decay ``gamma`` = 0.01, the reference's defaults), *before* this call's
weights are computed. The reference recomputes the losses after the parameter step on the same
batch (an extra forward pass); here the next call's losses (a new batch) stand in for them, as
in LibMTL's FAMO.

Only defined for L~ > 0 (it takes log L~ and 1/L~): ``requires_positive_losses``, so a negative
loss raises ``ValueError`` (in the base class), and so does a loss below ``min_losses`` (the
reference's known lower bounds of the losses, default 0, subtracted before the log).
Logits, Adam state and the previous losses are in ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import WeightingAggregator
from .positive_losses import check_nonnegative

EPS = 1e-8


class FAMO(WeightingAggregator):
    """``famo``. Options: ``task_weights``, ``lr`` (logit step, 0.025), ``gamma`` (logit weight
    decay, 0.01), ``min_losses`` (per-task lower bounds of the losses, default 0)."""

    name = "famo"
    uses_gram = False
    needs_losses = True
    requires_positive_losses = True

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        lr: float = 0.025,
        gamma: float = 0.01,
        min_losses: Sequence[float] | None = None,
    ) -> None:
        super().__init__(task_weights)
        if lr <= 0 or gamma < 0:
            raise ValueError(f"famo: need lr > 0 and gamma >= 0, got {lr}, {gamma}")
        self.lr, self.gamma = float(lr), float(gamma)
        self.min_losses = (
            None if min_losses is None else torch.as_tensor(min_losses, dtype=torch.float64)
        )
        self.logits: Tensor | None = None  # xi [T], float64 CPU
        self._optimizer: torch.optim.Adam | None = None
        self.previous: Tensor | None = None  # log L~ of the previous call

    def _shifted(self, losses: Tensor) -> Tensor:
        L = losses.detach().to("cpu", torch.float64)
        if self.min_losses is not None:
            if self.min_losses.shape != L.shape:
                raise ValueError(
                    f"famo: min_losses has {self.min_losses.numel()} entries, losses {L.numel()}"
                )
            L = L - self.min_losses
        check_nonnegative(
            self.name, L, "losses - min_losses" if self.min_losses is not None else "losses"
        )
        return L + EPS

    def _ensure(self, num_tasks: int) -> None:
        if self.logits is None:
            self.logits = torch.zeros(num_tasks, dtype=torch.float64, requires_grad=True)
            self._optimizer = torch.optim.Adam([self.logits], lr=self.lr, weight_decay=self.gamma)
        elif self.logits.shape != (num_tasks,):
            raise ValueError(f"famo was used with {self.logits.numel()} tasks, now {num_tasks}")

    def weights(self, gram: Tensor | None, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        assert losses is not None
        log_losses = self._shifted(losses).log()
        num_tasks = log_losses.shape[0]
        self._ensure(num_tasks)
        if self.previous is not None:
            z = torch.softmax(self.logits.detach(), dim=0)
            r = self.previous - log_losses
            self._optimizer.zero_grad()
            self.logits.grad = z * (r - z @ r)
            self._optimizer.step()
        self.previous = log_losses
        z = torch.softmax(self.logits.detach(), dim=0)
        ratio = z * torch.exp(-log_losses)  # z_i / L~_i, computed without overflow below
        ratio = ratio / ratio.sum()
        p = task_weights.detach().to("cpu", torch.float64)
        return (num_tasks * p * ratio).to(task_weights.device)

    def _extra_state(self) -> dict[str, Any]:
        return {
            "logits": None if self.logits is None else self.logits.detach().clone(),
            "optimizer": None if self._optimizer is None else self._optimizer.state_dict(),
            "previous": None if self.previous is None else self.previous.clone(),
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.logits, self._optimizer, self.previous = None, None, None
        if extra["logits"] is not None:
            self.logits = extra["logits"].clone().requires_grad_(True)
            self._optimizer = torch.optim.Adam([self.logits], lr=self.lr, weight_decay=self.gamma)
            self._optimizer.load_state_dict(extra["optimizer"])
        if extra["previous"] is not None:
            self.previous = extra["previous"].clone()
