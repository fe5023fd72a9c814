"""FairGrad (Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024): the
alpha-fair allocation of the update among the tasks.

The weights w > 0 solve  (G w)_i = (p_i / w_i)^(1/alpha)  (Eq. 4 with pre-defined weights p,
default 1, which is the paper's and torchjd's ``FairGrad(alpha)``; the utility of task i is
u_i = g_i^T d and the allocation maximises sum_i p_i u_i^(1-alpha) / (1-alpha)). ``alpha = 0``
is linear scalarisation (w = p), ``alpha = 1`` proportional fairness (the Nash-MTL fixed point
on the raw Gram), alpha -> inf max-min fairness.

For alpha > 0 this is the stationarity condition of the strictly convex
    F(w) = 1/2 w^T G w - sum_i c_i h(w_i),  c_i = p_i^(1/alpha),  h'(w) = w^(-1/alpha),
so it is solved by damped Newton steps (Hessian G + diag(c / alpha w^(-1/alpha-1)), backtracking
that keeps w > 0) instead of the reference's ``scipy.optimize.least_squares``. For numerics G is
divided by s = mean(diag G) and the result rescaled by s^(-alpha/(1+alpha)) (exact: the
equations are homogeneous). Tasks with p_i = 0 get w_i = 0.

Convergence: |w (G w - c w^(-1/alpha))|_inf <= tol |c w^(1-1/alpha)|_inf (scale-free) and every
task's own equation holds to a relative residual |(G w)_i - c_i w_i^(-1/alpha)| <=
RELATIVE_RESIDUAL * c_i w_i^(-1/alpha). The second (relative) guard is what tells a solution
from a run-away: with a zero task gradient or exactly opposite gradients F has no minimiser,
Newton sends some w_i towards infinity, and that task's (or the pair's) equation stays off by a
relative O(1) however large w grows. There is no cap on w itself: a task whose gradient is 1e-6
of the others' has a genuine solution with w_i ~ 1e8 or more (its share of the update), which a
fixed cap would reject.

Failure handling (never silent, never stale weights): if Newton does not converge it is
repeated on G + ridge I (normalised G; ``stats["ridge_fallbacks"]``), and if that fails too
w = p (linear scalarisation, ``stats["uniform_fallbacks"]``); ``stats["solver_failures"]``
counts both, and a ``RuntimeWarning`` is issued.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .base import WeightingAggregator

#: largest relative residual of any task's equation (G w)_i = c_i w_i^(-1/alpha) accepted as a
#: solution (a problem without a solution leaves one at O(1))
RELATIVE_RESIDUAL = 1e-6


def fair_newton(
    G: np.ndarray, c: np.ndarray, alpha: float, tol: float = 1e-9, max_iter: int = 100
) -> tuple[np.ndarray, bool]:
    """Solve G w = c w^(-1/alpha), w > 0 (alpha > 0, c > 0) by damped Newton on F."""
    k = 1.0 / alpha

    def h(w: np.ndarray) -> np.ndarray:
        return np.log(w) if alpha == 1.0 else w ** (1.0 - k) / (1.0 - k)

    def objective(w: np.ndarray) -> float:
        return 0.5 * w @ G @ w - c @ h(w)

    w = np.ones_like(c)
    for _ in range(max_iter):
        pull = c * w**-k
        grad = G @ w - pull
        if converged(w, grad, pull, tol):
            return w, True
        hess = G + np.diag(k * pull / w)
        try:
            step = -np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return w, False
        t = 1.0
        neg = step < 0
        if np.any(neg):
            t = min(1.0, 0.99 * float(np.min(-w[neg] / step[neg])))
        f0, slope, g0 = objective(w), float(grad @ step), float(np.abs(grad).max())
        while t > 1e-14:
            new = w + t * step
            # Armijo on F; near the solution F's decrease drowns in rounding, so a step that
            # shrinks the residual is accepted too
            if objective(new) <= f0 + 1e-4 * t * slope:
                break
            if np.abs(G @ new - c * new**-k).max() < g0:
                break
            t *= 0.5
        if t <= 1e-14 or not np.all(np.isfinite(w + t * step)):
            return w, False
        w = w + t * step
    pull = c * w**-k
    return w, converged(w, G @ w - pull, pull, tol)


def converged(w: np.ndarray, residual: np.ndarray, pull: np.ndarray, tol: float) -> bool:
    """|w * residual|_inf <= tol |w * pull|_inf (scale-free), and every equation's relative
    residual |residual_i| / pull_i <= RELATIVE_RESIDUAL (module docstring: no solution, e.g. a
    zero task gradient sending its w_i to infinity, keeps one at O(1))."""
    if not np.all(np.isfinite(w)) or not np.all(pull > 0):
        return False
    scale_free = np.max(np.abs(w * residual)) <= tol * np.max(w * pull)
    return bool(scale_free and np.max(np.abs(residual) / pull) <= RELATIVE_RESIDUAL)


class FairGrad(WeightingAggregator):
    """``fairgrad``. Options: ``task_weights``, ``alpha`` (fairness, default 2.0 as the
    authors' MT10 runs; >= 0), ``max_iter`` (Newton steps, 100), ``tol`` (1e-9),
    ``ridge`` (fallback regulariser on the normalised Gram, 1e-3)."""

    name = "fairgrad"

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        alpha: float = 2.0,
        max_iter: int = 100,
        tol: float = 1e-9,
        ridge: float = 1e-3,
    ) -> None:
        super().__init__(task_weights)
        if not alpha >= 0 or not np.isfinite(alpha):
            raise ValueError(f"fairgrad: alpha must be a finite number >= 0, got {alpha}")
        if max_iter < 1 or tol <= 0 or ridge <= 0:
            raise ValueError(
                f"fairgrad: need max_iter >= 1, tol > 0, ridge > 0, got {max_iter}, {tol}, {ridge}"
            )
        self.alpha, self.max_iter, self.tol, self.ridge = float(alpha), int(max_iter), tol, ridge
        self.stats = {"solver_failures": 0.0, "ridge_fallbacks": 0.0, "uniform_fallbacks": 0.0}

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        G = gram.detach().to("cpu", torch.float64).numpy()
        p = task_weights.detach().to("cpu", torch.float64).numpy()
        return torch.from_numpy(self._solve(G, p)).to(gram.device)

    def _solve(self, G: np.ndarray, p: np.ndarray) -> np.ndarray:
        scale = float(np.mean(np.diag(G)))
        active = p > 0
        if self.alpha == 0 or not scale > 0 or not np.any(active):
            return p.copy()  # linear scalarisation; or J = 0, where d = 0 for any w
        Ga = G[np.ix_(active, active)] / scale
        c = p[active] ** (1.0 / self.alpha)
        sol, ok = fair_newton(Ga, c, self.alpha, self.tol, self.max_iter)
        if not ok:
            self.stats["solver_failures"] += 1
            sol, ok = fair_newton(
                Ga + self.ridge * np.eye(len(c)), c, self.alpha, self.tol, self.max_iter
            )
            if ok:
                self.stats["ridge_fallbacks"] += 1
                how = f"used the ridge-regularised solution (ridge={self.ridge})"
            else:
                self.stats["uniform_fallbacks"] += 1
                how = "used the pre-defined task weights (linear scalarisation)"
            warnings.warn(
                f"fairgrad: Newton solver did not converge (singular or degenerate Gram "
                f"matrix); {how}. Failures so far: {int(self.stats['solver_failures'])}",
                RuntimeWarning,
                stacklevel=4,
            )
            if not ok:
                return p.copy()
        w = np.zeros_like(p)
        w[active] = sol * scale ** (-self.alpha / (1.0 + self.alpha))
        return w
