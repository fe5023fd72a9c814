"""The synthetic two-task benchmark of CAGrad, Nash-MTL and Aligned-MTL (theta in R^2).

Formula (the version those papers' code actually optimizes)
-----------------------------------------------------------
For theta = (x, y) in R^2 and the clamp constant ``LOWER = 5e-6``::

    c1(theta) = max(tanh(y / 2), 0)            # active in the upper half-plane (y > 0)
    c2(theta) = max(tanh(-y / 2), 0)           # active in the lower half-plane (y < 0)

    f1(theta) = log(max(|(-x - 7) / 2 - tanh(-y)|, LOWER)) + 6
    f2(theta) = log(max(|(-x + 3) / 2 + tanh(-y) + 2|, LOWER)) + 6

    g1(theta) = ((-x + 7)^2 + 0.1 * (-y - 8)^2) / 10 - 20
    g2(theta) = ((-x - 7)^2 + 0.1 * (-y - 8)^2) / 10 - 20

    L1(theta) = c1 * f1 + c2 * g1
    L2(theta) = c1 * f2 + c2 * g2

Appendix C of the Aligned-MTL paper (and its supplement) prints this objective with three
transcription slips, corrected here against the formula the cited works optimize:

* ``h2`` is printed as ``|(-x + 3)/2 - tanh(-y) + 2|`` (with the ``+ 2`` inside ``tanh`` in
  the main paper); the optimized term is ``|(-x + 3)/2 + tanh(-y) + 2|``.
* ``g1`` / ``g2`` are printed with ``(-theta - 7)^2`` / ``(-theta + 7)^2`` (no index, and the
  signs swapped); the optimized terms are ``(-x + 7)^2`` for task 1 and ``(-x - 7)^2`` for
  task 2, so that task 1's minimum lies at x = +7 and task 2's at x = -7 (on y ~ -8.36).

Task weights. The Aligned-MTL experiments (Fig. 6, weights 0.1 ... 0.9) use the cumulative
objective ``L0 = a * L1 + (1 - a) * L2``. Their public toy script realizes the weights by
scaling the two losses (``a * L1`` and ``(1 - a) * L2``) and summing the aligned gradients
with unit weights; passing ``w = (a, 1 - a)`` to Algorithm 1 is the other reading. Both have
the same target, the minimizer of ``L0``; :mod:`mtrl_align.synthetic.runner` supports both.

The Pareto set of this problem lies in the lower half-plane on a curve near y = -8.36 for
x in [-7, 7]; :mod:`mtrl_align.synthetic.reference` computes it and the weighted optima
numerically, independently of any gradient aggregator.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: lower clamp inside the logarithms of f1 and f2
LOWER = 5e-6

#: the five initial points of Nash-MTL / Aligned-MTL (Appendix C), [5, 2]
PAPER_STARTS: tuple[tuple[float, float], ...] = (
    (-8.5, 7.5),
    (0.0, 0.0),
    (9.0, 9.0),
    (-7.5, -0.5),
    (9.0, -1.0),
)

#: paper settings: Adam, learning rate 1e-3, 35k iterations
PAPER_STEPS = 35_000
PAPER_LR = 1e-3

#: the task weights a of Fig. 6 of the Aligned-MTL paper (task weights (a, 1 - a))
PAPER_WEIGHTS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)

NUM_TASKS = 2


def synthetic_losses(theta: Tensor) -> Tensor:
    """Both task losses of the benchmark.

    Args:
        theta: [..., 2] points (x, y); any float dtype/device; differentiable.

    Returns:
        [..., 2] losses (L1, L2) at each point.
    """
    if theta.shape[-1] != 2:
        raise ValueError(f"theta must have shape [..., 2], got {tuple(theta.shape)}")
    x, y = theta[..., 0], theta[..., 1]
    c1 = torch.clamp(torch.tanh(0.5 * y), min=0.0)
    c2 = torch.clamp(torch.tanh(-0.5 * y), min=0.0)
    f1 = torch.log(torch.clamp((0.5 * (-x - 7.0) - torch.tanh(-y)).abs(), min=LOWER)) + 6.0
    f2 = torch.log(torch.clamp((0.5 * (-x + 3.0) + torch.tanh(-y) + 2.0).abs(), min=LOWER)) + 6.0
    shared = 0.1 * (-y - 8.0) ** 2
    g1 = ((-x + 7.0) ** 2 + shared) / 10.0 - 20.0
    g2 = ((-x - 7.0) ** 2 + shared) / 10.0 - 20.0
    return torch.stack((c1 * f1 + c2 * g1, c1 * f2 + c2 * g2), dim=-1)


def synthetic_losses_numpy(theta: np.ndarray) -> np.ndarray:
    """The same objective in NumPy (float64), for grid searches and scipy refinement.

    Args:
        theta: [..., 2] points.

    Returns:
        [..., 2] losses (L1, L2).
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape[-1] != 2:
        raise ValueError(f"theta must have shape [..., 2], got {theta.shape}")
    x, y = theta[..., 0], theta[..., 1]
    c1 = np.maximum(np.tanh(0.5 * y), 0.0)
    c2 = np.maximum(np.tanh(-0.5 * y), 0.0)
    f1 = np.log(np.maximum(np.abs(0.5 * (-x - 7.0) - np.tanh(-y)), LOWER)) + 6.0
    f2 = np.log(np.maximum(np.abs(0.5 * (-x + 3.0) + np.tanh(-y) + 2.0), LOWER)) + 6.0
    shared = 0.1 * (-y - 8.0) ** 2
    g1 = ((-x + 7.0) ** 2 + shared) / 10.0 - 20.0
    g2 = ((-x - 7.0) ** 2 + shared) / 10.0 - 20.0
    return np.stack((c1 * f1 + c2 * g1, c1 * f2 + c2 * g2), axis=-1)


def synthetic_jacobian(theta: Tensor) -> tuple[Tensor, Tensor]:
    """Losses and Jacobians of a batch of independent points, in closed form.

    The derivatives follow autograd's conventions for the non-smooth pieces (``clamp`` passes
    the gradient where the input is >= the bound, ``abs`` has derivative ``sign``, 0 at 0), so
    the result equals ``torch.autograd`` on :func:`synthetic_losses` (a test checks this) at a
    fraction of the cost -- the inner loop of 35k-step runs.

    Args:
        theta: [B, 2] points (any float dtype/device; not modified).

    Returns:
        ``(losses [B, 2], jacobian [B, 2, 2])`` with ``jacobian[b, t] = dL_t/dtheta`` at
        ``theta[b]``.
    """
    if theta.dim() != 2 or theta.shape[-1] != 2:
        raise ValueError(f"theta must have shape [B, 2], got {tuple(theta.shape)}")
    theta = theta.detach()
    x, y = theta[:, 0], theta[:, 1]
    half = torch.tanh(0.5 * y)
    dhalf = 0.5 * (1.0 - half * half)
    c1 = torch.clamp(half, min=0.0)
    c2 = torch.clamp(-half, min=0.0)
    dc1 = torch.where(half >= 0, dhalf, torch.zeros_like(dhalf))
    dc2 = torch.where(-half >= 0, -dhalf, torch.zeros_like(dhalf))

    tanh_y = torch.tanh(y)
    dtanh_y = 1.0 - tanh_y * tanh_y
    # u1 = (-x - 7)/2 - tanh(-y), u2 = (-x + 3)/2 + tanh(-y) + 2
    u1 = 0.5 * (-x - 7.0) - torch.tanh(-y)
    u2 = 0.5 * (-x + 3.0) + torch.tanh(-y) + 2.0
    f_parts, df_dx, df_dy = [], [], []
    for u, du_dy in ((u1, dtanh_y), (u2, -dtanh_y)):
        magnitude = u.abs()
        clamped = torch.clamp(magnitude, min=LOWER)
        # d log(clamp(|u|)) / du, zero where the clamp is active
        slope = torch.where(magnitude >= LOWER, torch.sign(u) / clamped, torch.zeros_like(u))
        f_parts.append(torch.log(clamped) + 6.0)
        df_dx.append(-0.5 * slope)
        df_dy.append(slope * du_dy)

    shared = 0.1 * (-y - 8.0) ** 2
    g_parts = (((-x + 7.0) ** 2 + shared) / 10.0 - 20.0, ((-x - 7.0) ** 2 + shared) / 10.0 - 20.0)
    dg_dx = ((x - 7.0) / 5.0, (x + 7.0) / 5.0)
    dg_dy = 0.02 * (y + 8.0)

    losses, rows = [], []
    for task in range(NUM_TASKS):
        f, g = f_parts[task], g_parts[task]
        losses.append(c1 * f + c2 * g)
        grad_x = c1 * df_dx[task] + c2 * dg_dx[task]
        grad_y = dc1 * f + c1 * df_dy[task] + dc2 * g + c2 * dg_dy
        rows.append(torch.stack((grad_x, grad_y), dim=-1))
    return torch.stack(losses, dim=-1), torch.stack(rows, dim=1)


def synthetic_jacobian_autograd(theta: Tensor) -> tuple[Tensor, Tensor]:
    """The same as :func:`synthetic_jacobian` through ``torch.autograd`` (slower; reference).

    The B problems do not interact, so the gradient of the batch sum of each task's loss gives
    every problem's own gradient, one backward pass per task.
    """
    if theta.dim() != 2 or theta.shape[-1] != 2:
        raise ValueError(f"theta must have shape [B, 2], got {tuple(theta.shape)}")
    point = theta.detach().clone().requires_grad_(True)
    losses = synthetic_losses(point)
    rows = []
    for task in range(NUM_TASKS):
        (grad,) = torch.autograd.grad(losses[:, task].sum(), point, retain_graph=task == 0)
        rows.append(grad)
    return losses.detach(), torch.stack(rows, dim=1)


def parse_pair(text: str, what: str) -> tuple[float, float]:
    """Parse ``"X,Y"`` into two finite floats; ``what`` names the flag in the error."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"{what} must be two comma-separated numbers like '1.5,-2', got {text!r}")
    try:
        values = (float(parts[0]), float(parts[1]))
    except ValueError:
        raise ValueError(
            f"{what} must be two comma-separated numbers like '1.5,-2', got {text!r}"
        ) from None
    if not all(np.isfinite(values)):
        raise ValueError(f"{what} must be finite, got {text!r}")
    return values
