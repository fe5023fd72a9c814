"""The Aligned-MTL paper's synthetic claim, checked against the independent optimum.

Fast (default run): one paper start, the paper's optimizer (Adam, lr 1e-3, float32, task
weights entering as scaled losses as in the papers' scripts), enough steps for the run to
arrive (about 14k; the paper runs 35k). Aligned-MTL must end at the minimizer of
0.3 L1 + 0.7 L2; IMTL-G, from the same start, must be on the Pareto front but still away
from the optimum at that step.
The full protocol (five starts, nine weights, 35k steps) is the slow test and
``scripts/synthetic_claim.py``.
"""

from __future__ import annotations

import pytest

from mtrl_align.synthetic.claim import judge_runs
from mtrl_align.synthetic.problem import PAPER_LR, PAPER_STARTS, PAPER_STEPS
from mtrl_align.synthetic.runner import problem_grid, run_synthetic

FAST_STEPS = 15_000


@pytest.fixture(scope="module")
def fast_runs():
    starts, weights = problem_grid([(0.0, 0.0)], [0.3])
    return {
        method: judge_runs(run_synthetic(method, starts, weights, steps=FAST_STEPS, lr=PAPER_LR))[0]
        for method in ("aligned-mtl", "imtl-g")
    }


def test_aligned_mtl_ends_at_the_weighted_optimum(fast_runs):
    verdict = fast_runs["aligned-mtl"]
    assert verdict.on_front
    assert verdict.at_optimum, verdict
    assert abs(verdict.theta[0] - verdict.optimum_theta[0]) < 0.05


def test_imtl_g_reaches_the_front_but_lags_behind_on_it(fast_runs):
    # IMTL-G also reaches the front; with Adam (which amplifies the tiny residual updates on
    # the front) it then drifts along it, more slowly: at the step Aligned-MTL sits at the
    # optimum, IMTL-G is still away from it. (After 35k steps most IMTL-G runs end near the
    # optimum too; see docs/synthetic.md.)
    imtl, aligned = fast_runs["imtl-g"], fast_runs["aligned-mtl"]
    assert imtl.on_front, imtl
    assert not imtl.at_optimum and imtl.value_gap > 10 * max(aligned.value_gap, 1e-6), imtl


@pytest.mark.slow
def test_full_protocol_all_but_the_extreme_cases():
    # measured (scripts/synthetic_claim.py): 43/45 at the optimum; the two misses both start
    # at (9, 9) with extreme weights -- a = 0.1 stays on the upper plateau, a = 0.9 is still
    # travelling at 35k steps
    weights = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    starts, pairs = problem_grid(PAPER_STARTS, weights)
    verdicts = judge_runs(run_synthetic("aligned-mtl", starts, pairs, steps=PAPER_STEPS))
    failures = [v for v in verdicts if not v.at_optimum]
    assert len(failures) <= 2, failures
    assert all(v.weight in (0.1, 0.9) for v in failures), failures
