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
* :meth:`Aggregator.aggregate_blocks` takes J as per-parameter blocks [T, *shape_i] (what a
  vmapped per-task backward returns) and gives one direction per block. Weighting methods never
  concatenate the blocks: the Gram matrix is a sum over blocks and each block's direction is
  ``alpha @ block``, which saves a [T, n] copy (at T=50 and n=343k, a 69 MB allocation that the
  allocator page-faults in again on every update).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor


class NonFiniteDirectionError(ValueError):
    """An aggregator produced a NaN/inf direction (J, or the method's arithmetic, overflowed).

    Callers that skip bad updates (the SAC agent) catch this one and restore the aggregator's
    state; everywhere else it is an ordinary ``ValueError``.
    """


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
    #: True where the method is only defined for losses >= 0 (its objective takes logs or
    #: ratios of raw losses, or is unbounded below for L < 0). Such a method raises on a
    #: negative loss, and the SAC agent refuses to aggregate the actor with it (the actor
    #: loss alpha log pi - Q is negative once Q is large); see docs/aggregation.md.
    requires_positive_losses: bool = False

    def __init__(self, task_weights: Sequence[float] | Tensor | None = None) -> None:
        # a Python sequence is kept in float64 (its exact values) and cast to J's dtype per
        # call; float32 here would round 0.1 to 0.10000000149 before a float64 J sees it
        self.task_weights = None if task_weights is None else _as_weights(task_weights)
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
        self._check_directions([direction])
        return direction

    def aggregate_blocks(
        self, blocks: Sequence[Tensor], losses: Tensor | None = None, weights: Tensor | None = None
    ) -> list[Tensor]:
        """The same as calling the aggregator on J = cat(b.reshape(T, -1) for b in blocks).

        Args:
            blocks: per-parameter Jacobian blocks, block i of shape [T, *shape_i] (row t =
                gradient of task t's loss w.r.t. parameter i).
            losses, weights: as for ``__call__``.

        Returns:
            One new tensor per block, shape ``shape_i``: that parameter's part of the direction.
        """
        num_tasks = self._check_blocks(blocks)
        blocks = [b.detach() for b in blocks]
        losses = self._check_losses(losses, num_tasks, blocks[0])
        task_weights = self._resolve_weights(weights, num_tasks, blocks[0])
        directions = self.aggregate_flat_blocks(
            [b.reshape(num_tasks, -1) for b in blocks], losses, task_weights
        )
        self._check_directions(directions)
        return [d.view(b.shape[1:]) for d, b in zip(directions, blocks, strict=True)]

    def aggregate(self, J: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        """Method-specific part; inputs already validated. ``task_weights`` [T]."""
        raise NotImplementedError

    def aggregate_flat_blocks(
        self, flat: list[Tensor], losses: Tensor | None, task_weights: Tensor
    ) -> list[Tensor]:
        """Blockwise method-specific part: J's column blocks ``flat[i]`` [T, n_i] (inputs
        validated) -> new direction blocks [n_i]. Default: concatenate and :meth:`aggregate`."""
        direction = self.aggregate(torch.cat(flat, dim=1), losses, task_weights)
        return list(direction.split([f.shape[1] for f in flat]))

    def _check_directions(self, directions: Sequence[Tensor]) -> None:
        if not all_finite(directions):
            raise NonFiniteDirectionError(
                f"aggregator {self.name!r} produced a non-finite direction: J contains NaN or inf"
            )

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

    def _check_blocks(self, blocks: Sequence[Tensor]) -> int:
        """Validate per-parameter Jacobian blocks [T, *shape_i]; returns T."""
        if isinstance(blocks, Tensor) or not isinstance(blocks, Sequence) or not blocks:
            raise ValueError(
                "blocks must be a non-empty list of per-parameter Jacobian blocks [T, *shape]"
            )
        first = blocks[0]
        for i, b in enumerate(blocks):
            if not isinstance(b, Tensor) or b.dim() == 0 or not b.is_floating_point():
                got = (b.dtype, tuple(b.shape)) if isinstance(b, Tensor) else type(b).__name__
                raise ValueError(f"block {i} must be a floating-point tensor [T, ...], got {got}")
            if b.shape[0] != first.shape[0] or b.shape[0] == 0:
                raise ValueError(
                    f"every block needs the same task dim T >= 1: block 0 has "
                    f"{first.shape[0]}, block {i} has {b.shape[0]}"
                )
            if b.dtype != first.dtype or b.device != first.device:
                raise ValueError(
                    f"block {i} is {b.dtype} on {b.device}, block 0 is {first.dtype} on "
                    f"{first.device}; all blocks must share dtype and device"
                )
        return first.shape[0]

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
        if self.requires_positive_losses and bool((losses < 0).any()):
            raise ValueError(
                f"aggregator {self.name!r} is only defined for losses >= 0, got "
                f"{[round(v, 6) for v in losses.tolist()]}; a negative loss (e.g. the SAC actor "
                "loss) makes its objective meaningless: aggregate only non-negative losses "
                "(aggregation.networks=[critic]) or choose another method"
            )
        return losses

    def _resolve_weights(self, weights: Tensor | None, num_tasks: int, J: Tensor) -> Tensor:
        source = "weights"
        if weights is None:
            weights, source = self.task_weights, "task_weights"
        if weights is None:
            return torch.ones(num_tasks, dtype=J.dtype, device=J.device)
        if not self.accepts_weights:
            raise ValueError(f"aggregator {self.name!r} does not use pre-defined task weights")
        weights = _as_weights(weights).detach().to(dtype=J.dtype, device=J.device)
        if weights.shape != (num_tasks,):
            raise ValueError(
                f"{source} has shape {tuple(weights.shape)} but J has {num_tasks} task(s); "
                f"expected [{num_tasks}]"
            )
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError(f"{source} must be finite and >= 0, got {weights.tolist()}")
        return weights


def _as_weights(weights: Sequence[float] | Tensor) -> Tensor:
    """Task weights as a tensor: a tensor as it is, anything else in float64 (no rounding
    before the cast to J's dtype)."""
    if isinstance(weights, Tensor):
        return weights
    return torch.as_tensor(weights, dtype=torch.float64)


class WeightingAggregator(Aggregator):
    """An aggregator whose direction is ``J^T alpha`` with weights ``alpha`` [T] from the Gram.

    Subclasses implement :meth:`weights`; G = J J^T is computed once (one [T, n] x [n, T] matmul,
    or a sum of per-block products in :meth:`aggregate_blocks`) and kept as ``last_gram``
    [T, T] (pass it to ``gradient_stats_from_gram`` to log the stability metrics without
    recomputing it). Methods whose weights ignore the Gram set ``uses_gram = False``; they skip
    the product and leave ``last_gram`` None.
    """

    last_gram: Tensor | None = None
    #: False where :meth:`weights` ignores the Gram matrix (it then receives None)
    uses_gram: bool = True

    def weights(self, gram: Tensor | None, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        """Task weights alpha [T] from the Gram matrix [T, T] (None if ``uses_gram`` is False)."""
        raise NotImplementedError

    def aggregate(self, J: Tensor, losses: Tensor | None, task_weights: Tensor) -> Tensor:
        alpha = self._weights_for(lambda: gram_matrix(J), losses, task_weights, J)
        return alpha @ J

    def aggregate_flat_blocks(
        self, flat: list[Tensor], losses: Tensor | None, task_weights: Tensor
    ) -> list[Tensor]:
        """Without concatenating: the Gram matrix is summed over blocks, then alpha @ block."""
        alpha = self._weights_for(lambda: blocks_gram(flat), losses, task_weights, flat[0])
        return [alpha @ f for f in flat]

    def _weights_for(
        self,
        make_gram: Callable[[], Tensor],
        losses: Tensor | None,
        task_weights: Tensor,
        like: Tensor,
    ) -> Tensor:
        """Weights alpha [T] in the dtype and on the device of ``like``; sets ``last_gram``
        and ``last_weights``. A Gram matrix with NaN/inf (J has some) raises ``ValueError``
        before :meth:`weights` can touch the method's state."""
        gram = None
        if self.uses_gram:
            gram = make_gram()
            finite_or_raise(gram)
        self.last_gram = gram
        alpha = self.weights(gram, losses, task_weights).to(device=like.device, dtype=like.dtype)
        self.last_weights = alpha.detach()
        return alpha


#: up to this many tasks the Gram matrix is assembled from three half-size products
SPLIT_GRAM_MAX_TASKS = 16


def gram_matrix(J: Tensor) -> Tensor:
    """G = J J^T [T, T] in J's dtype (symmetrised); the only O(T^2 n) step of a weighting.

    If the product overflows (entries of J beyond ~1e19 in float32) while J itself is finite,
    it is recomputed on J / max|J| and rescaled in float64, so huge but finite gradients still
    give a finite Gram matrix (float64 then).
    """
    return blocks_gram([J])


def blocks_gram(blocks: Sequence[Tensor]) -> Tensor:
    """:func:`gram_matrix` of J = cat(b.reshape(T, -1)) for blocks [T, *shape_i], summed per
    block (no [T, n] copy), with the same overflow handling."""
    num_tasks = blocks[0].shape[0]
    flat = [b.reshape(num_tasks, -1) for b in blocks]
    gram = _accumulate_gram(flat)
    if not bool(torch.isfinite(gram).all()) and all_finite(flat):
        scale = max(float(f.abs().max()) for f in flat)
        gram = _accumulate_gram([f / scale for f in flat]).to(torch.float64) * scale**2
    return 0.5 * (gram + gram.T)


def _accumulate_gram(flat: Sequence[Tensor]) -> Tensor:
    """sum_i F_i F_i^T for F_i [T, n_i]. For 2 <= T <= SPLIT_GRAM_MAX_TASKS the rows are split
    in halves (A, B) and only A A^T, B B^T and A B^T are formed: 3/4 of the work, and on the
    CPU these short-and-wide products run faster than one [T, n] x [n, T] product (measured:
    2.4 ms instead of 3.3 ms for T = 10, n = 343k, one thread)."""
    num_tasks = flat[0].shape[0]
    if not 2 <= num_tasks <= SPLIT_GRAM_MAX_TASKS:
        gram = flat[0] @ flat[0].T
        for f in flat[1:]:
            gram.addmm_(f, f.T)
        return gram
    h = num_tasks // 2
    top = bottom = cross = None
    for f in flat:
        a, b = f[:h], f[h:]
        if top is None:
            top, bottom, cross = a @ a.T, b @ b.T, a @ b.T
        else:
            top.addmm_(a, a.T)
            bottom.addmm_(b, b.T)
            cross.addmm_(a, b.T)
    return torch.cat([torch.cat([top, cross], dim=1), torch.cat([cross.T, bottom], dim=1)])


def all_finite(tensors: Sequence[Tensor]) -> bool:
    """True when no tensor holds NaN or inf (one host sync in the common case).

    Sums each tensor: NaN and inf propagate through a sum, and one reduction is several times
    cheaper than ``isfinite(t).all()``. Only when some sum is not finite (NaN/inf inside, or a
    sum of huge finite values that overflowed) is the exact elementwise test run.
    """
    if not tensors:
        return True
    sums = torch.stack([t.detach().sum() for t in tensors])
    if bool(torch.isfinite(sums).all()):
        return True
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def finite_or_raise(gram: Tensor) -> None:
    """Raise ``ValueError`` if the Gram matrix (hence J) contains NaN or inf."""
    if not bool(torch.isfinite(gram).all()):
        raise ValueError(
            "J contains NaN or inf (its Gram matrix is not finite); check the task losses"
        )
