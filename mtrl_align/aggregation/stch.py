"""STCH, smooth Tchebycheff scalarisation (Lin, Zhang, Yang, Liu, Zhang & Zhang, "Smooth
Tchebycheff Scalarization for Multi-Objective Optimization", ICML 2024):
    g_mu(L) = mu log sum_i exp(p_i (L_i - z_i) / mu),
the smooth version of max_i p_i (L_i - z_i) with the ideal point z. Its gradient is J^T alpha
with alpha_i = p_i softmax(p (L - z) / mu)_i; we return T times that (equal losses give
alpha = p, the summed-loss scale; the scalarisation's own weights sum to at most max p).

Sign: defined for losses of any sign -- it only uses differences L_i - z_i inside a softmax (no
log, no ratio), so the negative SAC actor loss is fine. The ideal point z (the paper's z*, the
best value of each task, unknown in training) is set by ``ideal``: ``"zero"`` (default, z = 0:
the lower bound of non-negative losses; for losses of any sign the softmax of p L / mu is still
well defined) or ``"running-min"`` (each task's lowest loss over all calls so far, this call
included, kept in ``state_dict``; on the first call L - z = 0, a uniform softmax). ``mu`` is in
loss units: mu -> 0 is the hard max (all weight on the worst task), mu -> inf the (scaled)
summed loss. The official code and LibMTL instead use log(L / nadir) after a warm-up, which
needs positive losses; that variant is not offered here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import WeightingAggregator

IDEALS = ("zero", "running-min")


class STCH(WeightingAggregator):
    """``stch``. Options: ``task_weights`` (the preference lambda), ``mu`` (smoothing, 1.0),
    ``ideal`` ("zero" | "running-min")."""

    name = "stch"
    uses_gram = False
    needs_losses = True

    def __init__(
        self,
        task_weights: Sequence[float] | Tensor | None = None,
        mu: float = 1.0,
        ideal: str = "zero",
    ) -> None:
        super().__init__(task_weights)
        if not mu > 0:
            raise ValueError(f"stch: mu must be > 0, got {mu}")
        if ideal not in IDEALS:
            raise ValueError(f"stch: unknown ideal {ideal!r}; choose from: {', '.join(IDEALS)}")
        self.mu, self.ideal_mode = float(mu), ideal
        self.ideal: Tensor | None = None  # running minimum of the losses [T], float64 CPU

    def weights(self, gram: Tensor | None, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        assert losses is not None
        L = losses.detach().to("cpu", torch.float64)
        if self.ideal_mode == "zero":
            self.ideal = torch.zeros_like(L) if self.ideal is None else self.ideal
            if self.ideal.shape != L.shape:
                raise ValueError(f"stch was used with {self.ideal.numel()} tasks, now {L.numel()}")
        elif self.ideal is None:
            self.ideal = L.clone()
        elif self.ideal.shape != L.shape:
            raise ValueError(f"stch was used with {self.ideal.numel()} tasks, now {L.numel()}")
        else:
            self.ideal = torch.minimum(self.ideal, L)
        p = task_weights.detach().to("cpu", torch.float64)
        alpha = L.numel() * p * torch.softmax(p * (L - self.ideal) / self.mu, dim=0)
        return alpha.to(task_weights.device)

    def _extra_state(self) -> dict[str, Any]:
        return {"ideal": None if self.ideal is None else self.ideal.clone()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.ideal = None if extra["ideal"] is None else extra["ideal"].clone()
