"""GradDrop (Chen et al., NeurIPS 2020): per coordinate, keep only the gradients of one sign,
chosen at random with the sign's "purity" P = 1/2 (1 + sum_i g_i / sum_i |g_i|).

With U ~ Uniform(0, 1) per coordinate, task i's coordinate is kept if (P > U and g_i > 0) or
(P < U and g_i < 0); ``leak`` l_i in [0, 1] lets a fraction of every gradient through:
d = sum_i (l_i + (1 - l_i) M_i) w_i g_i. Applied to the rows of J (the paper applies it to
activations of a shared layer; pass those gradients as J for that variant). Computed from two
weighted reductions over the rows of J instead of a [T, n] mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import Aggregator
from .random_source import SeededRandom


def _weighted_abs_sum(J: Tensor, coefficients: list[float]) -> Tensor:
    """sum_i c_i |J_i| [n], one row at a time (no [T, n] temporary; faster than a dim-0
    reduction of J.abs() on the CPU)."""
    acc = torch.zeros_like(J[0])
    for row, coef in zip(J, coefficients, strict=True):
        if coef != 0.0:
            acc.add_(row.abs(), alpha=coef)
    return acc


def graddrop_direction(J: Tensor, task_weights: Tensor, leak: Tensor, uniform: Tensor) -> Tensor:
    """Direction [n] for J [T, n], weights [T] (>= 0), leak [T] and U [n].

    Per coordinate only the weighted sums of the positive and of the negative entries matter:
    pos = (sum + sum|.|) / 2, neg = (sum - sum|.|) / 2 (weights are >= 0).
    """
    total = task_weights @ J
    total_abs = _weighted_abs_sum(J, task_weights.tolist())
    purity = 0.5 * (1.0 + total / total_abs.clamp(min=torch.finfo(J.dtype).tiny))
    keep_pos = (purity > uniform).to(J.dtype)
    keep_neg = (purity < uniform).to(J.dtype)
    if bool((leak == 0).all()):
        return keep_pos * (0.5 * (total + total_abs)) + keep_neg * (0.5 * (total - total_abs))
    gated = (1.0 - leak) * task_weights
    gated_total = gated @ J
    gated_abs = _weighted_abs_sum(J, gated.tolist())
    dropped = keep_pos * (0.5 * (gated_total + gated_abs)) + keep_neg * (
        0.5 * (gated_total - gated_abs)
    )
    return dropped + (leak * task_weights) @ J


class GradDrop(Aggregator):
    """``graddrop``. Options: ``task_weights``, ``leak`` (float or [T], default 0), ``seed``."""

    name = "graddrop"

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        leak: float | Sequence[float] = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(task_weights)
        self.leak = torch.as_tensor(leak, dtype=torch.float64)
        if self.leak.dim() > 1 or bool((self.leak < 0).any()) or bool((self.leak > 1).any()):
            raise ValueError(f"leak must be a float or a 1-D list in [0, 1], got {leak!r}")
        self.random = SeededRandom(seed)

    def aggregate(self, J: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        return self.aggregate_flat_blocks([J], losses, task_weights)[0]

    def aggregate_flat_blocks(
        self, flat: list[Tensor], losses: Tensor | None, task_weights: Tensor
    ) -> list[Tensor]:
        """Element-wise, so block by block; U [n] is drawn at once (the same draws as for
        the concatenated J)."""
        first = flat[0]
        num_tasks = first.shape[0]
        leak = self.leak.to(first.device, first.dtype)
        if leak.dim() == 0:
            leak = leak.expand(num_tasks)
        elif leak.shape != (num_tasks,):
            raise ValueError(f"leak has {leak.numel()} entries but J has {num_tasks} tasks")
        uniform = torch.rand(
            sum(f.shape[1] for f in flat),
            generator=self.random.generator(first.device),
            dtype=first.dtype,
            device=first.device,
        )
        self.last_weights = None  # element-wise method: no task weights
        pieces = uniform.split([f.shape[1] for f in flat])
        return [
            graddrop_direction(f, task_weights, leak, u) for f, u in zip(flat, pieces, strict=True)
        ]

    def _extra_state(self) -> dict[str, Any]:
        return {"random": self.random.state_dict()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.random.load_state_dict(extra["random"])
