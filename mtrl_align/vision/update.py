"""One multi-task gradient computation for a vision model with any aggregator.

Two places to take the per-task gradients (``aggregation.target``):

* ``parameters``: one forward, per-task Jacobian J [T, n] of the shared parameters (encoder and
  shared decoder weights) in one batched backward; the aggregator's direction [n] becomes their
  ``.grad``.
* ``representation`` (the UB variants, e.g. aligned-mtl-ub, mgda-ub): the task outputs are
  computed from a detached copy of the shared representation (all tensors ``model.encode``
  returns); J [T, m] is taken w.r.t. those features and the direction [m] is back-propagated
  once through the encoder. This equals back-propagating ``(weights * losses).sum()`` for a
  weighting method, at the cost of a single encoder backward.

Task-specific parameters (heads, task attention) and, in representation mode, shared decoder
parameters receive the weighted sum over tasks of their per-task gradients, with the
pre-defined task weights (1 each by default), or the method's own task weights when
``weight_task_specific`` is set. They come out of the same batched backward as J.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mtrl_align.jacobian import check_finite_losses, jacobian_from_losses, write_shared_direction
from mtrl_align.vision.losses import multitask_losses
from mtrl_align.vision.models.base import MultiTaskDenseModel
from mtrl_align.vision.specs import DatasetSpec

TARGETS = ("auto", "parameters", "representation")


@dataclass
class UpdateResult:
    """What one gradient computation produced."""

    losses: Tensor
    """Per-task losses [T] (detached)."""
    task_weights: Tensor | None
    """The aggregator's ``last_weights`` [T] (None for methods without weights)."""
    jacobian: Tensor | None
    """The J [T, n] or [T, m] the aggregator saw (only when ``keep_jacobian``)."""
    direction_norm: Tensor
    """Norm of the aggregated direction (0-dim, parameters or representation space)."""


def resolve_target(target: str, aggregator) -> bool:
    """True if gradients are taken w.r.t. the shared representation."""
    if target not in TARGETS:
        raise ValueError(
            f"unknown aggregation.target '{target}'; choose from: {', '.join(TARGETS)}"
        )
    if target == "auto":
        return bool(getattr(aggregator, "uses_representation", False))
    return target == "representation"


class MultiTaskGradient:
    """Sets ``.grad`` of every model parameter for one batch; call the optimizer afterwards.

    Args:
        model: a :class:`MultiTaskDenseModel`.
        spec: the benchmark (task order = rows of J).
        aggregator: from ``mtrl_align.aggregation.make``.
        target: ``auto`` | ``parameters`` | ``representation``.
        task_weights: pre-defined task weights [T] or None (= 1 each).
        weight_task_specific: scale task-specific gradients by the method's task weights.
    """

    def __init__(
        self,
        model: MultiTaskDenseModel,
        spec: DatasetSpec,
        aggregator,
        target: str = "auto",
        task_weights: Sequence[float] | None = None,
        weight_task_specific: bool = False,
    ) -> None:
        self.model = model
        self.spec = spec
        self.aggregator = aggregator
        self.on_representation = resolve_target(target, aggregator)
        num_tasks = len(spec.tasks)
        if task_weights is not None and len(task_weights) not in (0, num_tasks):
            raise ValueError(
                f"aggregation.task_weights has {len(task_weights)} entries but {spec.name} has "
                f"{num_tasks} tasks ({', '.join(spec.task_names)})"
            )
        self.task_weights = list(task_weights) if task_weights else None
        self.weight_task_specific = weight_task_specific

    def _predefined(self, like: Tensor) -> Tensor:
        if self.task_weights is None:
            return torch.ones(len(self.spec.tasks), dtype=like.dtype, device=like.device)
        return torch.tensor(self.task_weights, dtype=like.dtype, device=like.device)

    def _specific_weights(self, like: Tensor) -> Tensor:
        last = getattr(self.aggregator, "last_weights", None)
        if self.weight_task_specific and last is not None:
            return last.to(dtype=like.dtype, device=like.device)
        return self._predefined(like)

    def _aggregate(self, J: Tensor, losses: Tensor) -> Tensor:
        weights = None if self.task_weights is None else self._predefined(J)
        return self.aggregator(J, losses=losses.detach(), weights=weights)

    def __call__(
        self, images: Tensor, labels: dict[str, Tensor], keep_jacobian: bool = False
    ) -> UpdateResult:
        self.model.zero_grad(set_to_none=True)
        if self.on_representation:
            return self._on_representation(images, labels, keep_jacobian)
        return self._on_parameters(images, labels, keep_jacobian)

    def _losses(self, outputs: dict[str, Tensor], labels: dict[str, Tensor]) -> Tensor:
        losses = multitask_losses(self.spec, outputs, labels)
        check_finite_losses(losses, self.spec.task_names)
        return losses

    def _on_parameters(self, images: Tensor, labels: dict[str, Tensor], keep: bool) -> UpdateResult:
        shared = self.model.shared_parameters()
        specific = [p for name in self.spec.task_names for p in self.model.task_parameters()[name]]
        losses = self._losses(self.model(images), labels)
        J_all = jacobian_from_losses(losses, shared + specific)
        n_shared = sum(p.numel() for p in shared)
        J = J_all[:, :n_shared]
        direction = self._aggregate(J, losses)
        write_shared_direction(direction, shared)
        write_shared_direction(self._specific_weights(J_all) @ J_all[:, n_shared:], specific)
        return UpdateResult(
            losses.detach(),
            _weights_of(self.aggregator),
            J if keep else None,
            direction.detach().norm(),
        )

    def _on_representation(
        self, images: Tensor, labels: dict[str, Tensor], keep: bool
    ) -> UpdateResult:
        features = self.model.encode(images)
        detached = [f.detach().requires_grad_(True) for f in features]
        losses = self._losses(self.model.decode(detached), labels)
        decoder = self.model.decoder_parameters()
        J_all = jacobian_from_losses(losses, detached + decoder)
        sizes = [f.numel() for f in features]
        m = sum(sizes)
        J = J_all[:, :m]
        direction = self._aggregate(J, losses)
        pieces = torch.split(direction.to(features[0].dtype), sizes)
        torch.autograd.backward(
            features, [p.view_as(f) for p, f in zip(pieces, features, strict=True)]
        )
        write_shared_direction(self._specific_weights(J_all) @ J_all[:, m:], decoder)
        return UpdateResult(
            losses.detach(),
            _weights_of(self.aggregator),
            J if keep else None,
            direction.detach().norm(),
        )


def _weights_of(aggregator) -> Tensor | None:
    last = getattr(aggregator, "last_weights", None)
    return None if last is None else last.detach().clone()
