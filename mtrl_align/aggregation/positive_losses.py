"""The sign check of the loss-based methods that are only defined for losses >= 0."""

from __future__ import annotations

from torch import Tensor


def check_nonnegative(name: str, losses: Tensor, what: str = "losses") -> None:
    """Raise ``ValueError`` naming aggregator ``name`` and the negative entries of ``losses``.

    Used by methods with ``requires_positive_losses = True`` (they take logs or ratios of the
    raw losses). Never a silent fallback: a negative loss is a caller error (for SAC, aggregate
    only the critic, ``aggregation.networks: [critic]``).
    """
    negative = (losses < 0).nonzero().flatten().tolist()
    if negative:
        values = [float(losses[i]) for i in negative]
        raise ValueError(
            f"aggregator {name!r} is only defined for {what} >= 0, got negative value(s) "
            f"{values} for task(s) {negative}; for SAC aggregate only the critic "
            "(aggregation.networks: [critic])"
        )
