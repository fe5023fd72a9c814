"""MT2O: simplex weights, transfer, equivalence with independent runs, vmap vs loop, registry."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from mtrl_align.mt2o.hypervolume import hypervolume
from mtrl_align.mt2o.optimizer import MT2OConfig, compare_with_baseline, run_mt2o
from mtrl_align.mt2o.problems import (
    SyntheticProblem,
    available_problems,
    make_problem,
    register_problem,
)
from mtrl_align.mt2o.weights import (
    neighbours,
    simplex_weights,
    transfer_matrix,
    transfer_weight,
)
from mtrl_align.synthetic.problem import synthetic_losses


class LinearTwoTargets:
    """Tiny problem implementing the MT2O protocol: a linear model, two regression targets."""

    name = "linear-test"
    task_names = ("a", "b")
    reference_point = (10.0, 10.0)
    supports_vmap = True

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(123)
        self.inputs = torch.randn(32, 3, generator=gen)
        self.targets = torch.randn(2, 32, 2, generator=gen)

    def build_model(self, generator):
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        return model

    def train_batch(self, step, generator, device):
        index = torch.randint(0, 32, (8,), generator=generator)
        return self.inputs[index].to(device), self.targets[:, index].to(device)

    def task_losses(self, forward, batch):
        inputs, targets = batch
        out = forward(inputs)
        return torch.stack([((out - targets[t]) ** 2).mean() for t in range(2)])

    def evaluate(self, model, device):
        with torch.no_grad():
            out = model(self.inputs)
            return torch.stack([((out - self.targets[t]) ** 2).mean() for t in range(2)])


# --------------------------------------------------------------------------- weight vectors
@pytest.mark.parametrize(("num", "tasks"), [(2, 2), (7, 2), (6, 3), (10, 3), (15, 3), (10, 4)])
def test_simplex_weights_lie_on_the_simplex_and_are_distinct(num, tasks):
    weights = simplex_weights(num, tasks)
    assert weights.shape == (num, tasks)
    assert bool((weights >= 0).all())
    torch.testing.assert_close(weights.sum(1), torch.ones(num, dtype=torch.float64))
    assert len({tuple(row.tolist()) for row in weights}) == num
    # every vertex (single-task subproblem) is included
    for t in range(tasks):
        assert any(math.isclose(float(row[t]), 1.0) for row in weights)


def test_two_task_weights_are_evenly_spaced():
    weights = simplex_weights(5, 2)
    np.testing.assert_allclose(np.sort(weights[:, 0].numpy()), [0, 0.25, 0.5, 0.75, 1.0])


def test_three_task_lattice_has_equal_neighbour_distances():
    weights = simplex_weights(10, 3)  # H = 3
    dist = torch.cdist(weights, weights)
    dist.fill_diagonal_(float("inf"))
    np.testing.assert_allclose(dist.min(1).values.numpy(), math.sqrt(2) / 3)


def test_invalid_subproblem_counts():
    with pytest.raises(ValueError, match="valid counts: 3, 6, 10"):
        simplex_weights(7, 3)
    with pytest.raises(ValueError, match="at least 2 subproblems"):
        simplex_weights(1, 2)


def test_neighbours_and_transfer_matrix():
    weights = simplex_weights(5, 2)
    index = neighbours(weights, 2)
    a = weights[:, 0]
    for i in range(5):
        others = sorted(range(5), key=lambda j: (abs(float(a[i] - a[j])), j))[1:3]
        assert sorted(index[i].tolist()) == sorted(others)
    matrix = transfer_matrix(index, 0.3)
    torch.testing.assert_close(matrix.sum(1), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(matrix.diagonal(), torch.full((5,), 0.7, dtype=torch.float64))
    torch.testing.assert_close(transfer_matrix(index, 0.0), torch.eye(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="between 1 and N - 1"):
        neighbours(weights, 5)


def test_transfer_weight_decays_to_zero():
    assert transfer_weight(0, 0.2, "linear", 100) == pytest.approx(0.2)
    assert transfer_weight(50, 0.2, "linear", 100) == pytest.approx(0.1)
    assert transfer_weight(100, 0.2, "linear", 100) == 0.0
    assert transfer_weight(300, 0.2, "linear", 100) == 0.0
    assert transfer_weight(100, 0.2, "exponential", 100) == pytest.approx(0.1)
    assert transfer_weight(10_000, 0.2, "exponential", 100) < 1e-20
    with pytest.raises(ValueError, match="linear, exponential"):
        transfer_weight(0, 0.2, "cosine", 100)


# --------------------------------------------------------------------------- the optimizer
def _independent_adam(theta0: torch.Tensor, weight: torch.Tensor, steps: int, lr: float):
    theta = nn.Parameter(theta0.clone())
    opt = torch.optim.Adam([theta], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (weight.float() * synthetic_losses(theta)).sum().backward()
        opt.step()
    return theta.detach()


def test_zero_transfer_equals_independent_runs():
    problem = SyntheticProblem()
    config = MT2OConfig(
        subproblems=5,
        steps=60,
        lr=0.05,
        transfer_weight=0.0,
        init="independent",
        seed=3,
        eval_every=20,
    )
    result = run_mt2o(problem, config)
    gen = torch.Generator().manual_seed(config.seed)
    starts = [problem.build_model(gen).theta.detach() for _ in range(5)]
    weights = simplex_weights(5, 2)
    for i in range(5):
        expected = _independent_adam(starts[i], weights[i], config.steps, config.lr)
        torch.testing.assert_close(result.state["theta"][i], expected, rtol=1e-5, atol=1e-5)


def test_sgd_with_transfer_follows_the_mtgd_recursion():
    problem = LinearTwoTargets()
    config = MT2OConfig(
        subproblems=4,
        steps=15,
        lr=0.05,
        optimizer="sgd",
        transfer_weight=0.5,
        neighbours=1,
        init="independent",
        seed=1,
        eval_every=5,
        transfer_horizon=10,
    )
    result = run_mt2o(problem, config)

    # independent re-implementation: theta^{t+1} = S^t theta^t - lr * grad_i(theta_i^t)
    init_gen = torch.Generator().manual_seed(config.seed)
    data_gen = torch.Generator().manual_seed(config.seed + 1)
    models = [problem.build_model(init_gen) for _ in range(4)]
    weights = simplex_weights(4, 2).float()
    index = neighbours(simplex_weights(4, 2), 1)
    for step in range(config.steps):
        gamma = 0.5 * max(0.0, 1 - step / 10)
        batch = problem.train_batch(step, data_gen, torch.device("cpu"))
        grads = []
        for i, model in enumerate(models):
            model.zero_grad()
            (weights[i] * problem.task_losses(model, batch)).sum().backward()
            grads.append([p.grad.clone() for p in model.parameters()])
        mix = transfer_matrix(index, gamma).float()
        old = [[p.detach().clone() for p in m.parameters()] for m in models]
        with torch.no_grad():
            for i, model in enumerate(models):
                for k, p in enumerate(model.parameters()):
                    mixed = sum(mix[i, j] * old[j][k] for j in range(4))
                    p.copy_(mixed - config.lr * grads[i][k])
    for k, (name, _) in enumerate(models[0].named_parameters()):
        expected = torch.stack([list(m.parameters())[k].detach() for m in models])
        torch.testing.assert_close(result.state[name], expected, rtol=1e-5, atol=1e-6)


def test_vmap_and_loop_give_the_same_run():
    problem = LinearTwoTargets()
    config = MT2OConfig(
        subproblems=3, steps=20, lr=0.02, transfer_weight=0.3, seed=2, eval_every=10
    )
    fast = run_mt2o(problem, replace(config, vectorize=True))
    slow = run_mt2o(problem, replace(config, vectorize=False))
    for name in fast.state:
        torch.testing.assert_close(fast.state[name], slow.state[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast.hypervolume, slow.hypervolume, rtol=1e-5)


def test_same_seed_same_result_and_hypervolume_consistent():
    problem = make_problem("synthetic")
    config = MT2OConfig(subproblems=6, steps=40, lr=0.1, transfer_weight=0.2, seed=5, eval_every=10)
    first, second = run_mt2o(problem, config), run_mt2o(problem, config)
    np.testing.assert_array_equal(first.hypervolume, second.hypervolume)
    assert first.eval_steps.tolist() == [0, 10, 20, 30, 40]
    for k, losses in enumerate(first.losses):
        assert first.hypervolume[k] == pytest.approx(hypervolume(losses, np.zeros(2)))
    # evaluated losses are the objective at the stored parameters
    torch.testing.assert_close(
        torch.as_tensor(first.final_losses).float(),
        synthetic_losses(first.state["theta"]),
        rtol=1e-6,
        atol=1e-6,
    )


def first_step_reaching(steps: np.ndarray, curve: np.ndarray, target: float) -> int | None:
    """The first evaluated step whose value is >= target (a plain loop; None if never)."""
    for step, value in zip(steps, curve, strict=True):
        if value >= target - 1e-9 * max(1.0, abs(target)):
            return int(step)
    return None


def test_transfer_changes_the_run_and_comparison_reports_steps():
    problem = make_problem("synthetic")
    config = MT2OConfig(
        subproblems=5,
        steps=60,
        lr=0.2,
        transfer_weight=0.3,
        seed=0,
        init="independent",
        eval_every=5,
    )
    comparison = compare_with_baseline(problem, config)
    # the two runs are MT2O with this config and the same run without transfer
    alone = run_mt2o(problem, config)
    no_transfer = run_mt2o(problem, replace(config, transfer_weight=0.0))
    np.testing.assert_array_equal(comparison.mt2o.hypervolume, alone.hypervolume)
    np.testing.assert_array_equal(comparison.baseline.hypervolume, no_transfer.hypervolume)
    assert not np.allclose(comparison.mt2o.state["theta"], comparison.baseline.state["theta"])
    assert comparison.target == no_transfer.hypervolume[-1]
    # steps to target, recomputed from the two hypervolume curves
    payload = comparison.to_dict()
    assert set(payload["steps_to_target"]) == {"1.0", "0.999", "0.99"}
    reached_somewhere = []
    for fraction in (1.0, 0.999, 0.99):
        target = fraction * no_transfer.hypervolume[-1]
        expected = {
            "mt2o": first_step_reaching(alone.eval_steps, alone.hypervolume, target),
            "baseline": first_step_reaching(
                no_transfer.eval_steps, no_transfer.hypervolume, target
            ),
        }
        assert comparison.steps_to_target(fraction) == expected
        assert payload["steps_to_target"][str(fraction)] == expected
        reached_somewhere.append(expected["mt2o"] is not None)
    # the hypervolume curves are not flat, so the first crossing is a real choice: the
    # baseline reaches 0.99 of its final value before its last evaluation
    assert comparison.steps_to_target(0.99)["baseline"] < config.steps
    assert any(reached_somewhere)


def test_bad_configs_are_rejected():
    problem = make_problem("synthetic")
    with pytest.raises(ValueError, match="optimizer"):
        run_mt2o(problem, MT2OConfig(optimizer="rmsprop"))
    with pytest.raises(ValueError, match="transfer_weight"):
        run_mt2o(problem, MT2OConfig(transfer_weight=1.5))
    with pytest.raises(ValueError, match="neighbours"):
        run_mt2o(problem, MT2OConfig(subproblems=3, neighbours=3))


# --------------------------------------------------------------------------- registry
def test_registry():
    assert "synthetic" in available_problems() and "nyuv2" in available_problems()
    with pytest.raises(ValueError, match="unknown MT2O problem 'bogus'.*synthetic"):
        make_problem("bogus")
    register_problem("linear-test", LinearTwoTargets)
    assert make_problem("linear-test").task_names == ("a", "b")
    with pytest.raises(ValueError, match="reference_point"):
        SyntheticProblem(reference_point=(0.0,))


class BatchNormProblem(LinearTwoTargets):
    """Like LinearTwoTargets but with BatchNorm (running stats change in place): no vmap."""

    supports_vmap = False

    def build_model(self, generator):
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        return model


def test_loop_path_keeps_batchnorm_statistics_per_copy():
    problem = BatchNormProblem()
    config = MT2OConfig(
        subproblems=3,
        steps=6,
        lr=0.01,
        transfer_weight=0.0,
        init="independent",
        seed=4,
        eval_every=3,
    )
    result = run_mt2o(problem, config)
    assert result.state["1.num_batches_tracked"].tolist() == [6, 6, 6]
    # copy 0 on its own, through plain autograd in train mode, gives the same statistics
    init_gen = torch.Generator().manual_seed(4)
    data_gen = torch.Generator().manual_seed(5)
    model = problem.build_model(init_gen)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    weight = simplex_weights(3, 2)[0].float()
    for step in range(6):
        batch = problem.train_batch(step, data_gen, torch.device("cpu"))
        opt.zero_grad()
        (weight * problem.task_losses(model, batch)).sum().backward()
        opt.step()
    bn = model[1]
    torch.testing.assert_close(result.state["1.running_mean"][0], bn.running_mean)
    torch.testing.assert_close(result.state["0.weight"][0], model[0].weight.detach())
