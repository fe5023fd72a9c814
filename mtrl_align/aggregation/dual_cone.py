"""Projection onto the dual cone of the task gradients, in weight space (UPGrad, DualProj).

For a weight vector u [T], the projection of J^T u onto {x : J x >= 0} is J^T v with
    v = argmin_{v >= u} v^T G v           (G = J J^T; Quinton & Rey 2024, Prop. 1).
With z = v - u >= 0 and a square root G = L L^T this is the non-negative least-squares problem
min_{z >= 0} |L^T z + L^T u|^2, solved exactly by the Lawson-Hanson active-set method
(``scipy.optimize.nnls``, float64, on G / trace(G): the solution v does not depend on the scale
of G). The KKT conditions (G v >= 0, z >= 0, z_i (G v)_i = 0) are checked afterwards; when they
fail (nnls hit its iteration limit, rounding on a near-singular G) the problem is re-solved by
projected gradient descent with Nesterov momentum from the nnls point (``"fallback"``), and the
caller counts it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

#: KKT tolerance, relative to the trace-normalised Gram matrix
KKT_TOL = 1e-7


def gram_root(G: np.ndarray) -> np.ndarray:
    """L [T, T] with L L^T = G (negative rounding eigenvalues of the PSD G set to zero)."""
    lam, V = np.linalg.eigh(0.5 * (G + G.T))
    return V * np.sqrt(np.clip(lam, 0.0, None))


def kkt_ok(G: np.ndarray, u: np.ndarray, v: np.ndarray, tol: float = KKT_TOL) -> bool:
    """True when v satisfies the KKT conditions of min v^T G v s.t. v >= u (G normalised)."""
    if not np.all(np.isfinite(v)):
        return False
    mu, z = G @ v, v - u
    scale = max(1.0, float(np.abs(v).max()))
    return bool(
        np.all(z >= -tol * scale)
        and np.all(mu >= -tol * scale)
        and np.all(np.abs(mu * z) <= tol * scale**2)
    )


def project_weights(
    G: np.ndarray, U: np.ndarray, root: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Rows of U [k, T] -> rows v [k, T] of the dual-cone projection weights; also the number
    of rows that needed the fallback solver. ``G`` must already be normalised (trace 1)."""
    L = gram_root(G) if root is None else root
    out = np.empty_like(U)
    fallbacks = 0
    for row, u in enumerate(U):
        if not np.any(u):
            out[row] = 0.0  # the projection of 0 is 0
            continue
        try:
            z, _ = nnls(L.T, -(L.T @ u), maxiter=50 * G.shape[0])
            v = u + z
        except RuntimeError:
            v = u.copy()
        if not kkt_ok(G, u, v):
            fallbacks += 1
            v = _projected_gradient(G, u, v)
        out[row] = v
    return out, fallbacks


def _projected_gradient(G: np.ndarray, u: np.ndarray, start: np.ndarray, iters: int = 5000):
    """min v^T G v s.t. v >= u by accelerated projected gradient (step 1 / lambda_max(G))."""
    lipschitz = max(float(np.linalg.eigvalsh(G).max()), 1e-300)
    v = np.maximum(np.nan_to_num(start, nan=0.0), u)
    y, previous, t = v.copy(), v.copy(), 1.0
    for _ in range(iters):
        v = np.maximum(y - (G @ y) / lipschitz, u)
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        y = v + ((t - 1.0) / t_next) * (v - previous)
        previous, t = v, t_next
    return v
