"""Blockwise aggregation (J given as per-parameter blocks) against the concatenated J path."""

from __future__ import annotations

import pytest
import torch
from test_aggregation_common import DTYPES, assert_close_vec, random_jacobian, rel_tol
from torch import nn

from mtrl_align import aggregation
from mtrl_align.aggregation import all_finite, gram_matrix
from mtrl_align.aggregation.base import blocks_gram
from mtrl_align.jacobian import (
    flatten_task_gradients,
    write_aggregated_gradients,
    write_shared_direction,
)

SHAPES = [(4, 3), (4,), (2, 2, 3), (1,)]  # parameter shapes: n = 12 + 4 + 12 + 1 = 29


def split_into_blocks(J: torch.Tensor) -> list[torch.Tensor]:
    """Cut J [T, n] into per-parameter blocks [T, *shape] (n must equal the sum of SHAPES)."""
    sizes = [int(torch.tensor(s).prod()) for s in SHAPES]
    return [c.reshape(J.shape[0], *s) for c, s in zip(J.split(sizes, 1), SHAPES, strict=True)]


def losses_for(num_tasks: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.linspace(0.5, 2.0, num_tasks, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_tasks", [1, 2, 3, 6, 11, 17])  # 2..16: split product
def test_blocks_gram_equals_gram_of_concatenated_jacobian(num_tasks, dtype):
    J = random_jacobian(num_tasks, 29, dtype, seed=num_tasks)
    expected = J.double() @ J.double().T
    torch.testing.assert_close(
        blocks_gram(split_into_blocks(J)).double(), expected, rtol=rel_tol(dtype), atol=1e-6
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [m for m in aggregation.available()])
def test_every_method_gives_the_same_direction_from_blocks(name, dtype):
    """Two fresh aggregators (same seed) fed the same sequence of Jacobians: one sees J, the
    other its blocks; the directions (split back) and weights agree at every step, so stateful
    methods (EMAs, loss history, RNG) evolve identically."""
    flat, blockwise = aggregation.make(name), aggregation.make(name)
    for step in range(3):
        J = random_jacobian(4, 29, dtype, seed=step)
        losses = losses_for(4, dtype) * (step + 1)
        expected = flat(J, losses=losses)
        directions = blockwise.aggregate_blocks(split_into_blocks(J), losses=losses)
        assert [tuple(d.shape) for d in directions] == SHAPES
        assert all(d.dtype == dtype for d in directions)
        got = torch.cat([d.reshape(-1) for d in directions])
        assert_close_vec(got, expected, rel_tol(dtype))
        if flat.last_weights is not None:
            assert_close_vec(blockwise.last_weights, flat.last_weights, rel_tol(dtype))


def test_weighting_methods_keep_the_gram_of_the_blocks():
    J = random_jacobian(3, 29, torch.float64)
    agg = aggregation.make("aligned-mtl")
    agg.aggregate_blocks(split_into_blocks(J))
    torch.testing.assert_close(agg.last_gram, gram_matrix(J))


def test_write_aggregated_gradients_equals_flatten_aggregate_write():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    params = dict(net.named_parameters())
    grads = {n: torch.randn(5, *p.shape, dtype=torch.float64) for n, p in params.items()}
    losses = losses_for(5, torch.float64)
    for name in ("aligned-mtl", "pcgrad", "uniform"):
        write_aggregated_gradients(aggregation.make(name), grads, params, losses)
        got = {n: p.grad.clone() for n, p in params.items()}
        net.zero_grad(set_to_none=True)
        J = flatten_task_gradients(grads, list(params))
        write_shared_direction(aggregation.make(name)(J, losses=losses), list(params.values()))
        for n, p in params.items():
            torch.testing.assert_close(got[n], p.grad, msg=f"{name}: {n}")
        # an existing .grad is overwritten in place
        before = {n: p.grad for n, p in params.items()}
        write_aggregated_gradients(aggregation.make(name), grads, params, losses)
        assert all(p.grad is before[n] for n, p in params.items())
        net.zero_grad(set_to_none=True)


def test_blocks_with_nan_raise_before_the_method_state_changes():
    J = random_jacobian(3, 29, torch.float32)
    J[1, 5] = float("nan")
    agg = aggregation.make("nash-mtl")
    with pytest.raises(ValueError, match="NaN or inf"):
        agg.aggregate_blocks(split_into_blocks(J))
    assert agg.last_weights is None
    for name in ("uniform", "pcgrad", "rlw"):
        with pytest.raises(ValueError, match="non-finite|NaN or inf"):
            aggregation.make(name).aggregate_blocks(split_into_blocks(J))


def test_huge_but_finite_blocks_give_a_finite_direction():
    J = random_jacobian(3, 29, torch.float32) * 1e20  # J J^T overflows float32
    directions = aggregation.make("aligned-mtl").aggregate_blocks(split_into_blocks(J))
    assert all(bool(torch.isfinite(d).all()) for d in directions)


def test_bad_blocks_raise_clear_errors():
    agg = aggregation.make("aligned-mtl")
    with pytest.raises(ValueError, match="non-empty list"):
        agg.aggregate_blocks([])
    with pytest.raises(ValueError, match="non-empty list"):
        agg.aggregate_blocks(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="block 1 has 2"):
        agg.aggregate_blocks([torch.zeros(3, 4), torch.zeros(2, 4)])
    with pytest.raises(ValueError, match="block 1 must be a floating-point tensor"):
        agg.aggregate_blocks([torch.zeros(3, 4), torch.zeros(3, 4, dtype=torch.int64)])
    with pytest.raises(ValueError, match="share dtype"):
        agg.aggregate_blocks([torch.zeros(3, 4), torch.zeros(3, 4, dtype=torch.float64)])
    with pytest.raises(ValueError, match=r"weights has shape \(2,\)"):
        agg.aggregate_blocks([torch.ones(3, 4)], weights=torch.ones(2))
    params = {"w": nn.Parameter(torch.zeros(2, 2))}
    with pytest.raises(ValueError, match="per-task gradient of 'w'"):
        write_aggregated_gradients(agg, {"w": torch.zeros(3, 4)}, params)
    with pytest.raises(ValueError, match="no gradient for parameter"):
        write_aggregated_gradients(agg, {}, params)


def test_all_finite_handles_overflowing_sums_and_nan():
    huge = torch.full((10,), 3e38)  # finite entries whose float32 sum overflows
    assert all_finite([huge, torch.zeros(3)])
    assert not all_finite([huge, torch.tensor([1.0, float("nan")])])
    assert not all_finite([torch.tensor([float("inf"), -float("inf")])])
    assert all_finite([])
