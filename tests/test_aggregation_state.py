"""State: save/load round trips, seeded randomness, and the loss-based weightings' dynamics."""

from __future__ import annotations

import io
import math

import pytest
import torch
from test_aggregation_common import random_jacobian

from mtrl_align import aggregation

ALL = aggregation.available()
RANDOM = ["pcgrad", "gradvac", "graddrop", "rlw"]


def run(agg, steps: range) -> list[torch.Tensor]:
    out = []
    for step in steps:
        J = random_jacobian(4, 16, torch.float64, seed=step)
        losses = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64) / (
            1 + 0.1 * step * torch.arange(1, 5)
        )
        out.append(agg(J, losses=losses))
    return out


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_continues_identically(name):
    options = {"update_every": 2} if name == "nash-mtl" else {}
    original = aggregation.make(name, **options)
    run(original, range(3))
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    expected = run(original, range(3, 6))

    restored = aggregation.make(name, **options)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    actual = run(restored, range(3, 6))
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=0, atol=0)
    assert restored.stats == original.stats


def test_load_state_dict_of_another_method_is_refused():
    with pytest.raises(ValueError, match="state_dict is for aggregator 'pcgrad', not 'gradvac'"):
        aggregation.make("gradvac").load_state_dict(aggregation.make("pcgrad").state_dict())


@pytest.mark.parametrize("name", RANDOM)
def test_randomness_comes_from_the_seed_only(name):
    torch.manual_seed(123)
    first = run(aggregation.make(name, seed=1), range(3))
    torch.manual_seed(456)  # the global RNG must not matter
    again = run(aggregation.make(name, seed=1), range(3))
    other = run(aggregation.make(name, seed=2), range(3))
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(first, other, strict=True))


def test_dwa_matches_its_formula():
    agg = aggregation.make("dwa", temperature=2.0)
    J = random_jacobian(3, 5, torch.float64)
    history = [
        torch.tensor(v, dtype=torch.float64)
        for v in ([1.0, 2.0, 4.0], [0.5, 2.0, 5.0], [0.4, 1.0, 5.0])
    ]
    agg(J, losses=history[0])
    assert torch.equal(agg.last_weights, torch.ones(3, dtype=torch.float64))
    agg(J, losses=history[1])
    assert torch.equal(agg.last_weights, torch.ones(3, dtype=torch.float64))
    agg(J, losses=history[2])
    r = history[1] / history[0]
    expected = 3 * torch.exp(r / 2) / torch.exp(r / 2).sum()
    torch.testing.assert_close(agg.last_weights, expected)
    agg(J, losses=history[2])
    r = history[2] / history[1]
    torch.testing.assert_close(agg.last_weights, 3 * torch.exp(r / 2) / torch.exp(r / 2).sum())


def test_dwa_period_averages_losses():
    agg = aggregation.make("dwa", period=2)
    J = random_jacobian(2, 4, torch.float64)
    for losses in ([1.0, 1.0], [3.0, 1.0], [1.0, 1.0], [1.0, 1.0], [5.0, 5.0]):
        agg(J, losses=torch.tensor(losses, dtype=torch.float64))
    r = torch.tensor([1.0 / 2.0, 1.0 / 1.0], dtype=torch.float64)  # period means (1,1) / (2,1)
    torch.testing.assert_close(agg.last_weights, 2 * torch.softmax(r / 2, dim=0))


def test_uncertainty_learns_log_variance_of_each_loss():
    """With constant losses L, the optimum of 1/2 exp(-s) L + 1/2 s is s = log L."""
    agg = aggregation.make("uncertainty", lr=0.05)
    J = random_jacobian(3, 5, torch.float64)
    losses = torch.tensor([0.2, 1.0, 8.0], dtype=torch.float64)
    first = agg(J, losses=losses)
    torch.testing.assert_close(first, 0.5 * J.sum(0))  # s = 0 -> weights 1/2
    for _ in range(600):
        agg(J, losses=losses)
    torch.testing.assert_close(agg.log_vars.detach(), losses.log(), atol=2e-2, rtol=0)
    torch.testing.assert_close(agg.last_weights, 0.5 / losses, rtol=5e-2, atol=0)


def test_gradnorm_balances_weighted_gradient_norms():
    """Equal training rates: weights move so that w_i |g_i| become equal; sum w stays T."""
    J = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))
    agg = aggregation.make("gradnorm", lr=0.02)
    losses = torch.ones(3, dtype=torch.float64)
    for _ in range(400):
        agg(J, losses=losses)
    w = agg.last_weights
    assert float(w.sum()) == pytest.approx(3.0)
    weighted = w * J.diagonal()
    assert float(weighted.max() / weighted.min()) < 1.1
    assert w[0] > w[1] > w[2]


def test_gradnorm_favours_slow_tasks():
    """Task 0's loss does not decrease (inverse rate high): its target grows, its weight too."""
    J = torch.eye(2, dtype=torch.float64)
    agg = aggregation.make("gradnorm", lr=0.02)
    agg(J, losses=torch.tensor([1.0, 1.0], dtype=torch.float64))
    for _ in range(200):
        agg(J, losses=torch.tensor([1.0, 0.25], dtype=torch.float64))
    w = agg.last_weights
    assert w[0] > w[1]
    r = torch.tensor([1.0, 0.25]) / torch.tensor([1.0, 0.25]).mean()
    expected = r**1.5 / (r**1.5).sum() * 2  # fixed point: w_i |g_i| ∝ r_i^a
    torch.testing.assert_close(w.float(), expected, atol=0.05, rtol=0)


def test_rlw_weights_average_to_the_task_weights():
    agg = aggregation.make("rlw", seed=0)
    J = torch.eye(3, dtype=torch.float64)
    p = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    total = torch.zeros(3, dtype=torch.float64)
    steps = 3000
    for _ in range(steps):
        agg(J, weights=p)
        total += agg.last_weights
        assert math.isclose(float((agg.last_weights / p).sum()), 3.0, rel_tol=1e-9)
    torch.testing.assert_close(total / steps, p, rtol=0.05, atol=0)
