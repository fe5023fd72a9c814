"""Aligned-MTL (Senushkin et al., CVPR 2023, Algorithm 1) and its upper-bound variant.

With G = J J^T = V diag(lambda) V^T, the aligned task gradients are the rows of B J with
B = sqrt(lambda_R) V diag(lambda)^(-1/2) V^T (lambda_R: the smallest eigenvalue kept). They are
orthogonal and all of norm sqrt(lambda_R) (condition number 1). The direction is
d = (B J)^T w = J^T (B w) for the pre-defined task weights w.

Rank safety: eigenvalues at or below ``tol = max(lambda) * T * eps(dtype of J)`` are treated as
zero (their directions are dropped, as for a pseudo-inverse); lambda_R is the smallest eigenvalue
above ``tol``. An all-zero (or underflowing) Gram matrix gives B = I, i.e. d = J^T w.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import WeightingAggregator

SCALE_MODES = ("min", "median", "mean")


def aligned_mtl_weights(
    gram: Tensor, task_weights: Tensor, scale_mode: str = "min", eps: float | None = None
) -> Tensor:
    """alpha = B w [T] for Gram [T, T] (any float dtype; computed in float64).

    ``eps`` is the machine epsilon of the dtype J was computed in (default: that of ``gram``).
    ``scale_mode``: the common singular value of the aligned system -- "min" (the paper:
    smallest kept eigenvalue), "median" or "mean" of the kept eigenvalues.
    """
    if eps is None:
        eps = torch.finfo(gram.dtype).eps
    num_tasks = gram.shape[0]
    lam, V = torch.linalg.eigh(gram.to(torch.float64))
    top = lam.max()
    tol = top * num_tasks * eps
    keep = lam > tol
    if not bool(top > 0) or not bool(keep.any()):
        return task_weights.to(torch.float64)
    lam_kept, V_kept = lam[keep], V[:, keep]
    if scale_mode == "min":
        scale = lam_kept.min()
    elif scale_mode == "median":
        scale = lam_kept.median()
    elif scale_mode == "mean":
        scale = lam_kept.mean()
    else:
        raise ValueError(
            f"unknown scale_mode {scale_mode!r}; choose from: {', '.join(SCALE_MODES)}"
        )
    B = (V_kept * (scale / lam_kept).sqrt()) @ V_kept.T
    return B @ task_weights.to(torch.float64)


class AlignedMTL(WeightingAggregator):
    """``aligned-mtl``: Algorithm 1 on the Jacobian of the shared parameters.

    Options: ``task_weights`` (pre-defined w, default 1 per task), ``scale_mode`` ("min" as in
    the paper, "median", "mean").
    """

    name = "aligned-mtl"

    def __init__(
        self, task_weights: Sequence[float] | Tensor | None = None, scale_mode: str = "min"
    ) -> None:
        super().__init__(task_weights)
        if scale_mode not in SCALE_MODES:
            raise ValueError(
                f"unknown scale_mode {scale_mode!r}; choose from: {', '.join(SCALE_MODES)}"
            )
        self.scale_mode = scale_mode

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        return aligned_mtl_weights(gram, task_weights, self.scale_mode)


class AlignedMTLUB(AlignedMTL):
    """``aligned-mtl-ub``: the same alignment on gradients w.r.t. a shared representation.

    The caller passes Z [T, m] (gradients of each task loss w.r.t. the shared features, e.g. the
    encoder output flattened over the batch), then back-propagates
    ``(agg.last_weights * losses).sum()`` through the encoder once; the returned direction [m]
    is that representation-space gradient.
    """

    name = "aligned-mtl-ub"
    uses_representation = True
