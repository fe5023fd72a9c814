"""Per-task gradients of shared parameters, and writing an update back into ``.grad``.

A multi-task step has T losses L_1..L_T. For the shared parameters (n numbers in total) their
gradients form the Jacobian ``J`` of shape [T, n] (row t = dL_t/dtheta). Two ways to get it:

* :func:`jacobian_from_losses` -- generic: the T losses come from one forward pass; one batched
  backward (``is_grads_batched``) returns all T rows at once.
* :func:`task_sliced_gradients` -- the fast path for losses that are one function applied to
  task-sliced batches (multi-task RL: the batch is [T, B, ...]): ``torch.func.vmap`` over tasks of
  ``torch.func.grad_and_value``, i.e. one fused forward/backward computing all T gradients.

After aggregation (:mod:`mtrl_align.aggregation`) the direction [n] goes back into ``.grad`` of
the shared parameters with :func:`write_shared_direction`; task-specific parameters receive the
sum over tasks of their per-task gradients with :func:`write_task_specific_gradients`.
:func:`write_aggregated_gradients` does flatten + aggregate + write-back in one go on the
per-parameter gradients of :func:`task_sliced_gradients` without building J (weighting methods
sum the Gram matrix over parameters and write ``alpha @ block`` straight into ``.grad``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.func import grad_and_value, vmap

from mtrl_align.aggregation import Aggregator

__all__ = [
    "jacobian_from_losses",
    "task_sliced_gradients",
    "flatten_task_gradients",
    "write_shared_direction",
    "write_aggregated_gradients",
    "write_task_specific_gradients",
    "check_finite_losses",
    "select_task",
]


def select_task(stacked: Tensor, task_index: Tensor) -> Tensor:
    """``stacked[task_index]`` for a [T, ...] tensor that also works inside ``vmap``.

    Plain indexing with the 0-dim ``task_index`` given to a :func:`task_sliced_gradients` loss
    would call ``.item()``; ``index_select`` does not.
    """
    return torch.index_select(stacked, 0, task_index.reshape(1)).squeeze(0)


def check_finite_losses(losses: Tensor, task_names: Sequence[str] | None = None) -> None:
    """Raise ``ValueError`` naming the tasks whose loss is NaN or inf. ``losses``: [T]."""
    finite = torch.isfinite(losses.detach())
    if bool(finite.all()):
        return
    bad = torch.nonzero(~finite).flatten().tolist()
    labels = [task_names[i] if task_names is not None else str(i) for i in bad]
    values = [float(losses.detach()[i]) for i in bad]
    raise ValueError(
        f"non-finite loss for task(s) {labels} (values {values}); "
        "all per-task losses must be finite"
    )


def jacobian_from_losses(
    losses: Tensor,
    params: Sequence[Tensor],
    *,
    retain_graph: bool = False,
    check_finite: bool = True,
) -> Tensor:
    """Jacobian [T, n] of ``losses`` [T] w.r.t. ``params`` (flattened and concatenated in order).

    Uses one batched backward (``torch.autograd.grad(..., is_grads_batched=True)``) with the
    identity [T, T] as the batch of output gradients. If an operation in the graph has no
    batching rule, falls back (with a warning) to T ordinary backward passes. Parameters that
    do not influence the losses get zero columns.
    """
    if losses.dim() != 1 or losses.numel() == 0:
        raise ValueError(f"losses must have shape [T] with T >= 1, got {tuple(losses.shape)}")
    params = list(params)
    if not params:
        raise ValueError("params is empty; pass the shared parameters to differentiate")
    if not losses.requires_grad:
        raise ValueError("losses do not require grad; compute them from the parameters first")
    if check_finite:
        check_finite_losses(losses)
    num_tasks = losses.numel()
    eye = torch.eye(num_tasks, dtype=losses.dtype, device=losses.device)
    try:
        grads = torch.autograd.grad(
            losses,
            params,
            grad_outputs=eye,
            is_grads_batched=True,
            retain_graph=retain_graph,
            allow_unused=True,
        )
    except RuntimeError as err:  # an op without a vmap rule in the backward graph
        warnings.warn(
            f"batched backward failed ({err}); falling back to {num_tasks} backward passes",
            RuntimeWarning,
            stacklevel=2,
        )
        rows = []
        for t in range(num_tasks):
            rows.append(
                torch.autograd.grad(
                    losses[t],
                    params,
                    retain_graph=retain_graph or t < num_tasks - 1,
                    allow_unused=True,
                )
            )
        grads = tuple(
            torch.stack([row[i] if row[i] is not None else torch.zeros_like(p) for row in rows])
            for i, p in enumerate(params)
        )
    columns = [
        (
            g
            if g is not None
            else torch.zeros((num_tasks,) + p.shape, dtype=p.dtype, device=p.device)
        ).reshape(num_tasks, -1)
        for g, p in zip(grads, params, strict=True)
    ]
    return torch.cat(columns, dim=1)


def _leading_sizes(tree: Any) -> set[int]:
    leaves, _ = torch.utils._pytree.tree_flatten(tree)
    return {leaf.shape[0] for leaf in leaves if isinstance(leaf, Tensor) and leaf.dim() > 0}


def task_sliced_gradients(
    loss_fn: Callable[..., tuple[Tensor, Any]],
    params: Mapping[str, Tensor],
    task_batches: Any,
    *extra: Any,
    check_finite: bool = True,
) -> tuple[dict[str, Tensor], Tensor, Any]:
    """Per-task gradients of a loss applied to task-sliced batches, fused with ``vmap``.

    Args:
        loss_fn: ``loss_fn(params, batch_t, task_index, *extra) -> (loss_t, aux_t)`` computes
            ONE task's scalar loss from that task's slice ``batch_t`` (each tensor of
            ``task_batches`` without its leading T dim); ``task_index`` is a 0-dim int64 tensor
            (index task-specific [T, ...] parameters with
            ``select_task(params["heads"], task_index)``;
            plain ``[task_index]`` indexing is not vmap-compatible).
            Use ``torch.func.functional_call`` to run modules with ``params``.
        params: name -> tensor, the parameters to differentiate (shared and task-specific).
        task_batches: a pytree of tensors with a leading task dim T (e.g. a NamedTuple batch
            ``obs [T, B, o]``, ...).
        *extra: passed unchanged to every call (not vmapped), e.g. target-network parameters.
        check_finite: raise ``ValueError`` naming the task if a loss is NaN or inf.

    Returns:
        ``(grads, losses, aux)``: ``grads[name]`` has shape [T, *params[name].shape] (row t =
        gradient of task t's loss), ``losses`` [T] (detached), ``aux`` with a leading T dim.
    """
    sizes = _leading_sizes(task_batches)
    if len(sizes) != 1:
        raise ValueError(
            "every tensor in task_batches needs the same leading task dim T; "
            f"found leading sizes {sorted(sizes)}"
        )
    (num_tasks,) = sizes
    if not params:
        raise ValueError("params is empty; pass the parameters to differentiate")
    first = next(iter(params.values()))
    task_index = torch.arange(num_tasks, device=first.device)
    primal = {name: p.detach() for name, p in params.items()}
    per_task = grad_and_value(loss_fn, argnums=0, has_aux=True)
    in_dims = (None, 0, 0) + (None,) * len(extra)
    grads, (losses, aux) = vmap(per_task, in_dims=in_dims, randomness="different")(
        primal, task_batches, task_index, *extra
    )
    if losses.shape != (num_tasks,):
        raise ValueError(
            "loss_fn must return a scalar loss per task; "
            f"got per-task shape {tuple(losses.shape[1:])}"
        )
    if check_finite:
        check_finite_losses(losses)
    return dict(grads), losses.detach(), aux


def flatten_task_gradients(grads: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """Concatenate per-task gradients ``grads[name]`` [T, *shape] of ``names`` into J [T, n]."""
    missing = [name for name in names if name not in grads]
    if missing:
        raise ValueError(f"no gradient for parameter(s) {missing}; available: {sorted(grads)}")
    if not names:
        raise ValueError("names is empty; list the shared parameters to flatten")
    sizes = {name: grads[name].shape[0] for name in names}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"per-task gradients disagree on the number of tasks: {sizes}")
    num_tasks = next(iter(sizes.values()))
    return torch.cat([grads[name].reshape(num_tasks, -1) for name in names], dim=1)


def write_shared_direction(
    direction: Tensor, params: Sequence[Tensor], *, accumulate: bool = False
) -> None:
    """Write ``direction`` [n] into ``.grad`` of ``params`` (same order and sizes as in J).

    Overwrites existing gradients unless ``accumulate`` is True.
    """
    params = list(params)
    total = sum(p.numel() for p in params)
    if direction.dim() != 1 or direction.numel() != total:
        raise ValueError(
            f"direction has shape {tuple(direction.shape)} but the parameters hold {total} "
            "numbers; expected a vector [n] in the same order as the Jacobian columns"
        )
    offset = 0
    for p in params:
        chunk = direction[offset : offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
        _set_grad(p, chunk, accumulate)


def write_aggregated_gradients(
    aggregator: Aggregator,
    grads: Mapping[str, Tensor],
    params: Mapping[str, Tensor],
    losses: Tensor | None = None,
    weights: Tensor | None = None,
) -> None:
    """Aggregate the per-task gradients of ``params`` and write the result into their ``.grad``.

    Equivalent to ``write_shared_direction(aggregator(flatten_task_gradients(grads, names),
    losses, weights), params)`` with ``names = list(params)``, but goes through
    :meth:`~mtrl_align.aggregation.Aggregator.aggregate_blocks`, so weighting methods never
    build the [T, n] Jacobian.

    Args:
        aggregator: the aggregator (its state, ``last_weights`` and ``stats`` update as usual).
        grads: name -> per-task gradient [T, *shape] (e.g. from :func:`task_sliced_gradients`).
        params: name -> parameter, the shared parameters to aggregate; their order defines J's
            column order.
        losses, weights: per-task losses [T] and pre-defined task weights [T], as for the
            aggregator's ``__call__``.
    """
    missing = [name for name in params if name not in grads]
    if missing:
        raise ValueError(f"no gradient for parameter(s) {missing}; available: {sorted(grads)}")
    if not params:
        raise ValueError("params is empty; pass the shared parameters to aggregate")
    for name, p in params.items():
        if tuple(grads[name].shape[1:]) != tuple(p.shape):
            raise ValueError(
                f"per-task gradient of {name!r} has shape {tuple(grads[name].shape)}, expected "
                f"[T, {', '.join(map(str, p.shape))}]"
            )
    directions = aggregator.aggregate_blocks([grads[name] for name in params], losses, weights)
    for p, d in zip(params.values(), directions, strict=True):
        if p.grad is None:
            p.grad = d.to(p.dtype)  # the aggregator returns new tensors: no copy needed
        else:
            p.grad.copy_(d)


def write_task_specific_gradients(
    grads: Mapping[str, Tensor], params: Mapping[str, Tensor], *, accumulate: bool = False
) -> None:
    """Give each parameter in ``params`` the sum over tasks of ``grads[name]`` [T, *shape].

    For a parameter used by one task only (a task head, or a slice of a [T, ...] head tensor
    indexed by the task) the other tasks' gradients are zero, so it receives its own task's
    gradient.
    """
    for name, p in params.items():
        if name not in grads:
            raise ValueError(f"no per-task gradient for parameter {name!r}; have {sorted(grads)}")
        g = grads[name]
        if tuple(g.shape[1:]) != tuple(p.shape):
            raise ValueError(
                f"per-task gradient of {name!r} has shape {tuple(g.shape)}, expected "
                f"[T, {', '.join(map(str, p.shape))}]"
            )
        _set_grad(p, g.sum(dim=0).to(p.dtype), accumulate)


def _set_grad(p: Tensor, value: Tensor, accumulate: bool) -> None:
    if p.grad is None:
        p.grad = value.detach().clone()
    elif accumulate:
        p.grad.add_(value.detach())
    else:
        p.grad.copy_(value.detach())
