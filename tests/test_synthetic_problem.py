"""The synthetic objective, its closed-form Jacobian, and the independent ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrl_align.synthetic.problem import (
    PAPER_STARTS,
    parse_pair,
    synthetic_jacobian,
    synthetic_jacobian_autograd,
    synthetic_losses,
    synthetic_losses_numpy,
)
from mtrl_align.synthetic.reference import (
    _grid,
    dominance_gap,
    pareto_front,
    pareto_stationarity,
    weighted_optimum,
)


def _test_points() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    random = torch.rand(2000, 2, generator=gen, dtype=torch.float64) * 24 - 12
    ys = torch.linspace(0.05, 5, 40, dtype=torch.float64)
    # points on the log valleys (|u| ~ 0) of f1 and f2, and the paper's starts
    valley1 = torch.stack((-7 + 2 * torch.tanh(ys), ys), dim=-1)
    valley2 = torch.stack((7 - 2 * torch.tanh(ys), ys), dim=-1)
    starts = torch.tensor(PAPER_STARTS, dtype=torch.float64)
    return torch.cat((random, valley1, valley2, starts, torch.zeros(1, 2, dtype=torch.float64)))


def test_closed_form_jacobian_matches_autograd():
    theta = _test_points()
    losses, jac = synthetic_jacobian(theta)
    ref_losses, ref_jac = synthetic_jacobian_autograd(theta)
    torch.testing.assert_close(losses, ref_losses, rtol=0, atol=1e-12)
    torch.testing.assert_close(jac, ref_jac, rtol=1e-9, atol=1e-9)


def test_closed_form_jacobian_float32_matches_autograd():
    theta = _test_points().float()
    _, jac = synthetic_jacobian(theta)
    _, ref_jac = synthetic_jacobian_autograd(theta)
    torch.testing.assert_close(jac, ref_jac, rtol=1e-4, atol=1e-4)


def test_jacobian_matches_finite_differences_where_smooth():
    gen = torch.Generator().manual_seed(1)
    theta = torch.rand(200, 2, generator=gen, dtype=torch.float64) * 16 - 8
    theta = theta[theta[:, 1].abs() > 0.1]  # away from the switch at y = 0
    _, jac = synthetic_jacobian(theta)
    h = 1e-6
    for k in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[k] = h
        numeric = (synthetic_losses(theta + step) - synthetic_losses(theta - step)) / (2 * h)
        # skip points within h of the clamp of the log terms
        torch.testing.assert_close(jac[:, :, k], numeric, rtol=1e-4, atol=1e-4)


def test_numpy_and_torch_objectives_agree():
    theta = _test_points()
    np.testing.assert_allclose(
        synthetic_losses_numpy(theta.numpy()), synthetic_losses(theta).numpy(), rtol=1e-12
    )


def test_lower_half_plane_is_the_quadratic_branch():
    # y << 0: c1 = 0 and c2 -> 1, so L1 ~ ((7 - x)^2 + 0.1 (y + 8)^2) / 10 - 20 (task 1's
    # minimum at x = +7), L2 the same with (x + 7): the de-garbled signs.
    theta = torch.tensor([[7.0, -30.0], [-7.0, -30.0]], dtype=torch.float64)
    losses = synthetic_losses(theta)
    c2 = np.tanh(15.0)
    expected_l1 = c2 * (np.array([0.0, 14.0**2]) / 10 + 0.1 * 22.0**2 / 10 - 20)
    np.testing.assert_allclose(losses[:, 0].numpy(), expected_l1, rtol=1e-12)
    assert losses[0, 0] < losses[1, 0] and losses[1, 1] < losses[0, 1]


@pytest.mark.parametrize("a", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_weighted_optimum_beats_grid_and_matches_stationarity(a):
    optimum = weighted_optimum(a)
    w = np.array([a, 1 - a])
    _, grid_losses = _grid(801)
    assert optimum.value <= (grid_losses @ w).min() + 1e-12
    # on the quadratic branch, d/dx [a L1 + (1 - a) L2] = 0 gives x = 14 a - 7
    assert optimum.theta[0] == pytest.approx(14 * a - 7, abs=1e-4)
    assert optimum.theta[1] < 0
    np.testing.assert_allclose(optimum.losses, synthetic_losses_numpy(optimum.theta))


def test_weighted_optimum_rejects_bad_weight():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        weighted_optimum(1.5)


def test_pareto_front_is_not_dominated_by_dense_grid_and_is_monotone():
    front = pareto_front()
    assert np.all(np.diff(front[:, 0]) >= 0) and np.all(np.diff(front[:, 1]) <= 1e-12)
    _, grid_losses = _grid(401)
    # no grid point dominates a front point by more than numerical noise
    margin = (front[:, None, :] - grid_losses[None, ::7, :]).min(axis=-1).max()
    assert margin < 1e-6
    assert dominance_gap(front, front).max() == pytest.approx(0.0, abs=1e-12)


def test_dominance_gap_hand_cases():
    front = np.array([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0]])
    gaps = dominance_gap(np.array([[1.5, 1.5], [1.0, 1.0], [0.5, 0.5], [3.0, 3.0]]), front)
    # (3, 3) - 2 = (1, 1) lies on the front; (0.5, 0.5) is beyond it
    np.testing.assert_allclose(gaps, [0.5, 0.0, 0.0, 2.0])


def test_pareto_stationarity_zero_on_the_set_and_positive_off_it():
    on_set = np.array([weighted_optimum(a).theta for a in (0.2, 0.5, 0.8)])
    assert pareto_stationarity(on_set).max() < 1e-4
    off = np.array([[0.0, -5.0], [9.0, -1.0], [-9.0, -1.0]])
    assert pareto_stationarity(off).min() > 1e-2


@pytest.mark.parametrize("text", ["1", "a,b", "1,2,3", "nan,1"])
def test_parse_pair_rejects_bad_input(text):
    with pytest.raises(ValueError, match="--init"):
        parse_pair(text, "--init")


def test_losses_reject_wrong_shape():
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
        synthetic_losses(torch.zeros(3))
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        synthetic_jacobian(torch.zeros(2))
