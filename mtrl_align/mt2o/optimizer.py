"""MT2O: N scalarized subproblems optimized together with decaying parameter transfer.

A T-task problem is decomposed with N weight vectors lambda_i on the simplex
(:func:`~mtrl_align.mt2o.weights.simplex_weights`) into N scalar subproblems
``min_theta_i  lambda_i^T L(theta_i)`` (linear scalarization). One model copy per subproblem;
the copies live as stacked tensors [N, *shape] and their gradients come from one
``torch.func.vmap`` over ``grad(functional_call(...))`` (or a loop over copies for problems
that cannot be vmapped).

Multi-task gradient descent step t (the optimizer's update Delta is computed from the gradients
at theta^t; Adam/SGD state stays per copy -- both are element-wise, so one optimizer over the
stacked tensors equals N independent ones)::

    theta_i^{t+1} = sum_j S_ij^t theta_j^t + Delta_i(grad_i(theta_i^t))
    S^t = (1 - gamma_t) I + gamma_t P

P averages each subproblem's K nearest neighbours (by weight-vector distance) and the transfer
weight gamma_t decays to zero (linear or exponential schedule); floating-point buffers (e.g.
BatchNorm running statistics) are mixed with the same S. ``transfer_weight = 0`` gives
the baseline: the same N subproblems solved independently.

Progress is measured by the hypervolume (:mod:`.hypervolume`) of the N evaluated loss vectors
[N, T] w.r.t. the problem's reference point, every ``eval_every`` steps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from mtrl_align.device import resolve_device

from .hypervolume import hypervolume
from .problems import MT2OProblem, check_problem
from .weights import DECAYS, neighbours, simplex_weights, transfer_matrix, transfer_weight

OPTIMIZERS = ("adam", "sgd")
INITS = ("shared", "independent")
#: fractions of the baseline's final hypervolume reported by :meth:`Comparison.to_dict`
TARGET_FRACTIONS = (1.0, 0.999, 0.99)


@dataclass(frozen=True)
class MT2OConfig:
    """Settings of one MT2O (or baseline) run."""

    subproblems: int = 10  #: N weight vectors / model copies
    steps: int = 1000  #: optimizer steps
    lr: float = 1e-2  #: learning rate
    optimizer: str = "adam"  #: "adam" or "sgd"
    transfer_weight: float = 0.2  #: gamma_0 in [0, 1]; 0 = no transfer (baseline)
    transfer_decay: str = "linear"  #: "linear" (to 0 at horizon) or "exponential" (half-life)
    transfer_horizon: int | None = None  #: default: steps // 2
    neighbours: int = 2  #: K nearest subproblems each one draws parameters from
    init: str = "shared"  #: "shared": all copies start from one model; "independent": N draws
    eval_every: int | None = None  #: hypervolume every this many steps (default: steps // 200)
    seed: int = 0  #: seeds model initialization and batch sampling
    device: str = "cpu"  #: cpu, cuda or auto
    vectorize: bool | None = None  #: vmap over copies (default: problem.supports_vmap)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad setting."""
        if self.subproblems < 2:
            raise ValueError(f"subproblems must be >= 2, got {self.subproblems}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; choose from: {', '.join(OPTIMIZERS)}"
            )
        if not 0.0 <= self.transfer_weight <= 1.0:
            raise ValueError(f"transfer_weight must lie in [0, 1], got {self.transfer_weight}")
        if self.transfer_decay not in DECAYS:
            raise ValueError(
                f"unknown transfer_decay {self.transfer_decay!r}; choose from: {', '.join(DECAYS)}"
            )
        if self.transfer_horizon is not None and self.transfer_horizon <= 0:
            raise ValueError(f"transfer_horizon must be > 0, got {self.transfer_horizon}")
        if not 1 <= self.neighbours <= self.subproblems - 1:
            raise ValueError(
                f"neighbours must be between 1 and subproblems - 1 = {self.subproblems - 1}, "
                f"got {self.neighbours}"
            )
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose from: {', '.join(INITS)}")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")

    @property
    def horizon(self) -> int:
        return self.transfer_horizon or max(1, self.steps // 2)


@dataclass
class MT2OResult:
    """Hypervolume curve and evaluated loss vectors of one run.

    Attributes:
        weights: [N, T] weight vectors of the subproblems.
        eval_steps: [K] steps at which the copies were evaluated (0 and ``steps`` included).
        hypervolume: [K] hypervolume of the evaluated losses at those steps.
        losses: [K, N, T] evaluated per-task values of every copy.
        transfer: [K] transfer weight gamma_t in force at those steps.
        reference_point: [T].
        task_names: T names.
        config: the settings used.
        state: final stacked parameters and buffers {name: [N, ...]} (CPU); copy i loads
            into the problem's model with ``{k: v[i] for k, v in state.items()}``.
    """

    weights: np.ndarray
    eval_steps: np.ndarray
    hypervolume: np.ndarray
    losses: np.ndarray
    transfer: np.ndarray
    reference_point: np.ndarray
    task_names: tuple[str, ...]
    config: MT2OConfig
    state: dict[str, Tensor]

    @property
    def final_losses(self) -> np.ndarray:
        """[N, T] evaluated losses after the last step."""
        return self.losses[-1]

    def steps_to_reach(self, target: float) -> int | None:
        """First evaluated step whose hypervolume is >= ``target`` (None if never)."""
        tolerance = 1e-9 * max(1.0, abs(target))
        hits = np.nonzero(self.hypervolume >= target - tolerance)[0]
        return int(self.eval_steps[hits[0]]) if hits.size else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no parameters)."""
        return {
            "config": asdict(self.config),
            "task_names": list(self.task_names),
            "reference_point": self.reference_point.tolist(),
            "weights": self.weights.tolist(),
            "eval_steps": self.eval_steps.tolist(),
            "hypervolume": self.hypervolume.tolist(),
            "transfer": self.transfer.tolist(),
            "final_losses": self.final_losses.tolist(),
        }


def _stack_models(models: list[nn.Module], device: torch.device) -> tuple[dict, dict]:
    params = {
        name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]).to(device)
        for name, _ in models[0].named_parameters()
    }
    buffers = {
        name: torch.stack([dict(m.named_buffers())[name].detach() for m in models]).to(device)
        for name, _ in models[0].named_buffers()
    }
    return params, buffers


def _scalarized_loss_fn(problem: MT2OProblem, base: nn.Module) -> Callable:
    def scalarized(params: dict, buffers: dict, weight: Tensor, batch: Any):
        def forward(*args: Any, **kwargs: Any) -> Any:
            return functional_call(base, (params, buffers), args, kwargs)

        losses = problem.task_losses(forward, batch)
        return (weight.to(losses.dtype) * losses).sum(), losses

    return scalarized


def run_mt2o(
    problem: MT2OProblem,
    config: MT2OConfig,
    progress: Callable[[int], None] | None = None,
) -> MT2OResult:
    """Optimize the N subproblems of ``problem`` jointly (see the module docstring)."""
    check_problem(problem)
    config.validate()
    device = resolve_device(config.device)
    num_tasks = len(problem.task_names)
    weights = simplex_weights(config.subproblems, num_tasks)  # [N, T] float64
    neighbour_index = neighbours(weights, config.neighbours)
    reference = np.asarray(problem.reference_point, dtype=np.float64)

    init_gen = torch.Generator().manual_seed(config.seed)
    data_gen = torch.Generator().manual_seed(config.seed + 1)
    if config.init == "shared":
        first = problem.build_model(init_gen)
        models = [copy.deepcopy(first) for _ in range(config.subproblems)]
    else:
        models = [problem.build_model(init_gen) for _ in range(config.subproblems)]
    base = copy.deepcopy(models[0]).to(device)
    eval_model = copy.deepcopy(models[0]).to(device)
    stacked, buffers = _stack_models(models, device)
    params = {name: nn.Parameter(value) for name, value in stacked.items()}
    if not params:
        raise ValueError(f"problem {problem.name!r} built a model without parameters")
    param_dtype = next(iter(params.values())).dtype
    weights_dev = weights.to(device=device, dtype=param_dtype)

    opt_cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.SGD
    optimizer = opt_cls(list(params.values()), lr=config.lr)

    scalarized = _scalarized_loss_fn(problem, base)
    grad_fn = grad(scalarized, has_aux=True)
    vectorize = problem.supports_vmap if config.vectorize is None else config.vectorize
    batched_grad_fn = vmap(grad_fn, in_dims=(0, 0, 0, None)) if vectorize else None

    eval_every = config.eval_every or max(1, config.steps // 200)
    eval_steps: list[int] = []
    hv_curve: list[float] = []
    loss_history: list[np.ndarray] = []
    transfer_history: list[float] = []

    def evaluate(step: int, gamma: float) -> None:
        values = []
        for copy_index in range(config.subproblems):
            state = {name: p.detach()[copy_index] for name, p in params.items()}
            state.update({name: b[copy_index] for name, b in buffers.items()})
            eval_model.load_state_dict(state, strict=True)
            eval_model.eval()
            value = problem.evaluate(eval_model, device)
            values.append(torch.as_tensor(value).detach().double().cpu().reshape(-1))
        matrix = torch.stack(values).numpy()
        if matrix.shape != (config.subproblems, num_tasks):
            raise ValueError(
                f"problem {problem.name!r}.evaluate returned shape {matrix.shape[1:]}, "
                f"expected [{num_tasks}]"
            )
        if not np.isfinite(matrix).all():
            raise ValueError(
                f"non-finite evaluation of problem {problem.name!r} at step {step}: "
                f"{matrix.tolist()}"
            )
        eval_steps.append(step)
        loss_history.append(matrix)
        hv_curve.append(hypervolume(matrix, reference))
        transfer_history.append(gamma)

    base.train()
    for step in range(config.steps + 1):
        gamma = transfer_weight(step, config.transfer_weight, config.transfer_decay, config.horizon)
        if step % eval_every == 0 or step == config.steps:
            evaluate(step, gamma)
        if step == config.steps:
            break
        batch = problem.train_batch(step, data_gen, device)
        detached = {name: p.detach() for name, p in params.items()}
        if batched_grad_fn is not None:
            grads, losses = batched_grad_fn(detached, buffers, weights_dev, batch)
        else:
            per_copy = [
                grad_fn(
                    {name: v[i] for name, v in detached.items()},
                    {name: b[i] for name, b in buffers.items()},
                    weights_dev[i],
                    batch,
                )
                for i in range(config.subproblems)
            ]
            grads = {name: torch.stack([g[name] for g, _ in per_copy]) for name in detached}
            losses = torch.stack([value for _, value in per_copy])
        if not bool(torch.isfinite(losses).all()):
            bad = torch.nonzero(~torch.isfinite(losses).all(dim=1)).flatten().tolist()
            raise ValueError(
                f"non-finite task losses at step {step} for subproblem(s) {bad}: "
                f"{losses[bad].tolist()}"
            )
        with torch.no_grad():
            if gamma > 0:
                mix = transfer_matrix(neighbour_index, gamma).to(device=device, dtype=param_dtype)
                for p in params.values():
                    p.copy_(torch.tensordot(mix, p, dims=([1], [0])))
                for b in buffers.values():  # e.g. BatchNorm running statistics follow along
                    if b.is_floating_point():
                        b.copy_(torch.tensordot(mix.to(b.dtype), b, dims=([1], [0])))
            for name, p in params.items():
                p.grad = grads[name].detach().to(p.dtype)
        optimizer.step()
        if progress is not None:
            progress(step)

    return MT2OResult(
        weights=weights.numpy(),
        eval_steps=np.asarray(eval_steps),
        hypervolume=np.asarray(hv_curve),
        losses=np.stack(loss_history),
        transfer=np.asarray(transfer_history),
        reference_point=reference,
        task_names=tuple(problem.task_names),
        config=config,
        state={
            **{name: p.detach().cpu().clone() for name, p in params.items()},
            **{name: b.detach().cpu().clone() for name, b in buffers.items()},
        },
    )


@dataclass
class Comparison:
    """MT2O against the no-transfer baseline on the same subproblems, seed and init."""

    mt2o: MT2OResult
    baseline: MT2OResult

    @property
    def target(self) -> float:
        """The baseline's final hypervolume."""
        return float(self.baseline.hypervolume[-1])

    def steps_to_target(self, fraction: float = 1.0) -> dict[str, int | None]:
        """Steps each run needs to reach ``fraction`` x the baseline's final hypervolume."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
        target = fraction * self.target
        return {
            "mt2o": self.mt2o.steps_to_reach(target),
            "baseline": self.baseline.steps_to_reach(target),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_hypervolume": self.target,
            "steps_to_target": {
                str(fraction): self.steps_to_target(fraction) for fraction in TARGET_FRACTIONS
            },
            "mt2o": self.mt2o.to_dict(),
            "baseline": self.baseline.to_dict(),
        }


def compare_with_baseline(
    problem: MT2OProblem, config: MT2OConfig, progress: Callable[[int], None] | None = None
) -> Comparison:
    """Run MT2O with ``config`` and the same run with ``transfer_weight = 0``."""
    if config.transfer_weight <= 0:
        raise ValueError("compare_with_baseline needs transfer_weight > 0 for the MT2O run")
    mt2o = run_mt2o(problem, config, progress)
    baseline = run_mt2o(problem, replace(config, transfer_weight=0.0), progress)
    return Comparison(mt2o=mt2o, baseline=baseline)
