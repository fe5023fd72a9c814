"""ConFIG (Liu, Chu & Thuerey, "ConFIG: Towards Conflict-free Training of Physics Informed
Neural Networks", ICLR 2025, Eq. 2): the direction whose cosine with every unit task gradient
is equal (weighted by p), rescaled to the summed projection of the task gradients on it.

With units u_i = g_i / |g_i| (a zero gradient gives u_i = 0), g_u = pinv(U) p = J^T c with
c = N^+ C^+ p, C = N^+ G N^+ the cosine matrix, N = diag(|g_i|); then
d = (sum_i g_i^T g_u / |g_u|) g_u / |g_u|  =  (1^T G c / c^T G c) J^T c,
all on the Gram matrix. The length uses the unweighted sum, as Eq. 2 and torchjd's ``ConFIG``
(same default p = 1, so no factor). C^+ is the rank-safe pseudo-inverse of IMTL-G (eigenvalues
<= max * T * eps(dtype of J) dropped). If g_u = 0 (all-zero J) the direction is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import WeightingAggregator
from .imtl_g import rank_safe_pinv


def config_weights(gram: Tensor, task_weights: Tensor, eps: float) -> Tensor:
    """alpha [T] (float64) with d = J^T alpha for Gram [T, T] and weights p [T]."""
    G = gram.to(torch.float64)
    p = task_weights.to(device=G.device, dtype=torch.float64)
    norms = G.diagonal().clamp(min=0.0).sqrt()
    inv_norms = torch.where(norms > 0, 1.0 / torch.where(norms > 0, norms, 1.0), 0.0)
    cosine = inv_norms[:, None] * G * inv_norms[None, :]
    c = inv_norms * (rank_safe_pinv(cosine, eps) @ p)
    sq_norm = c @ G @ c  # |g_u|^2
    if not bool(sq_norm > 0):
        return torch.zeros_like(p)
    return (G.sum(dim=0) @ c / sq_norm) * c


class ConFIG(WeightingAggregator):
    """``config-grad``. Options: ``task_weights`` (the preference vector inside pinv)."""

    name = "config-grad"

    def __init__(self, task_weights: Sequence[float] | Tensor | None = None) -> None:
        super().__init__(task_weights)

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        return config_weights(gram, task_weights, torch.finfo(gram.dtype).eps)
