"""CAGrad (Liu et al., 2021): conflict-averse gradient descent.

With g_0 = J^T w (w: pre-defined task weights) and c >= 0, find x on the simplex minimising
    F(x) = g_x^T g_0 + c |g_0| |g_x|,   g_x = J^T x,
then d = g_0 + (c |g_0| / |g_x|) g_x, divided by (1 + c^2) when ``rescale`` is True (the
reference default). F only needs the Gram matrix: g_x^T g_0 = x^T G w, |g_x|^2 = x^T G x.

Solver (float64 NumPy on the CPU; one [T, T] host copy per call): a 1-D root search over the
norm |g_x| with an exact minimum-norm-point solve inside (see :func:`cagrad_simplex_point`),
certified by the Frank-Wolfe duality gap. If the certificate fails, the point is still used
(it is feasible), ``stats["solver_failures"]`` counts it and a warning is issued.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import brentq
from torch import Tensor

from .base import WeightingAggregator
from .mgda import min_norm_exact


def cagrad_simplex_point(G: np.ndarray, w: np.ndarray, c: float) -> tuple[np.ndarray, bool]:
    """Minimiser x [T] of F(x) = x^T G w + c |g_0| sqrt(x^T G x) on the simplex; (x, certified).

    Using k |v| = min_{s > 0} k/2 (|v|^2 / s + s), F is the partial minimum of a jointly convex
    function of (x, s). For fixed s the x-problem is the minimum-norm point of the shifted
    gradients g_i + (s / k) g_0 (solved exactly by Wolfe's algorithm); at the optimum
    s = |g_x|. So we find the root of phi(s) = |g_x(s)| - s with Brent's method. The result is
    certified by the Frank-Wolfe duality gap x^T grad F - min_i grad F_i (an upper bound on
    F(x) - min F), required to be <= 1e-8 |g_0|^2.
    """
    num_tasks = G.shape[0]
    g0_sq = max(float(w @ G @ w), 0.0)
    k = c * np.sqrt(g0_sq)
    Gw = G @ w
    ones = np.ones(num_tasks)

    def point(s: float) -> np.ndarray:
        r = s / k
        shifted = G + r * (np.outer(Gw, ones) + np.outer(ones, Gw)) + r * r * g0_sq
        return min_norm_exact(0.5 * (shifted + shifted.T))

    def phi(s: float) -> float:
        x = point(s)
        return float(np.sqrt(max(x @ G @ x, 0.0))) - s

    s_hi = float(np.sqrt(np.max(np.diag(G)))) * (1 + 1e-9) + 1e-300
    s_lo = 1e-12 * s_hi
    if phi(s_lo) <= 0:
        x = point(s_lo)
    else:
        s_star = brentq(phi, s_lo, s_hi, xtol=1e-14 * s_hi, rtol=1e-13, maxiter=200)
        x = point(s_star)
    Gx = G @ x
    norm = np.sqrt(max(x @ Gx, 0.0))
    grad = Gw + (k * Gx / norm if norm > 0 else 0.0)
    gap = float(x @ grad - grad.min())
    return x, bool(np.all(np.isfinite(x)) and gap <= 1e-8 * max(g0_sq, 1e-300))


class CAGrad(WeightingAggregator):
    """``cagrad``. Options: ``task_weights``, ``c`` (0.4 vision, 0.9 MT10; default 0.4),
    ``rescale`` (divide by 1 + c^2, default True)."""

    name = "cagrad"

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        c: float = 0.4,
        rescale: bool = True,
    ) -> None:
        super().__init__(task_weights)
        if c < 0:
            raise ValueError(f"c must be >= 0, got {c}")
        self.c = float(c)
        self.rescale = bool(rescale)
        self.stats = {"solver_failures": 0.0}

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        G = gram.detach().to("cpu", torch.float64).numpy()
        w = task_weights.detach().to("cpu", torch.float64).numpy()
        g0_norm = float(np.sqrt(max(w @ G @ w, 0.0)))
        alpha = w.copy()
        if self.c > 0 and g0_norm > 0:
            x, ok = cagrad_simplex_point(G, w, self.c)
            if not ok:
                self.stats["solver_failures"] = self.stats.get("solver_failures", 0.0) + 1
                warnings.warn(
                    "cagrad: solution not certified optimal (duality gap too large), used anyway "
                    f"(failures so far: {int(self.stats['solver_failures'])})",
                    RuntimeWarning,
                    stacklevel=3,
                )
            gx_norm = float(np.sqrt(max(x @ G @ x, 0.0)))
            if gx_norm > 1e-12 * g0_norm:
                alpha = alpha + (self.c * g0_norm / gx_norm) * x
        if self.rescale:
            alpha = alpha / (1.0 + self.c**2)
        return torch.from_numpy(alpha).to(gram.device)
