"""IMTL-G (Liu et al., ICLR 2021), gradient part: the direction whose projections onto every
unit task gradient u_i = g_i / |g_i| are equal, with weights summing to one.

u_i^T J^T alpha = (G alpha)_i / |g_i| equal for all i  =>  alpha ∝ G^+ n,  n_i = |g_i|,
normalised to sum 1 (the paper's closed form, written with the Gram matrix). G^+ is a
rank-safe pseudo-inverse (eigenvalues <= max(lambda) T eps dropped), which also covers
linearly dependent task gradients. If 1^T G^+ n vanishes (no such direction with positive
sum), the mean weights 1/T are used and ``stats["degenerate"]`` counts it.
IMTL-G has no notion of pre-defined task weights; passing them raises ``ValueError``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import WeightingAggregator


def rank_safe_pinv(gram: Tensor, eps: float) -> Tensor:
    """Pseudo-inverse of a PSD [T, T] matrix (float64), dropping eigenvalues <= max * T * eps."""
    lam, V = torch.linalg.eigh(gram.to(torch.float64))
    tol = lam.max().clamp(min=0.0) * gram.shape[0] * eps
    keep = lam > tol
    inv = torch.where(keep, 1.0 / torch.where(keep, lam, 1.0), 0.0)
    return (V * inv) @ V.T


class IMTLG(WeightingAggregator):
    """``imtl-g``. No options."""

    name = "imtl-g"
    accepts_weights = False

    def __init__(self) -> None:
        super().__init__(None)
        self.stats = {"degenerate": 0.0}

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        eps = torch.finfo(gram.dtype).eps
        G = gram.to(torch.float64)
        norms = G.diagonal().clamp(min=0.0).sqrt()
        v = rank_safe_pinv(G, eps) @ norms
        total = v.sum()
        if not bool(total.abs() > 1e-12 * v.abs().sum().clamp(min=1e-300)):
            self.stats["degenerate"] = self.stats.get("degenerate", 0.0) + 1
            return torch.full_like(v, 1.0 / v.numel())
        return v / total
