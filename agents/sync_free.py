"""Device-side pieces of the sync-free SAC update (``train.sync_free``).

The per-update path decides on the host whether an update is skipped (a NaN/inf loss or
gradient): every such check reads a device value, i.e. waits for the GPU. The sync-free path
computes one finiteness flag ``ok`` (a 0-dim bool tensor) on the device and applies every
state change masked by it, so nothing in the update waits for the device:

* :func:`finite_flag`: ``ok`` over losses and gradients (inf-norms, so no overflow of a sum);
* :func:`masked_adam_step`: Adam on the optimiser's own state (``exp_avg``, ``exp_avg_sq``,
  ``step``; the ``torch.optim.Adam`` layout, so checkpoints are interchangeable) that leaves
  parameters and moments bit-for-bit unchanged where ``ok`` is false;
* :func:`masked_lerp_`: the Polyak update with a device weight (0 leaves the targets as they are).

With ``ok`` true the results equal ``torch.optim.Adam`` up to float rounding (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def finite_flag(tensors: Sequence[Tensor]) -> Tensor:
    """0-dim bool tensor: every entry of every tensor is finite (computed on the device).

    Uses the inf-norm (max |x|) of each tensor: NaN and inf propagate into it and a finite
    tensor's max is finite, so unlike a sum of squares it cannot overflow.
    """
    norms = torch._foreach_norm(list(tensors), float("inf"))
    return torch.isfinite(torch.stack(norms)).all()


def zero_where_not(ok: Tensor, tensors: Sequence[Tensor]) -> list[Tensor]:
    """The tensors, or zeros of their shape where ``ok`` is false (NaN-safe, unlike ``* ok``)."""
    zero = torch.zeros((), dtype=tensors[0].dtype, device=tensors[0].device)
    return [torch.where(ok, t, zero) for t in tensors]


UNSUPPORTED_ADAM_OPTIONS = {"amsgrad": False, "maximize": False}


@torch.no_grad()
def masked_adam_step(optimizer: torch.optim.Adam, ok: Tensor) -> None:
    """One Adam step of every parameter with a ``.grad``, applied only where ``ok`` is true.

    Same update as ``torch.optim.Adam`` (no AMSGrad; weight decay only decoupled, as
    ``torch.optim.AdamW``: ``p <- p (1 - lr wd)`` first): ``m <- b1 m + (1-b1) g``,
    ``v <- b2 v + (1-b2) g^2``, ``p <- p - lr/(1-b1^k) * m / (sqrt(v)/sqrt(1-b2^k) + eps)``
    with the step count k kept as a tensor on the parameter's device. Where ``ok`` is false the
    gradient is replaced by zeros before use and every change is multiplied by 0, so ``p``,
    ``m``, ``v`` and ``k`` keep their exact values.

    Raises:
        ValueError: an optimiser option this step does not implement.
    """
    for group in optimizer.param_groups:
        for key, neutral in UNSUPPORTED_ADAM_OPTIONS.items():
            if group.get(key, neutral) != neutral:
                raise ValueError(
                    f"the sync-free update implements plain Adam; optimiser option "
                    f"{key}={group[key]!r} is not supported (allowed: {neutral!r})"
                )
        decay = float(group.get("weight_decay", 0.0))
        if decay and not group.get("decoupled_weight_decay", False):
            raise ValueError(
                f"the sync-free update implements decoupled weight decay (AdamW) only; Adam's "
                f"L2 weight_decay={decay!r} is not supported"
            )
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        beta1, beta2 = group["betas"]
        lr, eps = float(group["lr"]), float(group["eps"])
        if decay:
            torch._foreach_mul_(params, 1.0 - ok.to(params[0].dtype) * (lr * decay))
        states = [_adam_state(optimizer, p) for p in params]
        grads = zero_where_not(ok, [p.grad for p in params])
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        okf = ok.to(params[0].dtype)
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, [okf.to(st.dtype) for st in steps])
        torch._foreach_lerp_(exp_avgs, grads, [okf * (1 - beta1)] * len(params))
        squares = torch._foreach_mul(grads, grads)
        torch._foreach_lerp_(exp_avg_sqs, squares, [okf * (1 - beta2)] * len(params))
        # Per-parameter bias corrections from the device step counts (as torch's capturable
        # Adam); a count of 0 (nothing applied yet, ok false) is clamped so nothing divides by 0.
        counts = torch._foreach_maximum(steps, 1.0)
        bias1 = torch._foreach_pow(beta1, counts)  # beta1^k
        torch._foreach_neg_(bias1)
        torch._foreach_add_(bias1, 1.0)  # 1 - beta1^k
        step_sizes = torch._foreach_reciprocal(bias1)
        torch._foreach_mul_(step_sizes, -lr * okf)  # -ok lr / (1 - beta1^k)
        bias2 = torch._foreach_pow(beta2, counts)
        torch._foreach_neg_(bias2)
        torch._foreach_add_(bias2, 1.0)
        torch._foreach_sqrt_(bias2)  # sqrt(1 - beta2^k)
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denoms, bias2)
        torch._foreach_add_(denoms, eps)
        updates = torch._foreach_div(exp_avgs, denoms)
        torch._foreach_mul_(updates, step_sizes)
        torch._foreach_add_(params, updates)


def _adam_state(optimizer: torch.optim.Adam, param: Tensor) -> dict[str, Tensor]:
    """The parameter's Adam state, created as torch.optim.Adam would (step count moved to the
    parameter's device, so that counting it needs no host)."""
    state = optimizer.state[param]
    if not state:
        state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    elif state["step"].device != param.device:
        state["step"] = state["step"].to(param.device)
    return state


@torch.no_grad()
def masked_lerp_(target: Sequence[Tensor], online: Sequence[Tensor], weight: Tensor) -> None:
    """``target <- target + weight (online - target)`` in place, with a 0-dim device weight."""
    torch._foreach_lerp_(list(target), list(online), [weight] * len(target))
