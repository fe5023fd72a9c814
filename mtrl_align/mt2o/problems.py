"""Problems for MT2O: a torch model plus T per-task losses, behind one small protocol.

The MT2O optimizer (:mod:`mtrl_align.mt2o.optimizer`) keeps N copies of the problem's model,
one per scalarized subproblem, as stacked parameter tensors [N, *shape]. It needs from a
problem only what :class:`MT2OProblem` lists:

``name: str`` and ``task_names: tuple[str, ...]`` (T names).

``reference_point: tuple[float, ...]``
    [T] hypervolume reference point in the space of :meth:`evaluate` outputs (lower is
    better for every task; the point must be worse than the losses of interest).

``supports_vmap: bool``
    True when :meth:`task_losses` can run under ``torch.func.vmap`` over the N copies
    (pure functions of the parameters; no in-place updates of buffers such as BatchNorm
    running statistics, no ``.item()``/data-dependent Python control flow). False makes the
    optimizer loop over the copies instead (same results, slower).

``build_model(generator: torch.Generator) -> torch.nn.Module``
    A freshly initialized model (CPU); randomness only from ``generator``. The optimizer
    calls it once ("shared" init: every copy starts from the same model) or N times
    ("independent" init).

``train_batch(step: int, generator: torch.Generator, device: torch.device) -> Any``
    The training batch for this step, shared by all N copies: a pytree of tensors on
    ``device`` (or ``None`` for problems without data, such as the synthetic one).

``task_losses(forward: Callable[..., Any], batch: Any) -> Tensor``
    The T task losses [T] for one copy. ``forward`` behaves like calling the model
    (``forward(*inputs)``), evaluated with that copy's parameters and buffers via
    ``torch.func.functional_call``; do not call the model object directly.

``evaluate(model: torch.nn.Module, device: torch.device) -> Tensor``
    [T] per-task values to minimize (e.g. validation losses) for one trained copy loaded
    into a real module (in eval mode); used for the hypervolume curve.

The registry: :func:`make_problem` builds a problem by name. ``"synthetic"`` is built in;
vision names (``"nyuv2"``, ``"cityscapes2"``, ``"cityscapes3"``, ...) are resolved lazily
through ``mtrl_align.vision.mt2o_problems.make_problem(name, **options)``, which implements
this protocol for the vision models; :func:`register_problem` adds more.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from mtrl_align.synthetic.problem import PAPER_STARTS, synthetic_losses

#: names resolved through mtrl_align.vision.mt2o_problems
VISION_PROBLEMS = ("nyuv2", "cityscapes2", "cityscapes3")


@runtime_checkable
class MT2OProblem(Protocol):
    """What the MT2O optimizer needs from a problem (see the module docstring)."""

    name: str
    task_names: tuple[str, ...]
    reference_point: tuple[float, ...]
    supports_vmap: bool

    def build_model(self, generator: torch.Generator) -> nn.Module: ...

    def train_batch(self, step: int, generator: torch.Generator, device: torch.device) -> Any: ...

    def task_losses(self, forward: Callable[..., Any], batch: Any) -> Tensor: ...

    def evaluate(self, model: nn.Module, device: torch.device) -> Tensor: ...


class PointModel(nn.Module):
    """The "model" of the synthetic problem: one point theta [2]; ``forward()`` returns it."""

    def __init__(self, theta: Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self) -> Tensor:
        return self.theta


class SyntheticProblem:
    """The synthetic two-task benchmark (:mod:`mtrl_align.synthetic.problem`) as an MT2O problem.

    Options:
        start: fixed initial point (x, y); default ``None`` draws each model's point uniformly
            from ``[-init_range, init_range]^2`` with the given generator.
        init_range: half-width of the random initialization square (default 10).
        reference_point: hypervolume reference point (default (0, 0): the losses of the Pareto
            front range over [-20, -0.4]).
    """

    name = "synthetic"
    task_names = ("L1", "L2")
    supports_vmap = True

    def __init__(
        self,
        start: tuple[float, float] | None = None,
        init_range: float = 10.0,
        reference_point: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        if start is not None and len(tuple(start)) != 2:
            raise ValueError(f"start must be a pair (x, y), got {start!r}")
        if not init_range > 0:
            raise ValueError(f"init_range must be > 0, got {init_range}")
        if len(tuple(reference_point)) != 2:
            raise ValueError(f"reference_point must have 2 entries, got {reference_point!r}")
        self.start = None if start is None else tuple(float(v) for v in start)
        self.init_range = float(init_range)
        self.reference_point = tuple(float(v) for v in reference_point)

    def build_model(self, generator: torch.Generator) -> nn.Module:
        if self.start is not None:
            theta = torch.tensor(self.start, dtype=torch.float32)
        else:
            theta = (torch.rand(2, generator=generator) * 2.0 - 1.0) * self.init_range
        return PointModel(theta)

    def train_batch(self, step: int, generator: torch.Generator, device: torch.device) -> None:
        return None

    def task_losses(self, forward: Callable[..., Any], batch: Any) -> Tensor:
        return synthetic_losses(forward())

    def evaluate(self, model: nn.Module, device: torch.device) -> Tensor:
        with torch.no_grad():
            return synthetic_losses(model())


ProblemFactory = Callable[..., MT2OProblem]

_REGISTRY: dict[str, ProblemFactory] = {"synthetic": SyntheticProblem}


def register_problem(name: str, factory: ProblemFactory) -> None:
    """Make ``make_problem(name, **options)`` call ``factory(**options)``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"problem name must be a non-empty string, got {name!r}")
    _REGISTRY[name] = factory


def available_problems() -> list[str]:
    """Names accepted by :func:`make_problem` (built-in, registered, and vision names)."""
    return sorted(set(_REGISTRY) | set(VISION_PROBLEMS))


def make_problem(name: str, **options: Any) -> MT2OProblem:
    """Build problem ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    if name in _REGISTRY:
        problem = _REGISTRY[name](**options)
    elif name in VISION_PROBLEMS:
        try:
            module = importlib.import_module("mtrl_align.vision.mt2o_problems")
        except ModuleNotFoundError as error:
            raise ValueError(
                f"problem {name!r} needs mtrl_align.vision.mt2o_problems, which is not "
                f"available ({error}); built-in problems: {', '.join(sorted(_REGISTRY))}"
            ) from None
        problem = module.make_problem(name, **options)
    else:
        raise ValueError(
            f"unknown MT2O problem {name!r}; choose from: {', '.join(available_problems())}"
        )
    check_problem(problem)
    return problem


def check_problem(problem: Any) -> None:
    """Raise ``ValueError`` naming what ``problem`` lacks from :class:`MT2OProblem`."""
    missing = [
        attr
        for attr in (
            "name",
            "task_names",
            "reference_point",
            "supports_vmap",
            "build_model",
            "train_batch",
            "task_losses",
            "evaluate",
        )
        if not hasattr(problem, attr)
    ]
    if missing:
        raise ValueError(
            f"{type(problem).__name__} is not an MT2O problem: missing {', '.join(missing)}"
        )
    if len(problem.reference_point) != len(problem.task_names):
        raise ValueError(
            f"problem {problem.name!r}: reference_point has {len(problem.reference_point)} "
            f"entries but there are {len(problem.task_names)} tasks"
        )


__all__ = [
    "MT2OProblem",
    "PAPER_STARTS",
    "PointModel",
    "SyntheticProblem",
    "VISION_PROBLEMS",
    "available_problems",
    "check_problem",
    "make_problem",
    "register_problem",
]
