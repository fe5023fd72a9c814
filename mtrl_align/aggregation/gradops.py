"""GradOPS (Zhu et al., 2022): gradient deconfliction by orthogonal projections onto subspaces.

1. Each task gradient is projected onto the orthogonal complement of the span of the other
   tasks' gradients: g'_i = g_i - P_{-i} g_i, so g'_i^T g_j = 0 for every j != i and the
   summed update G' = sum_i g'_i conflicts with no task (g_j^T G' = |g'_j|^2 >= 0).
2. Trade-off: R_i = g_i^T G' / |G'| (scalar projection of task i on G'; here = |g'_i|^2 / |G'|),
   r_i = R_i / mean_j R_j, weights w_i ∝ p_i r_i^alpha (p: pre-defined task weights),
   normalised so that sum_i w_i = sum_i p_i; direction d = sum_i w_i g'_i. alpha = 0 gives
   sum_i p_i g'_i; alpha < 0 favours tasks that gain little (alpha = -3 was best on Census).
Tasks whose projected gradient vanishes (it lies in the span of the others) get w_i = 0.
Everything runs on the Gram matrix: g'_i = C[i] J with C[i] = e_i - (coefficients of the
least-squares projection onto the others), from batched rank-safe pseudo-inverses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import WeightingAggregator


def orthogonal_projection_coefficients(gram: Tensor, eps: float) -> Tensor:
    """C [T, T] (float64) with rows of C J = each g_i projected off the span of the others."""
    G = gram.to(torch.float64)
    num_tasks = G.shape[0]
    C = torch.eye(num_tasks, dtype=G.dtype, device=G.device)
    if num_tasks == 1:
        return C
    idx = torch.arange(num_tasks, device=G.device)
    others = torch.stack([torch.cat([idx[:i], idx[i + 1 :]]) for i in range(num_tasks)])  # [T, T-1]
    G_oo = G[others[:, :, None], others[:, None, :]]  # [T, T-1, T-1]
    G_oi = G[others, idx[:, None]]  # [T, T-1]
    lam, V = torch.linalg.eigh(G_oo)
    tol = G.diagonal().max().clamp(min=0.0) * num_tasks * eps
    inv = torch.where(lam > tol, 1.0 / torch.where(lam > tol, lam, 1.0), 0.0)
    beta = torch.einsum("tab,tb,tcb,tc->ta", V, inv, V, G_oi)  # pinv(G_oo) G_oi
    C[idx[:, None], others] = -beta
    return C


class GradOPS(WeightingAggregator):
    """``gradops``. Options: ``task_weights``, ``alpha`` (trade-off exponent, default 0;
    the paper found -3 best on Census and -1 on NYUv2)."""

    name = "gradops"

    def __init__(
        self, task_weights: Sequence[float] | Tensor | None = None, alpha: float = 0.0
    ) -> None:
        super().__init__(task_weights)
        self.alpha = float(alpha)
        self.stats = {"vanished_tasks": 0.0}

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        eps = torch.finfo(gram.dtype).eps
        G = gram.to(torch.float64)
        C = orthogonal_projection_coefficients(G, eps)
        sq_norms = ((C @ G) * C).sum(dim=1).clamp(min=0.0)  # |g'_i|^2
        p = task_weights.to(torch.float64)
        scale = G.diagonal().max().clamp(min=torch.finfo(torch.float64).tiny)
        alive = (sq_norms > scale * G.shape[0] * eps) & (p > 0)
        self.stats["vanished_tasks"] = float((~alive & (p > 0)).sum())
        if not bool(alive.any()):
            return torch.zeros_like(p)
        ratio = sq_norms / sq_norms[alive].mean()
        trade = torch.where(
            alive, p * ratio.clamp(min=torch.finfo(torch.float64).tiny) ** self.alpha, 0.0
        )
        w = trade / trade.sum() * p[alive].sum()
        return C.T @ w
