"""Nash-MTL (Navon et al., ICML 2022): the Nash bargaining solution of the tasks.

The weights alpha > 0 solve  G alpha = p / alpha  (element-wise; p = pre-defined task weights,
default 1, which gives the paper's symmetric solution, p != 1 the asymmetric bargaining
solution). This is exactly the stationarity condition of the strictly convex function
    F(alpha) = 1/2 alpha^T G alpha - sum_i p_i log alpha_i,
so we minimise F with damped Newton steps (Hessian G + diag(p / alpha^2), backtracking that
keeps alpha > 0) instead of the reference's sequence of cvxpy problems -- same fixed point up
to the scale below, no external solver. G is normalised by its Frobenius norm first and the
resulting alpha is used as is, so |d| = sqrt(sum(p) |G|_F). The reference (and torchjd's
NashMTL) carries the normalisation factor into its constraint, so its alpha solves the equation
on the raw G: ours divided by sqrt(|G|_F), |d| = sqrt(sum(p)) at any gradient scale
(tests/test_aggregation_oracle.py checks this against torchjd).

Failure handling (never silent, never a stale alpha): if Newton does not reach
max_i |alpha_i (G alpha)_i - p_i| <= tol * max(p) within ``max_iter`` steps (F has no minimiser
when, e.g., a task gradient is zero or two gradients are exactly opposite), the solve is
repeated with a ridge ``G + ridge I`` (always solvable; the ridge only matters along
directions where G is singular) and ``stats["solver_failures"]`` and ``stats["ridge_fallbacks"]``
grow and a ``RuntimeWarning`` is issued; if that fails too, alpha = p (linear
scalarisation) and ``stats["uniform_fallbacks"]`` grows.

``update_every=k`` recomputes alpha every k-th call and reuses the last successfully computed
alpha in between (the reference's speed option; ``stats["reused"]`` counts those calls).
Tasks with p_i = 0 get alpha_i = 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import WeightingAggregator


def nash_newton(
    G: np.ndarray,
    p: np.ndarray,
    tol: float = 1e-7,
    max_iter: int = 50,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, bool, int]:
    """Solve alpha * (G alpha) = p, alpha > 0 by damped Newton on F; (alpha, converged, iters)."""
    num_tasks = G.shape[0]

    def objective(a: np.ndarray) -> float:
        return 0.5 * a @ G @ a - p @ np.log(a)

    if (
        init is not None
        and init.shape == (num_tasks,)
        and np.all(init > 0)
        and np.all(np.isfinite(init))
    ):
        alpha = init.copy()
    else:
        quad = p @ G @ p
        alpha = p * np.sqrt(p.sum() / quad) if quad > 0 else np.ones(num_tasks)
    target = tol * float(p.max())
    for it in range(1, max_iter + 1):
        Ga = G @ alpha
        grad = Ga - p / alpha
        if np.max(np.abs(alpha * Ga - p)) <= target:
            return alpha, True, it - 1
        hess = G + np.diag(p / alpha**2)
        try:
            step = -np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return alpha, False, it
        t = 1.0
        neg = step < 0
        if np.any(neg):
            t = min(1.0, 0.99 * float(np.min(-alpha[neg] / step[neg])))
        f0, slope = objective(alpha), float(grad @ step)
        while t > 1e-12 and objective(alpha + t * step) > f0 + 1e-4 * t * slope:
            t *= 0.5
        if t <= 1e-12:
            return alpha, False, it
        alpha = alpha + t * step
        if not np.all(np.isfinite(alpha)):
            return alpha, False, it
    Ga = G @ alpha
    return alpha, bool(np.max(np.abs(alpha * Ga - p)) <= target), max_iter


class NashMTL(WeightingAggregator):
    """``nash-mtl``. Options: ``task_weights``, ``update_every`` (k, default 1), ``max_iter``
    (Newton steps, default 20), ``tol``, ``ridge`` (fallback regulariser, default 1e-3),
    ``max_norm`` (if > 0, scale alpha so |d| <= max_norm, as the reference's default 1.0;
    default 0 = off, clip in the trainer instead)."""

    name = "nash-mtl"

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        update_every: int = 1,
        max_iter: int = 20,
        tol: float = 1e-7,
        ridge: float = 1e-3,
        max_norm: float = 0.0,
    ) -> None:
        super().__init__(task_weights)
        if update_every < 1:
            raise ValueError(f"update_every must be >= 1, got {update_every}")
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        if ridge <= 0 or max_norm < 0:
            raise ValueError(f"ridge must be > 0 and max_norm >= 0, got {ridge}, {max_norm}")
        self.update_every, self.max_iter, self.tol = int(update_every), int(max_iter), float(tol)
        self.ridge, self.max_norm = float(ridge), float(max_norm)
        self.step = 0
        self._alpha: np.ndarray | None = None  # last successfully computed alpha (warm start)
        self.stats = {
            "solver_failures": 0.0,
            "ridge_fallbacks": 0.0,
            "uniform_fallbacks": 0.0,
            "reused": 0.0,
            "newton_iterations": 0.0,
        }

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        num_tasks = gram.shape[0]
        reuse = (
            self.step % self.update_every != 0
            and self._alpha is not None
            and self._alpha.shape == (num_tasks,)
        )
        self.step += 1
        if reuse:
            self.stats["reused"] += 1
            alpha = self._alpha
        else:
            alpha = self._solve(
                gram.detach().to("cpu", torch.float64).numpy(),
                task_weights.detach().to("cpu", torch.float64).numpy(),
            )
        alpha_t = torch.from_numpy(alpha.copy()).to(gram.device)
        if self.max_norm > 0:
            norm = float(alpha_t @ gram.to(torch.float64) @ alpha_t) ** 0.5
            if norm > self.max_norm:
                alpha_t = alpha_t * (self.max_norm / norm)
        return alpha_t

    def _solve(self, G: np.ndarray, p: np.ndarray) -> np.ndarray:
        scale = float(np.linalg.norm(G))
        if scale <= 0 or not np.isfinite(scale) or not np.any(p > 0):
            return p.copy()  # all task gradients zero: d = 0 whatever alpha is
        G = G / scale
        active = p > 0
        Ga, pa = G[np.ix_(active, active)], p[active]
        init = None if self._alpha is None or self._alpha.shape != p.shape else self._alpha[active]
        sol, ok, iters = nash_newton(Ga, pa, self.tol, self.max_iter, init)
        if not ok:
            self.stats["solver_failures"] += 1
            sol, ok, iters = nash_newton(
                Ga + self.ridge * np.eye(len(pa)), pa, self.tol, max(self.max_iter, 100)
            )
            if ok:
                self.stats["ridge_fallbacks"] += 1
                how = f"used the ridge-regularised solution (ridge={self.ridge})"
            else:
                self.stats["uniform_fallbacks"] += 1
                sol = pa.copy()
                how = "used the pre-defined task weights (linear scalarisation)"
            warnings.warn(
                f"nash-mtl: Newton solver did not converge (singular or degenerate Gram matrix); "
                f"{how}. Failures so far: {int(self.stats['solver_failures'])}",
                RuntimeWarning,
                stacklevel=4,
            )
        self.stats["newton_iterations"] = float(iters)
        alpha = np.zeros_like(p)
        alpha[active] = sol
        self._alpha = alpha
        return alpha

    def _extra_state(self) -> dict[str, Any]:
        return {"step": self.step, "alpha": None if self._alpha is None else self._alpha.copy()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.step = int(extra["step"])
        self._alpha = (
            None if extra["alpha"] is None else np.asarray(extra["alpha"], dtype=np.float64)
        )
