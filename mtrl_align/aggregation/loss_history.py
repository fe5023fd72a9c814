"""Small helpers shared by the loss-based weightings (dwa, gradnorm)."""

from __future__ import annotations

import torch
from torch import Tensor


def loss_ratio(numerator: Tensor, denominator: Tensor) -> tuple[Tensor, int]:
    """numerator / denominator [T] where both are > 0, else 1; also the count of such tasks.

    The loss-ratio weightings assume positive losses (e.g. MSE); a non-positive loss (an
    actor loss can be negative) makes the ratio meaningless, so that task gets ratio 1.
    """
    valid = (numerator > 0) & (denominator > 0)
    ratio = torch.where(valid, numerator / torch.where(valid, denominator, 1.0), 1.0)
    return ratio, int((~valid).sum())
