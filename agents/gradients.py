"""From one network's per-task losses [T] to the ``.grad`` of its parameters.

Three modes, fixed when the agent is built:

``sum``             the network is not aggregated, or the method is ``uniform``: one backward
                    of sum_t w_t L_t (w = pre-defined task weights, default 1). This equals the
                    uniform aggregator's J^T w without forming J.

Pre-defined task weights w follow one rule in every mode: the aggregator receives w (for
``uniform`` the direction is J^T w), and each task-specific parameter receives w_t times its
own task's gradient.
``jacobian``        per-task gradients of all parameters in one fused vmapped pass
                    (:func:`mtrl_align.jacobian.task_sliced_gradients`); the shared ones form
                    J [T, n] and go through the aggregator; each task-specific parameter (head,
                    embedding) gets its own task's gradient.
``representation``  for ``aligned-mtl-ub`` / ``mgda-ub``: the aggregator sees the gradients of
                    the losses w.r.t. the shared representation (the last hidden layer) and its
                    task weights alpha [T] are back-propagated once: shared parameters get the
                    gradient of sum_t alpha_t L_t, task-specific ones the gradient of
                    sum_t w_t L_t (their own task's, times w_t).

A NaN/inf loss, per-task gradient or aggregated direction makes :meth:`NetworkGradients.compute`
return ``finite=False``; it never raises for those. Callers that skip such an update restore
the aggregator's state (see :meth:`agents.sac.MultiTaskSAC.update`).

In multi-task RL each task's loss is computed on that task's own slice of the batch, so task
t's loss depends only on its slice Z_t of the representation: the representation Jacobian is
block-diagonal, [T, T * m] with row t = (0, .., dL_t/dZ_t, .., 0). Its Gram matrix is
diag(|dL_t/dZ_t|^2). :func:`representation_jacobian` returns the [T, T] matrix
diag(|dL_t/dZ_t|) that has exactly this Gram matrix (T^2 numbers instead of T^2 m), which is
all a weighting aggregator uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mtrl_align import aggregation
from mtrl_align.aggregation import NonFiniteDirectionError, all_finite
from mtrl_align.jacobian import (
    flatten_task_gradients,
    task_sliced_gradients,
    write_aggregated_gradients,
    write_task_specific_gradients,
)

MODES = ("sum", "jacobian", "representation")

LossFn = Callable[..., tuple[Tensor, Tensor]]
TermsFn = Callable[..., tuple[Tensor, Tensor, tuple[Tensor, ...]]]


@dataclass
class NetworkStep:
    """Outcome of :meth:`NetworkGradients.compute` for one update."""

    losses: Tensor
    """[T] per-task losses (detached)."""
    aux: Tensor
    """[T] the loss function's auxiliary output (e.g. mean Q, mean log-prob)."""
    finite: bool
    """False when a loss or a per-task gradient was NaN/inf; nothing was written to .grad then."""
    stats: dict[str, float] = field(default_factory=dict)
    """Gradient stats and aggregator diagnostics (only when requested)."""
    weights: Tensor | None = None
    """[T] task weights the aggregator applied (None where the method has none)."""
    cosine: Tensor | None = None
    """[T, T] pairwise cosines of the per-task gradients of the shared parameters (the
    interference matrix; float64), computed with the stats only."""


def representation_jacobian(feature_grads: Sequence[Tensor]) -> Tensor:
    """[T, T] matrix with the same Gram matrix as the block-diagonal representation Jacobian.

    Args:
        feature_grads: gradients of sum_t L_t w.r.t. the representation tensors, each
            [T, B, h] (one per critic, or the actor's); since L_t only depends on slice t,
            slice t equals dL_t/dZ_t.
    """
    num_tasks = feature_grads[0].shape[0]
    squared = sum(g.reshape(num_tasks, -1).pow(2).sum(dim=1) for g in feature_grads)
    return torch.diag(squared.sqrt())


class NetworkGradients:
    """Computes and writes the gradient of one network (actor or critic) from its task losses.

    Args:
        name: network name for logs ("critic", "actor").
        module: the network; its ``is_task_specific(name)`` splits the parameters into shared
            and task-specific ones.
        loss_fn: ``loss_fn(params, batch, task_index, *extra) -> (loss, aux)`` (see
            :mod:`agents.losses`), scalar per task or [T] for all tasks.
        terms_fn: same, returning ``(loss, aux, features)`` (representation mode).
        aggregator: the aggregator of this network, or None when it is not aggregated.
        task_weights: pre-defined task weights [T] or None (ones).
        all_task_loss_fn: the same loss for the all-task call of ``sum`` mode, e.g. a
            ``torch.compile``-d copy of ``loss_fn`` (default: ``loss_fn``).
    """

    def __init__(
        self,
        name: str,
        module: nn.Module,
        loss_fn: LossFn,
        terms_fn: TermsFn,
        aggregator: aggregation.Aggregator | None,
        task_weights: Tensor | None = None,
        all_task_loss_fn: LossFn | None = None,
    ) -> None:
        self.name = name
        self.module = module
        self.loss_fn = loss_fn
        self.all_task_loss_fn = all_task_loss_fn or loss_fn
        self.terms_fn = terms_fn
        self.aggregator = aggregator
        self.task_weights = task_weights
        if aggregator is None or aggregator.name == "uniform":
            self.mode = "sum"
        elif aggregator.uses_representation:
            self.mode = "representation"
        else:
            self.mode = "jacobian"
        named = dict(module.named_parameters())
        is_specific = module.is_task_specific  # type: ignore[operator]
        self.shared_names = [n for n in named if not is_specific(n)]
        self.specific_names = [n for n in named if is_specific(n)]

    # ----------------------------------------------------------------------------------------
    def _params(self) -> dict[str, Tensor]:
        return dict(self.module.named_parameters())

    def _weighted_sum(self, losses: Tensor) -> Tensor:
        if self.task_weights is None:
            return losses.sum()
        return (self.task_weights * losses).sum()

    def _weighted_task_gradients(self, grads: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-task gradients [T, *shape] of the task-specific parameters, row t times w_t."""
        if self.task_weights is None:
            return {n: grads[n] for n in self.specific_names}
        w = self.task_weights
        return {n: grads[n] * w.view(-1, *[1] * (grads[n].dim() - 1)) for n in self.specific_names}

    def per_task_gradients(
        self, batch: Any, task_index: Tensor, extra: tuple
    ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """``(grads {name: [T, *shape]}, losses [T], aux [T])`` in one fused vmapped pass."""
        del task_index  # task_sliced_gradients builds arange(T) itself
        return task_sliced_gradients(
            self.loss_fn, self._params(), batch, *extra, check_finite=False
        )

    def jacobian(self, grads: dict[str, Tensor]) -> Tensor:
        """J [T, n] of the shared parameters from per-task gradients."""
        return flatten_task_gradients(grads, self.shared_names)

    # ----------------------------------------------------------------------------------------
    def compute(
        self, batch: Any, task_index: Tensor, extra: tuple = (), collect_stats: bool = False
    ) -> NetworkStep:
        """Write ``.grad`` of every parameter of the module (unless something is non-finite).

        Args:
            batch: the loss inputs, tensors with a leading task dim T.
            task_index: arange(T) on the module's device.
            extra: constant extra arguments of the loss (e.g. detached critic parameters).
            collect_stats: also compute gradient stats and the [T, T] cosine matrix of the
                shared-parameter Jacobian and collect the aggregator's diagnostics (costs one
                extra vmapped per-task pass in sum and representation modes).
        """
        if self.mode == "jacobian":
            step, grads = self._compute_jacobian(batch, task_index, extra)
        elif self.mode == "representation":
            step, grads = self._compute_representation(batch, task_index, extra)
        else:
            step, grads = self._compute_sum(batch, task_index, extra)
        if collect_stats and step.finite:
            self._collect_stats(step, grads, batch, task_index, extra)
        return step

    def compute_unchecked(
        self, batch: Any, task_index: Tensor, extra: tuple = (), collect_stats: bool = False
    ) -> NetworkStep:
        """``sum`` mode without finiteness checks, for the sync-free update: writes ``.grad``
        (NaN included) and reads no device value, except for the stats of ``collect_stats``.
        The returned ``finite`` is True without having been checked."""
        if self.mode != "sum":
            raise RuntimeError(
                f"the {self.name}'s {self.mode!r} gradients need host-side checks; only the "
                "summed loss has an unchecked path"
            )
        params = self._params()
        losses, aux = self.all_task_loss_fn(params, batch, task_index, *extra)
        self._backward_sum(params, losses)
        losses, aux = losses.detach(), aux.detach()
        step = NetworkStep(losses, aux, finite=True, weights=self._sum_weights(losses))
        if collect_stats:
            self._collect_stats(step, None, batch, task_index, extra)
        return step

    def _collect_stats(
        self,
        step: NetworkStep,
        grads: dict[str, Tensor] | None,
        batch: Any,
        task_index: Tensor,
        extra: tuple,
    ) -> None:
        if grads is None:
            grads, _, _ = self.per_task_gradients(batch, task_index, extra)
        gram, eps = self._shared_gram(grads)
        if gram is not None:
            step.stats.update(aggregation.gradient_stats_from_gram(gram, eps))
            step.cosine = aggregation.cosine_matrix_from_gram(gram)
            step.stats["mean_cos"] = aggregation.mean_pairwise_cosine(step.cosine)
        if self.aggregator is not None:
            step.stats.update({f"stat/{k}": float(v) for k, v in self.aggregator.stats.items()})

    def _shared_gram(self, grads: dict[str, Tensor]) -> tuple[Tensor | None, float]:
        """``(G [T, T], eps)``: the Gram matrix of the shared-parameter Jacobian (None when J
        has NaN/inf) and the machine epsilon of its dtype. Reuses the Gram matrix the
        aggregator just computed from these gradients when there is one."""
        eps = torch.finfo(grads[self.shared_names[0]].dtype).eps
        gram = getattr(self.aggregator, "last_gram", None)
        if self.mode == "jacobian" and gram is not None:
            return gram, eps
        jac = self.jacobian(grads)
        return (aggregation.gram_matrix(jac.detach()), eps) if all_finite([jac]) else (None, eps)

    def _compute_sum(
        self, batch: Any, task_index: Tensor, extra: tuple
    ) -> tuple[NetworkStep, None]:
        params = self._params()
        losses, aux = self.all_task_loss_fn(params, batch, task_index, *extra)
        if not all_finite([losses.detach()]):
            return NetworkStep(losses.detach(), aux.detach(), finite=False), None
        self._backward_sum(params, losses)
        weights = self._sum_weights(losses.detach())
        return NetworkStep(losses.detach(), aux.detach(), finite=True, weights=weights), None

    def _backward_sum(self, params: dict[str, Tensor], losses: Tensor) -> None:
        """``.grad`` of every parameter from one backward of sum_t w_t L_t."""
        names = list(params)
        grads = torch.autograd.grad(self._weighted_sum(losses), [params[n] for n in names])
        for n, g in zip(names, grads, strict=True):
            params[n].grad = g

    def _sum_weights(self, losses: Tensor) -> Tensor | None:
        """The task weights a summed-loss step reports: w (ones by default) when aggregated."""
        if self.aggregator is None:
            return None
        return self.task_weights if self.task_weights is not None else torch.ones_like(losses)

    def _compute_jacobian(
        self, batch: Any, task_index: Tensor, extra: tuple
    ) -> tuple[NetworkStep, dict[str, Tensor]]:
        assert self.aggregator is not None
        grads, losses, aux = self.per_task_gradients(batch, task_index, extra)
        if not all_finite([losses, *grads.values()]):
            return NetworkStep(losses, aux.detach(), finite=False), grads
        params = self._params()
        try:
            write_aggregated_gradients(
                self.aggregator,
                grads,
                {n: params[n] for n in self.shared_names},
                losses,
                self.task_weights,
            )
        except NonFiniteDirectionError:
            return NetworkStep(losses, aux.detach(), finite=False), grads
        if self.specific_names:
            write_task_specific_gradients(
                self._weighted_task_gradients(grads),
                {n: params[n] for n in self.specific_names},
            )
        return (
            NetworkStep(losses, aux.detach(), finite=True, weights=self.aggregator.last_weights),
            grads,
        )

    def _compute_representation(
        self, batch: Any, task_index: Tensor, extra: tuple
    ) -> tuple[NetworkStep, None]:
        assert self.aggregator is not None
        params = self._params()
        losses, aux, features = self.terms_fn(params, batch, task_index, *extra)
        if not all_finite([losses.detach()]):
            return NetworkStep(losses.detach(), aux.detach(), finite=False), None
        specific = [params[n] for n in self.specific_names]
        if self.task_weights is None or not specific:
            first = torch.autograd.grad(losses.sum(), [*features, *specific], retain_graph=True)
            feature_grads, specific_grads = first[: len(features)], first[len(features) :]
        else:  # the representation Jacobian is unweighted; the heads get w_t-weighted gradients
            feature_grads = torch.autograd.grad(losses.sum(), features, retain_graph=True)
            specific_grads = torch.autograd.grad(
                self._weighted_sum(losses), specific, retain_graph=True
            )
        if not all_finite([*feature_grads, *specific_grads]):
            return NetworkStep(losses.detach(), aux.detach(), finite=False), None
        try:
            self.aggregator(
                representation_jacobian(feature_grads), losses.detach(), self.task_weights
            )
        except NonFiniteDirectionError:
            return NetworkStep(losses.detach(), aux.detach(), finite=False), None
        alpha = self.aggregator.last_weights
        if alpha is None:
            raise RuntimeError(
                f"aggregator {self.aggregator.name!r} set no task weights; representation-level "
                "aggregation needs a weighting method"
            )
        shared = [params[n] for n in self.shared_names]
        shared_grads = torch.autograd.grad((alpha.detach() * losses).sum(), shared)
        for p, g in zip(shared, shared_grads, strict=True):
            p.grad = g
        for p, g in zip(specific, specific_grads, strict=True):
            p.grad = g
        return NetworkStep(losses.detach(), aux.detach(), finite=True, weights=alpha), None
