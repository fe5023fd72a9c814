"""Euclidean projection onto the probability simplex (SDMGrad, MoDo, MoCo)."""

from __future__ import annotations

import torch
from torch import Tensor


def project_onto_simplex(y: Tensor) -> Tensor:
    """argmin_{x >= 0, sum x = 1} |x - y| for y [T] (sort-based, O(T log T), y's dtype).

    With u = sort(y, descending) and rho the last k with u_k - (sum_{j<=k} u_j - 1) / k > 0,
    x = max(y - theta, 0) where theta = (sum_{j<=rho} u_j - 1) / rho.
    """
    u = torch.sort(y, descending=True).values
    k = torch.arange(1, y.numel() + 1, dtype=y.dtype, device=y.device)
    cumulative = torch.cumsum(u, dim=0) - 1.0
    positive = u - cumulative / k > 0
    rho = int(positive.nonzero().max()) if bool(positive.any()) else 0
    theta = cumulative[rho] / (rho + 1)
    return (y - theta).clamp(min=0.0)
