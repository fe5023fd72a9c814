"""MT2O: multi-task learning via multi-task optimization (N scalarized subproblems with transfer).

* :mod:`.problems` -- the problem protocol and registry (``make_problem``).
* :mod:`.weights` -- simplex weight vectors, neighbours, transfer matrix and its decay.
* :mod:`.optimizer` -- ``run_mt2o`` / ``compare_with_baseline``.
* :mod:`.hypervolume` -- exact 2-D / 3-D hypervolume (moocore beyond).
* :mod:`.plotting` -- hypervolume curves and final Pareto sets.
"""

from .hypervolume import hypervolume, nondominated
from .optimizer import Comparison, MT2OConfig, MT2OResult, compare_with_baseline, run_mt2o
from .problems import MT2OProblem, available_problems, make_problem, register_problem
from .weights import simplex_weights

__all__ = [
    "Comparison",
    "MT2OConfig",
    "MT2OProblem",
    "MT2OResult",
    "available_problems",
    "compare_with_baseline",
    "hypervolume",
    "make_problem",
    "nondominated",
    "register_problem",
    "run_mt2o",
    "simplex_weights",
]
