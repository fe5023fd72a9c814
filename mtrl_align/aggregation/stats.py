"""Stability metrics of a per-task gradient matrix J [T, n] (Aligned-MTL paper, Sec. 4, supp.)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import gram_matrix


def gradient_stats(J: Tensor) -> dict[str, float]:
    """Stability metrics of J [T, n], all computed from the Gram matrix G = J J^T in float64.

    Returns (Python floats):
        ``kappa``: condition number sigma_max / sigma_min of J (its T singular values);
            ``inf`` when J is rank-deficient (sigma_min <= sigma_max * T * eps of J's dtype),
            ``nan`` when J is all zero.
        ``gms``: gradient magnitude similarity 2 |g_i| |g_j| / (|g_i|^2 + |g_j|^2) of the least
            similar task pair (1 = equal norms; 1.0 for T = 1).
        ``min_cos``: smallest pairwise cosine between task gradients (a zero gradient has cosine
            0 with everything; 1.0 for T = 1).
        ``max_norm_ratio``: max_i |g_i| / min_j |g_j| (``inf`` if some gradient is zero and
            another is not, ``nan`` if all are zero).
    """
    if J.dim() != 2 or J.shape[0] == 0:
        raise ValueError(f"J must have shape [T, n] with T >= 1, got {tuple(J.shape)}")
    if not J.is_floating_point():
        J = J.to(torch.float64)
    return gradient_stats_from_gram(gram_matrix(J.detach()), torch.finfo(J.dtype).eps)


def gradient_stats_from_gram(gram: Tensor, eps: float | None = None) -> dict[str, float]:
    """:func:`gradient_stats` from a Gram matrix G = J J^T [T, T] (e.g. ``agg.last_gram``, so
    the O(T^2 n) product is not recomputed). ``eps``: machine epsilon of J's dtype (default:
    that of ``gram``), used for the rank decision of ``kappa``."""
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(f"gram must have shape [T, T] with T >= 1, got {tuple(gram.shape)}")
    if eps is None:
        eps = torch.finfo(gram.dtype).eps
    gram = gram.detach().to(torch.float64)
    if not bool(torch.isfinite(gram).all()):
        raise ValueError("J contains NaN or inf; gradient_stats needs finite gradients")
    num_tasks = gram.shape[0]
    lam = torch.linalg.eigvalsh(gram).clamp(min=0.0)
    top = float(lam.max())
    if top <= 0.0:
        kappa = math.nan
    elif float(lam.min()) <= top * num_tasks * eps:
        kappa = math.inf
    else:
        kappa = math.sqrt(top / float(lam.min()))

    norms = gram.diagonal().clamp(min=0.0).sqrt()
    if num_tasks == 1:
        gms = min_cos = 1.0
    else:
        i, j = torch.triu_indices(num_tasks, num_tasks, offset=1)
        prod = norms[i] * norms[j]
        sq = norms[i] ** 2 + norms[j] ** 2
        gms_pairs = torch.where(sq > 0, 2 * prod / sq.clamp(min=1e-300), torch.ones_like(sq))
        gms = float(gms_pairs.min())
        min_cos = float(cosine_matrix_from_gram(gram)[i, j].min())
    big, small = float(norms.max()), float(norms.min())
    if big == 0.0:
        ratio = math.nan
    elif small == 0.0:
        ratio = math.inf
    else:
        ratio = big / small
    return {"kappa": kappa, "gms": gms, "min_cos": min_cos, "max_norm_ratio": ratio}


def cosine_matrix_from_gram(gram: Tensor) -> Tensor:
    """Pairwise cosines [T, T] (float64) of the task gradients behind a Gram matrix G = J J^T:
    cos_ij = G_ij / (|g_i| |g_j|), clamped to [-1, 1]; a zero gradient has cosine 0 with every
    gradient, itself included (the diagonal is 1 elsewhere). The interference matrix of the
    training logs (negative entries: conflicting tasks)."""
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(f"gram must have shape [T, T] with T >= 1, got {tuple(gram.shape)}")
    gram = gram.detach().to(torch.float64)
    norms = gram.diagonal().clamp(min=0.0).sqrt()
    prod = norms.unsqueeze(1) * norms.unsqueeze(0)
    cosine = torch.where(prod > 0, gram / prod.clamp(min=1e-300), torch.zeros_like(prod))
    return cosine.clamp(-1.0, 1.0)


def mean_pairwise_cosine(cosine: Tensor) -> float:
    """Mean of the T (T - 1) / 2 off-diagonal cosines of a [T, T] cosine matrix (1.0 for T = 1)."""
    num_tasks = cosine.shape[0]
    if num_tasks == 1:
        return 1.0
    i, j = torch.triu_indices(num_tasks, num_tasks, offset=1)
    return float(cosine[i, j].mean())
