"""DualProj (the projection of GEM, Lopez-Paz & Ranzato, NeurIPS 2017, Eq. 11, as an MTL
aggregator in Quinton & Rey, arXiv 2406.16232, 2024): project the weighted sum J^T p onto the
dual cone of the task gradients {x : J x >= 0}.

alpha = argmin_{v >= p} v^T G v (one small QP on the Gram matrix, :mod:`.dual_cone`). The
direction never conflicts with a task: (G alpha)_j >= 0. With the default p = 1 it is T times
torchjd's ``DualProj()`` (mean, p = 1/T). ``stats["solver_fallbacks"]`` counts QPs whose nnls
solution failed the KKT check and were re-solved by projected gradient descent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .base import WeightingAggregator
from .dual_cone import project_weights


class DualProj(WeightingAggregator):
    """``dualproj``. Options: ``task_weights``."""

    name = "dualproj"

    def __init__(self, task_weights: Sequence[float] | Tensor | None = None) -> None:
        super().__init__(task_weights)
        self.stats = {"solver_fallbacks": 0.0}

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        G = gram.detach().to("cpu", torch.float64).numpy()
        p = task_weights.detach().to("cpu", torch.float64).numpy()
        trace = float(np.trace(G))
        if not trace > 0:  # all task gradients zero: d = 0 for any alpha
            return torch.from_numpy(p.copy()).to(gram.device)
        V, fallbacks = project_weights(G / trace, p[None, :])
        self.stats["solver_fallbacks"] += fallbacks
        return torch.from_numpy(V[0]).to(gram.device)
