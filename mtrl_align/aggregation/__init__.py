"""Gradient aggregation: per-task Jacobian J [T, n] -> one update direction [n].

>>> from mtrl_align import aggregation
>>> agg = aggregation.make("aligned-mtl")
>>> direction = agg(J)            # J: [T, n] per-task gradients of the shared parameters
>>> agg.last_weights              # [T] weights alpha with direction = J^T alpha

``available()`` lists the method names; ``make(name, **options)`` builds one (unknown names or
options raise ``ValueError`` listing what is allowed). ``gradient_stats(J)`` gives the stability
metrics of the Aligned-MTL paper (condition number, GMS, min cosine, max norm ratio).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from .base import (
    Aggregator,
    NonFiniteDirectionError,
    WeightingAggregator,
    all_finite,
    gram_matrix,
)
from .random_source import derive_seed
from .stats import (
    cosine_matrix_from_gram,
    gradient_stats,
    gradient_stats_from_gram,
    mean_pairwise_cosine,
)

__all__ = [
    "Aggregator",
    "NonFiniteDirectionError",
    "WeightingAggregator",
    "all_finite",
    "available",
    "derive_seed",
    "is_randomized",
    "make",
    "make_seeded",
    "cosine_matrix_from_gram",
    "gradient_stats",
    "gradient_stats_from_gram",
    "mean_pairwise_cosine",
    "gram_matrix",
]

# name -> (module, class); modules are imported on first use.
_REGISTRY: dict[str, tuple[str, str]] = {
    "uniform": ("uniform", "Uniform"),
    "aligned-mtl": ("aligned_mtl", "AlignedMTL"),
    "aligned-mtl-ub": ("aligned_mtl", "AlignedMTLUB"),
    "pcgrad": ("pcgrad", "PCGrad"),
    "cagrad": ("cagrad", "CAGrad"),
    "nash-mtl": ("nash_mtl", "NashMTL"),
    "imtl-g": ("imtl_g", "IMTLG"),
    "mgda": ("mgda", "MGDA"),
    "mgda-ub": ("mgda", "MGDAUB"),
    "graddrop": ("graddrop", "GradDrop"),
    "gradvac": ("gradvac", "GradVac"),
    "gradops": ("gradops", "GradOPS"),
    "rlw": ("rlw", "RLW"),
    "dwa": ("dwa", "DWA"),
    "uncertainty": ("uncertainty", "Uncertainty"),
    "gradnorm": ("gradnorm", "GradNorm"),
    "famo": ("famo", "FAMO"),
    "fairgrad": ("fairgrad", "FairGrad"),
    "upgrad": ("upgrad", "UPGrad"),
    "dualproj": ("dualproj", "DualProj"),
    "config-grad": ("config_grad", "ConFIG"),
    "sdmgrad": ("sdmgrad", "SDMGrad"),
    "moco": ("moco", "MoCo"),
    "modo": ("modo", "MoDo"),
    "stch": ("stch", "STCH"),
    "db-mtl": ("db_mtl", "DBMTL"),
    "excess-mtl": ("excess_mtl", "ExcessMTL"),
    "imtl-l": ("imtl_l", "IMTLL"),
    "imtl": ("imtl", "IMTL"),
    "gls": ("gls", "GLS"),
}


def available() -> list[str]:
    """Names accepted by :func:`make`."""
    return list(_REGISTRY)


def aggregator_class(name: str) -> type[Aggregator]:
    """The class registered under ``name`` (``ValueError`` listing valid names if unknown)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown aggregator {name!r}; choose from: {', '.join(_REGISTRY)}")
    module_name, class_name = _REGISTRY[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)


def options_of(name: str) -> dict[str, Any]:
    """Constructor options of aggregator ``name`` with their defaults."""
    signature = inspect.signature(aggregator_class(name).__init__)
    return {
        key: (None if p.default is inspect.Parameter.empty else p.default)
        for key, p in signature.parameters.items()
        if key != "self"
    }


def make(name: str, **options: Any) -> Aggregator:
    """Build aggregator ``name`` with keyword ``options`` (e.g. ``make("cagrad", c=0.9)``)."""
    cls = aggregator_class(name)
    allowed = options_of(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for aggregator {name!r}; "
            f"allowed: {', '.join(allowed) if allowed else '(none)'}"
        )
    return cls(**options)


def is_randomized(name: str) -> bool:
    """True where aggregator ``name`` draws random numbers (it then takes a ``seed`` option)."""
    return "seed" in options_of(name)


def make_seeded(name: str, run_seed: int, stream: str, **options: Any) -> Aggregator:
    """:func:`make`, with a randomized method seeded from the run seed and a stream name.

    ``seed`` is set to ``derive_seed(run_seed, stream)`` unless ``options`` sets it, so every
    run seed draws its own PCGrad orders / RLW weights / GradDrop masks, and two aggregators of
    one run (``stream="critic"`` and ``"actor"``) draw different numbers.
    """
    if is_randomized(name) and options.get("seed") is None:
        options = {**options, "seed": derive_seed(run_seed, stream)}
    return make(name, **options)
