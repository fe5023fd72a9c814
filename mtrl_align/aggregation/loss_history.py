"""Small helpers shared by the loss-based weightings (dwa, gradnorm)."""

from __future__ import annotations

import torch
from torch import Tensor


def loss_ratio(numerator: Tensor, denominator: Tensor) -> tuple[Tensor, int]:
    """numerator / denominator [T] where both are > 0, else 1; also the count of such tasks.

    For GradNorm, which only accepts losses >= 0: a zero loss (a task solved exactly) gets
    ratio 1 instead of 0/0.
    """
    valid = (numerator > 0) & (denominator > 0)
    ratio = torch.where(valid, numerator / torch.where(valid, denominator, 1.0), 1.0)
    return ratio, int((~valid).sum())


def relative_rate(current: Tensor, previous: Tensor) -> tuple[Tensor, int]:
    """Sign-agnostic loss rate ``1 + (current - previous) / |previous|`` [T]; also the count of
    tasks with ``previous == 0`` (they get rate 1).

    For positive losses this is exactly ``current / previous`` (DWA's ratio); for losses of any
    sign it keeps the ratio's meaning: below 1 where the loss went down, above 1 where it went
    up, by the change relative to the loss's magnitude. (The plain ratio of two negative losses
    reads a falling loss as a rising one.)
    """
    scale = previous.abs()
    valid = scale > 0
    rate = torch.where(valid, 1.0 + (current - previous) / torch.where(valid, scale, 1.0), 1.0)
    return rate, int((~valid).sum())
