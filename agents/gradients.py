"""From one network's per-task losses [T] to the ``.grad`` of its parameters.

Three modes, fixed when the agent is built:

``sum``             the network is not aggregated, or the method is ``uniform``: one backward
                    of sum_t w_t L_t (w = pre-defined task weights, default 1). This equals the
                    uniform aggregator's J^T w without forming J.

Pre-defined task weights w follow one rule in every mode: the aggregator receives w (for
``uniform`` the direction is J^T w), and each task-specific parameter receives w_t times its
own task's gradient.

A per-update loss scale s [T] (no gradient; the temperature task weights T softmax(-log alpha)
and PaCo's extreme-task mask, see :mod:`agents.sac`) multiplies the per-task losses before any
of this: the network's losses become s_t L_t, so the aggregator sees the rows s_t g_t and the
losses s_t L_t (and still w as its pre-defined weights), a task-specific parameter gets
w_t s_t g_t, and ``sum`` mode backpropagates sum_t w_t s_t L_t. A task with s_t = 0 gives
nothing that update.
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


@dataclass
class PendingStep:
    """The forward part of one network's step (:meth:`NetworkGradients.begin`)."""

    batch: Any
    task_index: Tensor
    extra: tuple
    losses: Tensor
    """[T] per-task losses (with their graph in ``sum`` and ``representation`` modes)."""
    aux: Tensor
    """[T] the loss function's auxiliary output (detached)."""
    params: dict[str, Tensor] = field(default_factory=dict)
    """The parameters the losses were computed with (``sum`` and ``representation`` modes)."""
    grads: dict[str, Tensor] | None = None
    """``jacobian`` mode: per-task gradients {name: [T, *shape]}."""
    features: tuple[Tensor, ...] | None = None
    """``representation`` mode: the shared representation(s) the losses were computed from."""


def _scale_rows(rows: Tensor, scale: Tensor) -> Tensor:
    """``rows`` [T, *shape] with row t times ``scale[t]``."""
    return rows * scale.view(-1, *[1] * (rows.dim() - 1)).to(rows.dtype)


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

    def _weighted_task_gradients(
        self, grads: dict[str, Tensor], scale: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Per-task gradients [T, *shape] of the task-specific parameters, row t times w_t
        (and times the loss scale s_t when given)."""
        w = self.task_weights
        if scale is not None:
            w = scale if w is None else w * scale
        if w is None:
            return {n: grads[n] for n in self.specific_names}
        return {n: _scale_rows(grads[n], w) for n in self.specific_names}

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
        self,
        batch: Any,
        task_index: Tensor,
        extra: tuple = (),
        collect_stats: bool = False,
        loss_scale: Tensor | None = None,
    ) -> NetworkStep:
        """Write ``.grad`` of every parameter of the module (unless something is non-finite).

        Args:
            batch: the loss inputs, tensors with a leading task dim T.
            task_index: arange(T) on the module's device.
            extra: constant extra arguments of the loss (e.g. detached critic parameters).
            collect_stats: also compute gradient stats and the [T, T] cosine matrix of the
                shared-parameter Jacobian and collect the aggregator's diagnostics (costs one
                extra vmapped per-task pass in sum and representation modes).
            loss_scale: per-task factors s [T] on the losses (see the module docstring), or
                None for ones.
        """
        return self.finish(self.begin(batch, task_index, extra), loss_scale, collect_stats)

    def begin(self, batch: Any, task_index: Tensor, extra: tuple = ()) -> PendingStep:
        """The forward part of :meth:`compute`: the losses [T] (and, in ``jacobian`` mode, the
        per-task gradients), before a loss scale that depends on them is chosen. Nothing is
        written to ``.grad``; pass the result to :meth:`finish`."""
        if self.mode == "jacobian":
            grads, losses, aux = self.per_task_gradients(batch, task_index, extra)
            return PendingStep(batch, task_index, extra, losses, aux.detach(), grads=grads)
        params = self._params()
        if self.mode == "representation":
            losses, aux, features = self.terms_fn(params, batch, task_index, *extra)
            return PendingStep(
                batch, task_index, extra, losses, aux.detach(), params=params, features=features
            )
        losses, aux = self.all_task_loss_fn(params, batch, task_index, *extra)
        return PendingStep(batch, task_index, extra, losses, aux.detach(), params=params)

    def finish(
        self,
        pending: PendingStep,
        loss_scale: Tensor | None = None,
        collect_stats: bool = False,
    ) -> NetworkStep:
        """The rest of :meth:`compute` for a :meth:`begin` result and a loss scale s [T]."""
        scale = None if loss_scale is None else loss_scale.detach()
        if self.mode == "jacobian":
            step, grads = self._compute_jacobian(pending, scale)
        elif self.mode == "representation":
            step, grads = self._compute_representation(pending, scale)
        else:
            step, grads = self._compute_sum(pending, scale)
        if collect_stats and step.finite:
            self._collect_stats(step, grads, pending.batch, pending.task_index, pending.extra)
        return step

    def compute_unchecked(
        self,
        batch: Any,
        task_index: Tensor,
        extra: tuple = (),
        collect_stats: bool = False,
        loss_scale: Tensor | None = None,
    ) -> NetworkStep:
        """``sum`` mode without finiteness checks, for the sync-free update: writes ``.grad``
        (NaN included) and reads no device value, except for the stats of ``collect_stats``.
        The returned ``finite`` is True without having been checked."""
        pending = self.begin(batch, task_index, extra)
        return self.finish_unchecked(pending, loss_scale, collect_stats)

    def finish_unchecked(
        self,
        pending: PendingStep,
        loss_scale: Tensor | None = None,
        collect_stats: bool = False,
    ) -> NetworkStep:
        """:meth:`compute_unchecked` for a :meth:`begin` result and a loss scale s [T]."""
        if self.mode != "sum":
            raise RuntimeError(
                f"the {self.name}'s {self.mode!r} gradients need host-side checks; only the "
                "summed loss has an unchecked path"
            )
        scale = None if loss_scale is None else loss_scale.detach()
        self._backward_sum(pending.params, pending.losses, scale)
        losses = pending.losses.detach()
        weights = self._sum_weights(losses, scale)
        step = NetworkStep(losses, pending.aux, finite=True, weights=weights)
        if collect_stats:
            self._collect_stats(step, None, pending.batch, pending.task_index, pending.extra)
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

    def _compute_sum(self, pending: PendingStep, scale: Tensor | None) -> tuple[NetworkStep, None]:
        losses, aux = pending.losses, pending.aux
        if not all_finite([losses.detach()]):
            return NetworkStep(losses.detach(), aux, finite=False), None
        self._backward_sum(pending.params, losses, scale)
        weights = self._sum_weights(losses.detach(), scale)
        return NetworkStep(losses.detach(), aux, finite=True, weights=weights), None

    def _backward_sum(
        self, params: dict[str, Tensor], losses: Tensor, scale: Tensor | None = None
    ) -> None:
        """``.grad`` of every parameter from one backward of sum_t w_t s_t L_t."""
        names = list(params)
        scaled = losses if scale is None else scale * losses
        grads = torch.autograd.grad(self._weighted_sum(scaled), [params[n] for n in names])
        for n, g in zip(names, grads, strict=True):
            params[n].grad = g

    def _sum_weights(self, losses: Tensor, scale: Tensor | None = None) -> Tensor | None:
        """The task weights a summed-loss step reports when aggregated: w (ones by default),
        times the loss scale s."""
        if self.aggregator is None:
            return None
        weights = self.task_weights if self.task_weights is not None else torch.ones_like(losses)
        return weights if scale is None else weights * scale

    def _compute_jacobian(
        self, pending: PendingStep, scale: Tensor | None
    ) -> tuple[NetworkStep, dict[str, Tensor]]:
        assert self.aggregator is not None and pending.grads is not None
        grads, losses, aux = pending.grads, pending.losses, pending.aux
        if not all_finite([losses, *grads.values()]):
            return NetworkStep(losses, aux, finite=False), grads
        params = self._params()
        if scale is None:
            shared, scaled_losses = grads, losses
        else:
            shared = {n: _scale_rows(grads[n], scale) for n in self.shared_names}
            scaled_losses = scale * losses
        try:
            write_aggregated_gradients(
                self.aggregator,
                shared,
                {n: params[n] for n in self.shared_names},
                scaled_losses,
                self.task_weights,
            )
        except NonFiniteDirectionError:
            return NetworkStep(losses, aux, finite=False), grads
        if self.specific_names:
            write_task_specific_gradients(
                self._weighted_task_gradients(grads, scale),
                {n: params[n] for n in self.specific_names},
            )
        return (
            NetworkStep(losses, aux, finite=True, weights=self.aggregator.last_weights),
            grads,
        )

    def _compute_representation(
        self, pending: PendingStep, scale: Tensor | None
    ) -> tuple[NetworkStep, None]:
        assert self.aggregator is not None and pending.features is not None
        params, features, aux = pending.params, pending.features, pending.aux
        raw = pending.losses
        if not all_finite([raw.detach()]):
            return NetworkStep(raw.detach(), aux, finite=False), None
        losses = raw if scale is None else scale * raw
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
            return NetworkStep(raw.detach(), aux, finite=False), None
        try:
            self.aggregator(
                representation_jacobian(feature_grads), losses.detach(), self.task_weights
            )
        except NonFiniteDirectionError:
            return NetworkStep(raw.detach(), aux, finite=False), None
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
        return NetworkStep(raw.detach(), aux, finite=True, weights=alpha), None
