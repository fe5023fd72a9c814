"""IMTL (Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021), the full method:
the loss part IMTL-L (learned scales e^{s_i}, see :mod:`.imtl_l`) and the gradient part IMTL-G
(:mod:`.imtl_g`) applied to the gradients of the scaled losses.

The scaled task gradients are e^{s_i} g_i, their Gram matrix G~ = diag(e^s) G diag(e^s); IMTL-G
on G~ gives beta [T] (sum 1, equal projections of d on all unit scaled gradients) and
    d = sum_i beta_i e^{s_i} g_i = J^T alpha,   alpha = beta * e^s.
Then s takes one Adam step on sum_i (e^{s_i} L_i - s_i), as in IMTL-L. Like IMTL-G it has no
notion of pre-defined task weights (they would cancel in the scale-invariant loss part anyway):
passing them raises ``ValueError``. Only defined for losses >= 0 (the loss part;
``requires_positive_losses``). IMTL-G's degenerate cases (sum of G~^+ n vanishes) use 1/T and
are counted in ``stats["degenerate"]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import WeightingAggregator
from .imtl_g import rank_safe_pinv
from .imtl_l import LogScales
from .positive_losses import check_nonnegative


class IMTL(WeightingAggregator):
    """``imtl``. Options: ``lr`` (Adam step for s, 1e-3), ``s_max`` (20)."""

    name = "imtl"
    needs_losses = True
    accepts_weights = False
    requires_positive_losses = True

    def __init__(self, lr: float = 1e-3, s_max: float = 20.0) -> None:
        super().__init__(None)
        self.scales = LogScales(self.name, lr, s_max)
        self.stats = {"degenerate": 0.0}

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        assert losses is not None
        L = losses.detach().to("cpu", torch.float64)
        check_nonnegative(self.name, L)
        scale = torch.exp(self.scales.current(L.numel()))
        G = gram.detach().to("cpu", torch.float64)
        beta = self._imtl_g(scale[:, None] * G * scale[None, :], torch.finfo(gram.dtype).eps)
        self.scales.update(L, torch.ones_like(L))
        return (beta * scale).to(gram.device)

    def _imtl_g(self, G: Tensor, eps: float) -> Tensor:
        """IMTL-G's closed form beta ∝ G^+ |g|, sum 1 (as :class:`~.imtl_g.IMTLG`)."""
        v = rank_safe_pinv(G, eps) @ G.diagonal().clamp(min=0.0).sqrt()
        total = v.sum()
        if not bool(total.abs() > 1e-12 * v.abs().sum().clamp(min=1e-300)):
            self.stats["degenerate"] += 1
            return torch.full_like(v, 1.0 / v.numel())
        return v / total

    def _extra_state(self) -> dict[str, Any]:
        return {"scales": self.scales.state_dict()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.scales.load_state_dict(extra["scales"])
