"""GradNorm (Chen et al., ICML 2018): learn task weights so that the weighted gradient norms
w_i |g_i| follow mean_j(w_j |g_j|) r_i^a, with r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))
the relative inverse training rate and a the asymmetry (default 1.5).

Each call returns J^T w with the current weights w, then takes one Adam step on
L_grad = sum_i |w_i |g_i| - target_i| (target treated as a constant, as in the paper), clamps
w at ``min_weight`` and renormalises to sum_i w_i = sum_i p_i (p: pre-defined task weights,
also the initial w). The norms |g_i| are those of the rows of J (all shared parameters; the
paper uses the last shared layer -- pass only its columns to get that variant). L(0) is the
first call's losses. Only defined for losses >= 0 (``requires_positive_losses``): the training
rate L_i / L_i(0) and its power r_i^a have no meaning for a negative loss such as the SAC actor
loss, so a negative loss raises and the SAC agent aggregates only the critic with it. A zero
L_i(0) gives r_i = 1 (``stats["zero_losses"]`` counts those).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import WeightingAggregator
from .loss_history import loss_ratio


class GradNorm(WeightingAggregator):
    """``gradnorm``. Options: ``task_weights``, ``asymmetry`` (default 1.5), ``lr`` (Adam step
    for the weights, default 1e-3), ``min_weight`` (default 1e-3)."""

    name = "gradnorm"
    needs_losses = True
    requires_positive_losses = True

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        asymmetry: float = 1.5,
        lr: float = 1e-3,
        min_weight: float = 1e-3,
    ) -> None:
        super().__init__(task_weights)
        if lr <= 0 or min_weight < 0:
            raise ValueError(f"need lr > 0 and min_weight >= 0, got {lr}, {min_weight}")
        self.asymmetry, self.lr, self.min_weight = float(asymmetry), float(lr), float(min_weight)
        self.loss_weights: Tensor | None = None  # w [T], float64, CPU
        self.initial_losses: Tensor | None = None
        self._optimizer: torch.optim.Adam | None = None
        self.stats = {"zero_losses": 0.0, "gradnorm_loss": 0.0}

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        assert losses is not None
        p = task_weights.detach().to("cpu", torch.float64)
        L = losses.detach().to("cpu", torch.float64)
        num_tasks = p.shape[0]
        if self.loss_weights is None:
            self.loss_weights = p.clone().requires_grad_(True)
            self.initial_losses = L.clone()
            self._optimizer = torch.optim.Adam([self.loss_weights], lr=self.lr)
        elif self.loss_weights.shape != (num_tasks,):
            raise ValueError(
                f"gradnorm was used with {self.loss_weights.numel()} tasks, now {num_tasks}"
            )
        w = self.loss_weights
        alpha = w.detach().clone()

        norms = gram.detach().to("cpu", torch.float64).diagonal().clamp(min=0.0).sqrt()
        inverse_rate, bad = loss_ratio(L, self.initial_losses)
        self.stats["zero_losses"] += bad
        relative = inverse_rate / inverse_rate.mean()
        weighted = w.detach() * norms
        target = weighted.mean() * relative**self.asymmetry
        self.stats["gradnorm_loss"] = float((weighted - target).abs().sum())
        self._optimizer.zero_grad()
        w.grad = torch.sign(weighted - target) * norms
        self._optimizer.step()
        with torch.no_grad():
            w.clamp_(min=self.min_weight)
            w.mul_(p.sum() / w.sum())
        return alpha.to(gram.device)

    def _extra_state(self) -> dict[str, Any]:
        return {
            "loss_weights": None
            if self.loss_weights is None
            else self.loss_weights.detach().clone(),
            "initial_losses": self.initial_losses,
            "optimizer": None if self._optimizer is None else self._optimizer.state_dict(),
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.loss_weights, self._optimizer = None, None
        self.initial_losses = extra["initial_losses"]
        if extra["loss_weights"] is not None:
            self.loss_weights = extra["loss_weights"].clone().requires_grad_(True)
            self._optimizer = torch.optim.Adam([self.loss_weights], lr=self.lr)
            if extra["optimizer"] is not None:
                self._optimizer.load_state_dict(extra["optimizer"])
