"""IMTL-L (Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task
Learning", ICLR 2021), loss part: each task loss is replaced by the scale-invariant
e^{s_i} L_i - s_i with a learned log-scale s_i (init 0).

The shared-parameter direction is J^T alpha with alpha_i = p_i e^{s_i} (s before this call's
update); s then takes one Adam step (``lr``) on its own gradient p_i (e^{s_i} L_i - 1), whose
fixed point is e^{s_i} = 1 / L_i (every scaled loss equals 1). The paper trains s with the
model's optimizer; a separate Adam is the same update with its own step size. s is clamped to
[-``s_max``, ``s_max``] so e^s stays finite and bounded.

Only defined for losses >= 0: for L_i < 0 the objective e^s L - s is unbounded below in s
(``requires_positive_losses``; negative losses raise ``ValueError``). s and Adam's moments
are in ``state_dict``. :class:`LogScales` is shared with the full IMTL (``imtl``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import WeightingAggregator
from .positive_losses import check_nonnegative


class LogScales:
    """The learned log-scales s [T] (float64, CPU) and their Adam optimizer."""

    def __init__(self, owner: str, lr: float, s_max: float) -> None:
        if lr <= 0 or s_max <= 0:
            raise ValueError(f"{owner}: need lr > 0 and s_max > 0, got {lr}, {s_max}")
        self.owner, self.lr, self.s_max = owner, float(lr), float(s_max)
        self.s: Tensor | None = None
        self._optimizer: torch.optim.Adam | None = None

    def current(self, num_tasks: int) -> Tensor:
        """s [T] (detached), created at zero on first use."""
        if self.s is None:
            self.s = torch.zeros(num_tasks, dtype=torch.float64, requires_grad=True)
            self._optimizer = torch.optim.Adam([self.s], lr=self.lr)
        elif self.s.shape != (num_tasks,):
            raise ValueError(f"{self.owner} was used with {self.s.numel()} tasks, now {num_tasks}")
        return self.s.detach().clone()

    def update(self, losses: Tensor, p: Tensor) -> None:
        """One Adam step on sum_i p_i (e^{s_i} L_i - s_i)."""
        assert self.s is not None and self._optimizer is not None
        self._optimizer.zero_grad()
        self.s.grad = p * (torch.exp(self.s.detach()) * losses - 1.0)
        self._optimizer.step()
        with torch.no_grad():
            self.s.clamp_(-self.s_max, self.s_max)

    def state_dict(self) -> dict[str, Any]:
        return {
            "s": None if self.s is None else self.s.detach().clone(),
            "optimizer": None if self._optimizer is None else self._optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.s, self._optimizer = None, None
        if state["s"] is not None:
            self.current(state["s"].numel())
            with torch.no_grad():
                self.s.copy_(state["s"])
            self._optimizer.load_state_dict(state["optimizer"])


class IMTLL(WeightingAggregator):
    """``imtl-l``. Options: ``task_weights``, ``lr`` (Adam step for s, 1e-3), ``s_max`` (20)."""

    name = "imtl-l"
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
        self.scales = LogScales(self.name, lr, s_max)

    def weights(self, gram: Tensor | None, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        assert losses is not None
        L = losses.detach().to("cpu", torch.float64)
        check_nonnegative(self.name, L)
        p = task_weights.detach().to("cpu", torch.float64)
        s = self.scales.current(L.numel())
        self.scales.update(L, p)
        return (p * torch.exp(s)).to(task_weights.device)

    def _extra_state(self) -> dict[str, Any]:
        return {"scales": self.scales.state_dict()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.scales.load_state_dict(extra["scales"])
