"""MGDA (Désidéri 2012; Sener & Koltun 2018): the minimum-norm point of the convex hull of the
task gradients, d = J^T alpha with alpha = argmin_{alpha in simplex} alpha^T G alpha.

Solvers on the Gram matrix (float64, NumPy on the CPU; one [T, T] host copy per call):
* ``"exact"`` (default): Wolfe's minimum-norm-point algorithm -- finite, exact up to rounding,
  cheap for the T of multi-task learning (tens of tasks).
* ``"frank-wolfe"``: the Frank-Wolfe iteration with exact line search of Sener & Koltun
  (``max_iter``, stops when the step falls below ``tol``).
If d is non-zero it does not conflict with any task: g_i^T d >= |d|^2 > 0 for all i (KKT).
MGDA has no notion of pre-defined task weights; passing them raises ``ValueError``.
``mgda-ub`` is the same on gradients w.r.t. a shared representation (see aligned-mtl-ub).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import WeightingAggregator

SOLVERS = ("exact", "frank-wolfe")


def min_norm_exact(G: np.ndarray, tol: float = 1e-12, max_iter: int = 1000) -> np.ndarray:
    """Wolfe's algorithm: alpha [T] on the simplex minimising alpha^T G alpha."""
    num_tasks = G.shape[0]
    scale = float(np.max(np.diag(G)))
    if num_tasks == 1 or scale <= 0:
        return np.full(num_tasks, 1.0 / num_tasks)
    G = G / scale
    start = int(np.argmin(np.diag(G)))
    active = [start]
    lam = np.zeros(num_tasks)
    lam[start] = 1.0
    for _ in range(max_iter):
        Gx = G @ lam
        j = int(np.argmin(Gx))
        if lam @ Gx - Gx[j] <= tol or j in active:
            break
        active.append(j)
        for _ in range(num_tasks + 1):  # minor cycles: at most one removal per cycle
            k = len(active)
            kkt = np.zeros((k + 1, k + 1))
            idx = np.asarray(active)
            kkt[:k, :k] = G[idx[:, None], idx[None, :]]
            kkt[:k, k] = kkt[k, :k] = 1.0
            rhs = np.zeros(k + 1)
            rhs[k] = 1.0
            try:
                mu = np.linalg.solve(kkt, rhs)[:k]
            except np.linalg.LinAlgError:  # affinely dependent active points (rounding)
                mu = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:k]
            if not np.all(np.isfinite(mu)):
                mu = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:k]
            current = lam[active]
            if np.all(mu > tol):
                lam[:] = 0.0
                lam[active] = mu
                break
            shrinking = mu <= tol
            theta = np.min(
                current[shrinking] / np.maximum(current[shrinking] - mu[shrinking], 1e-300)
            )
            theta = float(np.clip(theta, 0.0, 1.0))
            new = current + theta * (mu - current)
            lam[:] = 0.0
            keep = new > tol
            kept = [a for a, k_ in zip(active, keep, strict=True) if k_]
            if not kept:  # numerical corner case: keep the best single point
                kept = [active[int(np.argmax(new))]]
                new = np.ones(1)
                keep = np.ones(1, dtype=bool)
            lam[kept] = new[keep]
            lam /= lam.sum()
            active = kept
    lam = np.clip(lam, 0.0, None)
    return lam / lam.sum()


def min_norm_frank_wolfe(G: np.ndarray, max_iter: int = 250, tol: float = 1e-6) -> np.ndarray:
    """Frank-Wolfe with exact line search (Sener & Koltun, Alg. 2) on the simplex."""
    num_tasks = G.shape[0]
    lam = np.full(num_tasks, 1.0 / num_tasks)
    for _ in range(max_iter):
        Gx = G @ lam
        t = int(np.argmin(Gx))
        a, b, c = Gx[t], lam @ Gx, G[t, t]  # <x, g_t>, |x|^2, |g_t|^2
        if c <= a:
            gamma = 1.0
        elif b <= a:
            gamma = 0.0
        else:
            gamma = (b - a) / (b + c - 2 * a)
        lam = (1 - gamma) * lam
        lam[t] += gamma
        if gamma < tol:
            break
    return lam


class MGDA(WeightingAggregator):
    """``mgda``. Options: ``solver`` ("exact" | "frank-wolfe"), ``max_iter``, ``tol``."""

    name = "mgda"
    accepts_weights = False

    def __init__(self, solver: str = "exact", max_iter: int = 250, tol: float = 1e-6) -> None:
        super().__init__(None)
        if solver not in SOLVERS:
            raise ValueError(f"unknown MGDA solver {solver!r}; choose from: {', '.join(SOLVERS)}")
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        self.solver, self.max_iter, self.tol = solver, int(max_iter), float(tol)

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        G = gram.detach().to("cpu", torch.float64).numpy()
        if self.solver == "exact":
            alpha = min_norm_exact(G)
        else:
            alpha = min_norm_frank_wolfe(G, self.max_iter, self.tol)
        return torch.from_numpy(alpha).to(gram.device)


class MGDAUB(MGDA):
    """``mgda-ub``: MGDA on gradients w.r.t. the shared representation (Sener & Koltun's
    upper bound). The caller back-propagates ``(agg.last_weights * losses).sum()`` through
    the shared encoder."""

    name = "mgda-ub"
    uses_representation = True
