"""SDMGrad (Xiao, Ban & Ji, "Direction-oriented Multi-objective Learning: Simple and Provable
Stochastic Algorithms", NeurIPS 2023): the min-norm-like weights w on the simplex of
    min_w 1/2 |J^T (w + lambda w~)|^2,   w~ = p / sum(p) (the preference direction),
by ``n_iter`` projected heavy-ball steps per call, warm-started from the previous call's w.
The direction is d = sum(p) * J^T (w + lambda w~) / (1 + lambda); with p = 1 that is T times
torchjd's ``SDMGradWeighting`` (whose weights sum to 1).

As in the reference and LibMTL the inner problem uses G / (mean_i |g_i|)^2, so ``lr`` does not
depend on the gradient scale (G = 0: the weights stay). This is the single-batch variant: the
paper's unbiased estimator uses A = J_1 J_2^T from two independent batches; the trainers here
hand one Jacobian per step, so A = G (the deterministic version of the paper's Alg. 1). The
warm-start weights w are in ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import WeightingAggregator
from .simplex import project_onto_simplex


class SDMGrad(WeightingAggregator):
    """``sdmgrad``. Options: ``task_weights``, ``lambda_`` (pull towards the preference, 0.3 as
    torchjd/LibMTL; the authors' MT10 runs use 0.6), ``lr`` (10), ``momentum`` (0.5),
    ``n_iter`` (20)."""

    name = "sdmgrad"

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        lambda_: float = 0.3,
        lr: float = 10.0,
        momentum: float = 0.5,
        n_iter: int = 20,
    ) -> None:
        super().__init__(task_weights)
        if lambda_ < 0 or lr <= 0 or not 0 <= momentum < 1 or n_iter < 1:
            raise ValueError(
                "sdmgrad: need lambda_ >= 0, lr > 0, 0 <= momentum < 1, n_iter >= 1, got "
                f"{lambda_}, {lr}, {momentum}, {n_iter}"
            )
        self.lambda_, self.lr, self.momentum, self.n_iter = (
            float(lambda_),
            float(lr),
            float(momentum),
            int(n_iter),
        )
        self.w: Tensor | None = None  # [T] float64 CPU, on the simplex

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        G = gram.detach().to("cpu", torch.float64)
        p = task_weights.detach().to("cpu", torch.float64)
        num_tasks = G.shape[0]
        if self.w is None:
            self.w = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
        elif self.w.shape != (num_tasks,):
            raise ValueError(f"sdmgrad was used with {self.w.numel()} tasks, now {num_tasks}")
        total = float(p.sum())
        target = p / total if total > 0 else torch.zeros_like(p)
        scale = float(G.diagonal().clamp(min=0.0).sqrt().mean()) ** 2
        A = G / scale if scale > 0 else torch.zeros_like(G)
        w, velocity = self.w, None
        for _ in range(self.n_iter):
            step = A @ (w + self.lambda_ * target)
            velocity = step if velocity is None else self.momentum * velocity + step
            w = project_onto_simplex(w - self.lr * velocity)
        self.w = w
        return (total * (w + self.lambda_ * target) / (1.0 + self.lambda_)).to(gram.device)

    def _extra_state(self) -> dict[str, Any]:
        return {"w": None if self.w is None else self.w.clone()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.w = None if extra["w"] is None else extra["w"].clone()
