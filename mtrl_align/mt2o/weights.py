"""Weight vectors on the simplex, their neighbourhoods, and the transfer matrix of MT2O.

* :func:`simplex_weights` -- N weight vectors [N, T] spread uniformly on the probability
  simplex (Das-Dennis lattice: all vectors with entries k/H summing to 1). For T = 2 any
  N >= 2 works (evenly spaced a in [0, 1]); for T >= 3 N must be a lattice size
  C(H + T - 1, T - 1).
* :func:`neighbours` -- indices [N, K] of the K nearest other weight vectors (Euclidean).
* :func:`transfer_matrix` -- the row-stochastic S [N, N] = (1 - gamma) I + gamma P, where P
  averages each subproblem's K neighbours: one MT2O step sets theta_i <- sum_j S_ij theta_j.
* :func:`transfer_weight` -- gamma_t for the decay schedules (to zero).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

DECAYS = ("linear", "exponential")


def lattice_size(divisions: int, num_tasks: int) -> int:
    """Number of Das-Dennis vectors with ``divisions`` steps in ``num_tasks`` dimensions."""
    return math.comb(divisions + num_tasks - 1, num_tasks - 1)


def simplex_weights(num_vectors: int, num_tasks: int) -> Tensor:
    """[N, T] float64 weight vectors, entries >= 0, rows summing to 1, ordered lexicographically.

    Raises ``ValueError`` for N < 2, T < 2, or (T >= 3) an N that is no lattice size.
    """
    if num_tasks < 2:
        raise ValueError(f"need at least 2 tasks, got {num_tasks}")
    if num_vectors < 2:
        raise ValueError(f"need at least 2 subproblems, got {num_vectors}")
    if num_tasks == 2:
        a = torch.linspace(0.0, 1.0, num_vectors, dtype=torch.float64)
        return torch.stack((a, 1.0 - a), dim=-1)
    divisions = 1
    while lattice_size(divisions, num_tasks) < num_vectors:
        divisions += 1
    if lattice_size(divisions, num_tasks) != num_vectors:
        valid = [lattice_size(h, num_tasks) for h in range(1, divisions + 2)]
        raise ValueError(
            f"{num_vectors} subproblems cannot be spread evenly on the simplex of {num_tasks} "
            f"tasks; valid counts: {', '.join(map(str, valid))}"
        )
    rows = [
        [k / divisions for k in combo]
        for combo in itertools.product(range(divisions + 1), repeat=num_tasks)
        if sum(combo) == divisions
    ]
    return torch.tensor(sorted(rows, reverse=True), dtype=torch.float64)


def neighbours(weights: Tensor, count: int) -> Tensor:
    """[N, K] indices of the K nearest other weight vectors (ties broken by index)."""
    num = weights.shape[0]
    if not 1 <= count <= num - 1:
        raise ValueError(f"neighbours must be between 1 and N - 1 = {num - 1}, got {count}")
    dist = torch.cdist(weights.double(), weights.double())
    dist.fill_diagonal_(float("inf"))
    # stable sort: equal distances keep index order
    order = torch.sort(dist + torch.arange(num, dtype=dist.dtype) * 1e-12, dim=1).indices
    return order[:, :count]


def transfer_matrix(neighbour_index: Tensor, gamma: float) -> Tensor:
    """Row-stochastic S [N, N] (float64): 1 - gamma on the diagonal, gamma / K per neighbour."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"transfer weight must lie in [0, 1], got {gamma}")
    num, count = neighbour_index.shape
    matrix = torch.zeros(num, num, dtype=torch.float64)
    matrix.scatter_(1, neighbour_index, gamma / count)
    matrix += torch.eye(num, dtype=torch.float64) * (1.0 - gamma)
    return matrix


def transfer_weight(step: int, initial: float, decay: str, horizon: int) -> float:
    """gamma_t: ``linear`` -- initial * max(0, 1 - t / horizon) (zero from t = horizon on);
    ``exponential`` -- initial * 0.5 ** (t / horizon) (``horizon`` is the half-life)."""
    if decay not in DECAYS:
        raise ValueError(f"unknown transfer decay {decay!r}; choose from: {', '.join(DECAYS)}")
    if horizon <= 0:
        raise ValueError(f"transfer horizon must be > 0, got {horizon}")
    if decay == "linear":
        return initial * max(0.0, 1.0 - step / horizon)
    return initial * 0.5 ** (step / horizon)
