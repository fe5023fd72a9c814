"""UPGrad (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232,
2024): project every weighted task gradient p_i g_i onto the dual cone of all task gradients
{x : J x >= 0} and sum the projections.

alpha = sum_i v^(i),  v^(i) = argmin_{v >= p_i e_i} v^T G v   (T small QPs on the Gram matrix,
solved exactly by :mod:`.dual_cone`). The direction never conflicts with a task:
g_j^T d = (G alpha)_j >= 0 for all j. With the default p = 1 it is T times torchjd's ``UPGrad()``
(which uses the mean, p = 1/T). A QP whose nnls solution fails its KKT check is re-solved by
projected gradient descent; ``stats["solver_fallbacks"]`` counts those QPs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .base import WeightingAggregator
from .dual_cone import project_weights


def upgrad_weights(gram: Tensor, task_weights: Tensor) -> tuple[Tensor, int]:
    """alpha [T] (float64) and the number of fallback solves for Gram [T, T], weights p [T]."""
    G = gram.detach().to("cpu", torch.float64).numpy()
    p = task_weights.detach().to("cpu", torch.float64).numpy()
    trace = float(np.trace(G))
    if not trace > 0:  # all task gradients zero: d = 0 for any alpha
        return torch.from_numpy(p.copy()), 0
    V, fallbacks = project_weights(G / trace, np.diag(p))
    return torch.from_numpy(V.sum(axis=0)), fallbacks


class UPGrad(WeightingAggregator):
    """``upgrad``. Options: ``task_weights``."""

    name = "upgrad"

    def __init__(self, task_weights: Sequence[float] | Tensor | None = None) -> None:
        super().__init__(task_weights)
        self.stats = {"solver_fallbacks": 0.0}

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        alpha, fallbacks = upgrad_weights(gram, task_weights)
        self.stats["solver_fallbacks"] += fallbacks
        return alpha.to(gram.device)
