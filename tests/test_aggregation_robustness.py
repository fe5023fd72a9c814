"""Degenerate Jacobians never give NaN/inf; bad shapes and weights give clear errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_aggregation_common import DTYPES, random_jacobian

from mtrl_align import aggregation

ALL = aggregation.available()
WEIGHTLESS = {"imtl-g", "mgda", "mgda-ub", "imtl"}


def degenerate_cases(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    base = random_jacobian(4, 12, torch.float64, seed=3)
    zero_row = base.clone()
    zero_row[2] = 0.0
    duplicate = base.clone()
    duplicate[3] = duplicate[1]
    opposite = base.clone()
    opposite[1] = -opposite[0]
    rank_deficient = random_jacobian(6, 3, torch.float64, seed=1)  # T > n
    scales = base * torch.tensor([1e-4, 1.0, 1e4, 1.0], dtype=torch.float64)[:, None]
    cases = {
        "zero_row": zero_row,
        "all_zero": torch.zeros(4, 12, dtype=torch.float64),
        "duplicate_rows": duplicate,
        "opposite_rows": opposite,
        "rank_deficient": rank_deficient,
        "one_task": base[:1],
        "scale_1e8": scales,
        "huge": base * 1e15 if dtype == torch.float64 else base * 1e18,
        "tiny": base * 1e-20,
    }
    return {k: v.to(dtype) for k, v in cases.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ALL)
def test_degenerate_jacobians_give_finite_directions(name, dtype):
    for case, J in degenerate_cases(dtype).items():
        agg = aggregation.make(name)
        losses = torch.linspace(0.5, 2.0, J.shape[0], dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nash-mtl reports its fallbacks
            for _ in range(3):  # stateful methods: several calls
                d = agg(J, losses=losses)
                assert d.shape == (J.shape[1],) and d.dtype == dtype, case
                assert bool(torch.isfinite(d).all()), f"{name} gave non-finite output on {case}"
                if agg.last_weights is not None:
                    assert bool(torch.isfinite(agg.last_weights).all()), case
        if case == "all_zero":
            assert bool((d == 0).all()), f"{name} on all-zero J"


def test_aligned_mtl_on_rank_deficient_and_scaled_input_stays_bounded():
    """Scale differences of 1e8: the tiny task's direction is dropped or kept, never blown up."""
    base = random_jacobian(3, 20, torch.float64, seed=0)
    J = base * torch.tensor([1e-8, 1.0, 1.0], dtype=torch.float64)[:, None]
    for dtype in DTYPES:
        d = aggregation.make("aligned-mtl")(J.to(dtype))
        assert float(d.double().norm()) <= 3 * float(J.norm())


def test_nash_mtl_failure_is_counted_and_warned_never_silent():
    J = random_jacobian(3, 10, torch.float64)
    J[1] = 0.0  # F has no minimiser: alpha_1 -> infinity
    agg = aggregation.make("nash-mtl")
    with pytest.warns(RuntimeWarning, match="nash-mtl: Newton solver did not converge"):
        d = agg(J)
    assert agg.stats["solver_failures"] == 1
    assert agg.stats["ridge_fallbacks"] + agg.stats["uniform_fallbacks"] == 1
    assert bool(torch.isfinite(d).all())
    # the next, healthy problem is solved afresh (not the fallback weights reused)
    healthy = random_jacobian(3, 10, torch.float64, seed=9)
    agg(healthy)
    G = healthy @ healthy.T
    G = G / torch.linalg.norm(G)
    a = agg.last_weights
    torch.testing.assert_close(
        a * (G @ a), torch.ones(3, dtype=torch.float64), rtol=1e-6, atol=1e-6
    )
    assert agg.stats["solver_failures"] == 1


def test_nash_mtl_update_every_reuses_between_updates():
    agg = aggregation.make("nash-mtl", update_every=3)
    weights = []
    for step in range(6):
        agg(random_jacobian(3, 10, torch.float64, seed=step))
        weights.append(agg.last_weights.clone())
    assert torch.equal(weights[0], weights[1]) and torch.equal(weights[0], weights[2])
    assert not torch.equal(weights[2], weights[3])
    assert torch.equal(weights[3], weights[5])
    assert agg.stats["reused"] == 4


@pytest.mark.parametrize("name", ALL)
def test_bad_shapes_and_weights_raise_clear_errors(name):
    agg = aggregation.make(name)
    J = random_jacobian(3, 5, torch.float32)
    losses = torch.ones(3)
    with pytest.raises(ValueError, match=r"J must have shape \[T, n\]"):
        agg(J[0], losses=losses)
    with pytest.raises(ValueError, match=r"J must have shape \[T, n\]"):
        agg(J[None], losses=losses)
    with pytest.raises(ValueError, match=r"J must have shape \[T, n\]"):
        agg(J[:0], losses=losses[:0])
    with pytest.raises(ValueError, match=r"losses must have shape \[T\] = \[3\]"):
        agg(J, losses=torch.ones(4))
    with pytest.raises(ValueError, match="losses must be finite"):
        agg(J, losses=torch.tensor([1.0, float("nan"), 1.0]))
    if name in WEIGHTLESS:
        with pytest.raises(ValueError, match="does not use pre-defined task weights"):
            agg(J, losses=losses, weights=torch.ones(3))
    else:
        with pytest.raises(ValueError, match=r"weights has shape \(2,\) but J has 3 task\(s\)"):
            agg(J, losses=losses, weights=torch.ones(2))
        with pytest.raises(ValueError, match="must be finite and >= 0"):
            agg(J, losses=losses, weights=torch.tensor([1.0, -1.0, 1.0]))
        bad_default = aggregation.make(name, task_weights=[1.0, 2.0])
        with pytest.raises(ValueError, match=r"task_weights has shape \(2,\)"):
            bad_default(J, losses=losses)
    if agg.needs_losses:
        with pytest.raises(ValueError, match="needs the per-task losses"):
            agg(J)


@pytest.mark.parametrize("name", ALL)
def test_nan_or_inf_in_jacobian_raises(name):
    for bad in (float("nan"), float("inf")):
        J = random_jacobian(3, 5, torch.float64)
        J[1, 2] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            aggregation.make(name)(J, losses=torch.ones(3, dtype=torch.float64))
