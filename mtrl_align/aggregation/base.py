"""Base classes: an :class:`Aggregator` maps a Jacobian J [T, n] to one direction [n].

Most methods only need the Gram matrix G = J J^T [T, T] to pick task weights w [T] and then
return d = J^T w; they subclass :class:`WeightingAggregator` and implement :meth:`weights`
(the "weighting"). Methods that change individual rows (PCGrad, GradVac, GradDrop, CAGrad)
subclass :class:`Aggregator` and implement :meth:`aggregate` directly.

Conventions shared by every method:

* ``weights`` are the pre-defined task weights (the paper's ``w``), default ``1`` per task,
  so ``uniform`` is the summed loss. A ``task_weights`` option at construction sets a default;
  a ``weights`` argument at call time overrides it.
* ``last_weights`` [T] holds the task weights actually applied last (where the method has them),
  ``stats`` a flat dict of floats (counters, diagnostics), ``state_dict()`` everything needed to
  continue identically after a restart (RNG, EMAs, loss history ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


class Aggregator:
    """Turns per-task gradients J [T, n] (and optionally losses [T]) into one direction [n]."""

    #: registry name, set by subclasses
    name: str = ""
    #: True where the caller passes gradients w.r.t. a shared representation (UB variants)
    uses_representation: bool = False
    #: True where the method needs the per-task losses at every call
    needs_losses: bool = False
    #: True where the method can use pre-defined task weights
    accepts_weights: bool = True

    def __init__(self, task_weights: Sequence[float] | Tensor | None = None) -> None:
        self.task_weights = None if task_weights is None else torch.as_tensor(task_weights)
        if self.task_weights is not None and self.task_weights.dim() != 1:
            raise ValueError(
                f"task_weights must be a 1-D sequence, got shape {tuple(self.task_weights.shape)}"
            )
        self.last_weights: Tensor | None = None
        self.stats: dict[str, float] = {}

    # ----------------------------------------------------------------------------------------
    def __call__(
        self, J: Tensor, losses: Tensor | None = None, weights: Tensor | None = None
    ) -> Tensor:
        """Aggregate J [T, n] into a direction [n] (same dtype and device as J)."""
        J = self._check_jacobian(J)
        num_tasks = J.shape[0]
        losses = self._check_losses(losses, num_tasks, J)
        task_weights = self._resolve_weights(weights, num_tasks, J)
        direction = self.aggregate(J, losses, task_weights)
        # one float64 sum is NaN/inf iff some entry is (finite float32 entries cannot overflow
        # it), and it is several times cheaper than isfinite(direction).all() on [n]
        if not bool(torch.isfinite(direction.sum(dtype=torch.float64))):
            raise ValueError(
                f"aggregator {self.name!r} produced a non-finite direction: J contains NaN or inf"
            )
        return direction

    def aggregate(self, J: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        """Method-specific part; inputs already validated. ``task_weights`` [T]."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """All internal state (torch.save-able)."""
        return {
            "name": self.name,
            "last_weights": self.last_weights,
            "stats": dict(self.stats),
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; the method name must match."""
        if state.get("name") != self.name:
            raise ValueError(
                f"state_dict is for aggregator {state.get('name')!r}, not {self.name!r}"
            )
        self.last_weights = state["last_weights"]
        self.stats = dict(state["stats"])
        self._load_extra_state(state["extra"])

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # ----------------------------------------------------------------------------------------
    def _check_jacobian(self, J: Tensor) -> Tensor:
        if not isinstance(J, Tensor):
            raise ValueError(f"J must be a torch.Tensor of shape [T, n], got {type(J).__name__}")
        if J.dim() != 2 or J.shape[0] == 0 or J.shape[1] == 0:
            raise ValueError(
                f"J must have shape [T, n] with T >= 1 tasks and n >= 1 parameters, "
                f"got {tuple(J.shape)}"
            )
        if not J.is_floating_point():
            raise ValueError(f"J must be a floating-point tensor, got dtype {J.dtype}")
        return J.detach()

    def _check_losses(self, losses: Tensor | None, num_tasks: int, J: Tensor) -> Tensor | None:
        if losses is None:
            if self.needs_losses:
                raise ValueError(
                    f"aggregator {self.name!r} needs the per-task losses: call agg(J, losses=...)"
                )
            return None
        losses = torch.as_tensor(losses).detach().to(device=J.device)
        if losses.shape != (num_tasks,):
            raise ValueError(
                f"losses must have shape [T] = [{num_tasks}] to match J, got {tuple(losses.shape)}"
            )
        if not bool(torch.isfinite(losses).all()):
            raise ValueError(f"losses must be finite, got {losses.tolist()}")
        return losses

    def _resolve_weights(self, weights: Tensor | None, num_tasks: int, J: Tensor) -> Tensor:
        source = "weights"
        if weights is None:
            weights, source = self.task_weights, "task_weights"
        if weights is None:
            return torch.ones(num_tasks, dtype=J.dtype, device=J.device)
        if not self.accepts_weights:
            raise ValueError(f"aggregator {self.name!r} does not use pre-defined task weights")
        weights = torch.as_tensor(weights).detach().to(dtype=J.dtype, device=J.device)
        if weights.shape != (num_tasks,):
            raise ValueError(
                f"{source} has shape {tuple(weights.shape)} but J has {num_tasks} task(s); "
                f"expected [{num_tasks}]"
            )
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError(f"{source} must be finite and >= 0, got {weights.tolist()}")
        return weights


class WeightingAggregator(Aggregator):
    """An aggregator whose direction is ``J^T alpha`` with weights ``alpha`` [T] from the Gram.

    Subclasses implement :meth:`weights`; G = J J^T is computed once (one [T, n] x [n, T] matmul)
    and kept as ``last_gram`` [T, T] (pass it to ``gradient_stats_from_gram`` to log the
    stability metrics without recomputing it; methods that skip the Gram leave it None).
    """

    last_gram: Tensor | None = None

    def weights(self, gram: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        """Task weights alpha [T] from the Gram matrix [T, T]."""
        raise NotImplementedError

    def aggregate(self, J: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        gram = gram_matrix(J)
        finite_or_raise(gram)
        self.last_gram = gram
        alpha = self.weights(gram, losses, task_weights).to(J.dtype)
        self.last_weights = alpha.detach()
        return alpha @ J


def gram_matrix(J: Tensor) -> Tensor:
    """G = J J^T [T, T] in J's dtype (symmetrised); the only O(T^2 n) step of a weighting.

    If the product overflows (entries of J beyond ~1e19 in float32) while J itself is finite,
    it is recomputed on J / max|J| and rescaled in float64, so huge but finite gradients still
    give a finite Gram matrix (float64 then).
    """
    gram = torch.einsum("in,jn->ij", J, J)  # ~15 % faster than J @ J.T for T << n on CPU
    if not bool(torch.isfinite(gram).all()) and bool(torch.isfinite(J).all()):
        scale = J.abs().max()
        scaled = J / scale
        gram = (scaled @ scaled.T).to(torch.float64) * scale.to(torch.float64) ** 2
    return 0.5 * (gram + gram.T)


def finite_or_raise(gram: Tensor) -> None:
    """Raise ``ValueError`` if the Gram matrix (hence J) contains NaN or inf."""
    if not bool(torch.isfinite(gram).all()):
        raise ValueError(
            "J contains NaN or inf (its Gram matrix is not finite); check the task losses"
        )
