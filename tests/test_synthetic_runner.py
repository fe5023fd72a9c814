"""The batched synthetic runner against plain single-run Adam, and its input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrl_align.synthetic.problem import PAPER_STARTS, synthetic_losses
from mtrl_align.synthetic.runner import problem_grid, run_synthetic


def _plain_adam(start, weights, steps, lr):
    """One run of Adam on the gradient of a*L1 + (1-a)*L2 through autograd."""
    theta = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    w = torch.tensor(weights, dtype=torch.float64)
    opt = torch.optim.Adam([theta], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (w * synthetic_losses(theta)).sum().backward()
        opt.step()
    return theta.detach().numpy()


@pytest.mark.parametrize("weighting", ["losses", "aggregator"])
def test_uniform_method_is_adam_on_the_weighted_loss(weighting):
    # "uniform" returns J^T w, the gradient of the weighted sum, so every batched run must
    # follow single-run Adam on a*L1 + (1-a)*L2 (both ways of passing the weights agree)
    starts, weights = problem_grid(PAPER_STARTS[2:4], [0.3, 0.8])
    result = run_synthetic(
        "uniform", starts, weights, steps=60, lr=0.05, weighting=weighting, dtype=torch.float64
    )
    for run in range(len(starts)):
        expected = _plain_adam(starts[run], weights[run], 60, 0.05)
        np.testing.assert_allclose(result.final_theta[run], expected, rtol=1e-8, atol=1e-8)


def test_runs_are_independent_and_deterministic():
    starts, weights = problem_grid(PAPER_STARTS, [0.3])
    together = run_synthetic("aligned-mtl", starts, weights, steps=80)
    alone = run_synthetic("aligned-mtl", starts[2:3], weights[2:3], steps=80)
    again = run_synthetic("aligned-mtl", starts, weights, steps=80)
    np.testing.assert_array_equal(together.final_theta[2], alone.final_theta[0])
    np.testing.assert_array_equal(together.trajectory, again.trajectory)


def test_trajectory_records_start_and_end_with_unscaled_losses():
    starts, weights = problem_grid([(0.0, 0.0)], [0.2])
    result = run_synthetic("aligned-mtl", starts, weights, steps=25, record_every=10)
    assert result.recorded_steps.tolist() == [0, 10, 20, 25]
    np.testing.assert_allclose(result.trajectory[0, 0], [0.0, 0.0])
    losses = synthetic_losses(torch.as_tensor(result.trajectory[0])).numpy()
    np.testing.assert_allclose(result.trajectory_losses[0], losses, rtol=1e-6, atol=1e-6)
    record = result.run_dict(0)
    assert {"theta", "losses", "steps", "trajectory"} <= set(record)
    assert record["steps"] == 25


def test_problem_grid_order():
    starts, weights = problem_grid([(1.0, 2.0), (3.0, 4.0)], [0.1, 0.6])
    np.testing.assert_allclose(starts, [[1, 2], [3, 4], [1, 2], [3, 4]])
    np.testing.assert_allclose(weights, [[0.1, 0.9], [0.1, 0.9], [0.6, 0.4], [0.6, 0.4]])


def test_bad_input_is_rejected_with_clear_errors():
    starts, weights = problem_grid([(0.0, 0.0)], [0.5])
    with pytest.raises(ValueError, match="weighting"):
        run_synthetic("aligned-mtl", starts, weights, steps=1, weighting="both")
    with pytest.raises(ValueError, match="does not take pre-defined task weights"):
        run_synthetic("imtl-g", starts, weights, steps=1, weighting="aggregator")
    with pytest.raises(ValueError, match="unknown aggregator"):
        run_synthetic("aligned", starts, weights, steps=1)
    with pytest.raises(ValueError, match=r"shape \[B, 2\]"):
        run_synthetic("aligned-mtl", [[0.0, 0.0, 0.0]], weights, steps=1)
    with pytest.raises(ValueError, match=">= 0"):
        run_synthetic("aligned-mtl", starts, [[-1.0, 2.0]], steps=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        problem_grid([(0.0, 0.0)], [1.2])
