"""Categorical value targets: a scalar return as a distribution over a fixed support.

The support is K atoms z_k evenly spaced on [-V_max, V_max] (bin width zeta = 2 V_max / (K - 1)),
the layout of BRC's critic (naumix/BiggerRegularizedCategorical, ``jaxrl/agent/update.py``:
``linspace(-v_max, v_max, num_bins)``). A critic outputs K logits per sample; its value is the
expectation Q = sum_k softmax(logits)_k z_k, and it is trained by the cross-entropy between a
target distribution and softmax(logits). Two ways turn a scalar Bellman target y into a target
distribution (``agent.critic_loss``):

``two-hot``   y is clipped to [-V_max, V_max] and split between its two neighbouring atoms in
              proportion to its distance from each: p_k = 1 - |y - z_k| / zeta for the two atoms
              within zeta of y, 0 elsewhere. Its expectation is exactly the clipped y.
``hl-gauss``  histogram loss with a Gaussian (Imani & White 2018; Farebrother et al. 2024,
              "Stop Regressing"): the mass of N(y, sigma^2) in each bin [z_k - zeta/2,
              z_k + zeta/2], renormalised over the K bins, with y clipped to [-V_max, V_max]:
              p_k = (Phi((z_k + zeta/2 - y) / sigma) - Phi((z_k - zeta/2 - y) / sigma)) / Z.
              sigma = ``hl_gauss_sigma`` x zeta (0.75 by default: "Stop Regressing" found
              sigma / zeta = 0.75 best). Its expectation equals y to within 1e-5 zeta for
              |y| <= V_max - 6 sigma; nearer the ends the cut-off Gaussian pulls it inwards
              (by 0.37 zeta at y = +-V_max with the default sigma).

``c51``       BRC's target (``update_critic`` in ``jaxrl/agent/update.py``; Bellemare et al.
              2017): not a scalar but the whole next-state distribution of the target
              critics, each atom moved to r + gamma (1 - done) (z_k - alpha log pi(a'|s')),
              clipped to the support and split two-hot between its two neighbouring atoms
              (:meth:`CategoricalSupport.project`). BRC averages the twin target critics'
              probabilities (``agent.q_reduction=mean``); with ``min`` the distribution of the
              critic with the smaller expectation is taken, sample by sample.

With ``two-hot`` and ``hl-gauss`` the soft Bellman target stays the scalar of SAC and only its
representation is categorical.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

CATEGORICAL_LOSSES = ("two-hot", "hl-gauss", "c51")
"""Categorical ``agent.critic_loss`` values (the scalar one is ``mse``)."""
CRITIC_LOSSES = ("mse", *CATEGORICAL_LOSSES)
"""Every ``agent.critic_loss`` value."""


class CategoricalSupport:
    """K atoms on [-v_max, v_max] and the target transform of ``kind``.

    Args:
        num_bins: K >= 2.
        v_max: largest atom (> 0); the support is symmetric.
        kind: ``two-hot``, ``hl-gauss`` (targets from scalars, :meth:`target`) or ``c51``
            (targets from distributions, :meth:`project`).
        sigma_ratio: HL-Gauss standard deviation in units of the bin width (> 0).
    """

    def __init__(
        self, num_bins: int, v_max: float, kind: str = "two-hot", sigma_ratio: float = 0.75
    ) -> None:
        if kind not in CATEGORICAL_LOSSES:
            raise ValueError(
                f"unknown categorical target {kind!r}; choose from: {', '.join(CATEGORICAL_LOSSES)}"
            )
        if int(num_bins) < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins!r}")
        if not v_max > 0:
            raise ValueError(f"v_max must be > 0, got {v_max!r}")
        if not sigma_ratio > 0:
            raise ValueError(f"hl_gauss_sigma must be > 0, got {sigma_ratio!r}")
        self.num_bins = int(num_bins)
        self.v_max = float(v_max)
        self.kind = kind
        self.bin_width = 2.0 * self.v_max / (self.num_bins - 1)
        self.sigma = float(sigma_ratio) * self.bin_width

    def atoms(self, like: Tensor) -> Tensor:
        """The K atoms z_k [K] in the dtype and on the device of ``like``."""
        return torch.linspace(
            -self.v_max, self.v_max, self.num_bins, dtype=like.dtype, device=like.device
        )

    def expectation(self, logits: Tensor) -> Tensor:
        """Q = sum_k softmax(logits)_k z_k: logits [..., K] -> values [...]."""
        return F.softmax(logits, dim=-1) @ self.atoms(logits)

    def target(self, values: Tensor) -> Tensor:
        """Target distribution [..., K] of scalar targets ``values`` [...] (rows sum to 1)."""
        if self.kind == "c51":
            raise ValueError("c51 targets are projected distributions (project), not scalars")
        if self.kind == "two-hot":
            return two_hot(values, self.v_max, self.num_bins)
        return hl_gauss(values, self.v_max, self.num_bins, self.sigma)

    def project(self, shifted: Tensor, probs: Tensor) -> Tensor:
        """C51 projection: the distribution with mass ``probs[..., j]`` at ``shifted[..., j]``
        (both [..., K]; each point clipped to [-v_max, v_max]) split two-hot onto the atoms,
        [..., K]. Mass is kept, and so is the expectation of the clipped points."""
        lower, upper_share = two_hot_split(shifted, self.v_max, self.num_bins)
        index = lower.to(torch.int64)
        out = torch.zeros_like(probs)
        out.scatter_add_(-1, index, probs * (1.0 - upper_share))
        out.scatter_add_(-1, index + 1, probs * upper_share)
        return out


def two_hot_split(values: Tensor, v_max: float, num_bins: int) -> tuple[Tensor, Tensor]:
    """``(lower, upper_share)`` [...] of ``values`` [...] clipped to [-v_max, v_max]: the index
    of the atom at or below each value (as a float, at most K - 2) and the share of its mass
    that goes to the atom above."""
    width = 2.0 * v_max / (num_bins - 1)
    position = (values.clamp(-v_max, v_max) + v_max) / width  # in [0, K - 1]
    lower = position.floor().clamp(max=num_bins - 2)
    return lower, position - lower


def two_hot(values: Tensor, v_max: float, num_bins: int) -> Tensor:
    """Two-hot distributions [..., K] of ``values`` [...] clipped to [-v_max, v_max].

    Written with comparisons against ``arange(K)`` (no scatter or one_hot), so that it also
    runs under ``torch.func.vmap``.
    """
    lower, upper_share = two_hot_split(values, v_max, num_bins)
    upper_share = upper_share.unsqueeze(-1)
    index = torch.arange(num_bins, dtype=values.dtype, device=values.device)
    at_lower = (index == lower.unsqueeze(-1)).to(values.dtype)
    at_upper = (index == lower.unsqueeze(-1) + 1).to(values.dtype)
    return at_lower * (1.0 - upper_share) + at_upper * upper_share


def hl_gauss(values: Tensor, v_max: float, num_bins: int, sigma: float) -> Tensor:
    """HL-Gauss distributions [..., K] of ``values`` [...] clipped to [-v_max, v_max]: the
    N(value, sigma^2) mass of each bin [z_k - zeta/2, z_k + zeta/2], renormalised to sum 1."""
    width = 2.0 * v_max / (num_bins - 1)
    edges = torch.linspace(
        -v_max - width / 2, v_max + width / 2, num_bins + 1, dtype=values.dtype,
        device=values.device,
    )  # fmt: skip
    centred = (edges - values.clamp(-v_max, v_max).unsqueeze(-1)) / (sigma * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + torch.erf(centred))  # [..., K + 1]
    mass = cdf[..., 1:] - cdf[..., :-1]
    return mass / (cdf[..., -1:] - cdf[..., :1])


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """-sum_k target_k log softmax(logits)_k: logits and target [..., K] -> [...]."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1)
