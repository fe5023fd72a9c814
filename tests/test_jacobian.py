"""Per-task Jacobian fast path vs the naive autograd loop, and .grad write-back routing."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from mtrl_align.jacobian import (
    flatten_task_gradients,
    jacobian_from_losses,
    select_task,
    task_sliced_gradients,
    write_shared_direction,
    write_task_specific_gradients,
)

T, B, OBS, HID = 3, 5, 4, 8


class MultiHeadNet(nn.Module):
    """Shared trunk + one linear head per task stored as a [T, ...] tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(OBS, HID), nn.Tanh(), nn.Linear(HID, HID), nn.Tanh())
        self.head_w = nn.Parameter(torch.randn(T, HID))
        self.head_b = nn.Parameter(torch.randn(T))


def task_loss(params, batch, task_index, net):
    """Loss of ONE task on its slice: batch = (x [B, OBS], y [B])."""
    x, y = batch
    trunk = {k[len("trunk.") :]: v for k, v in params.items() if k.startswith("trunk.")}
    features = functional_call(net.trunk, trunk, (x,))
    w = select_task(params["head_w"], task_index)
    pred = features @ w + select_task(params["head_b"], task_index)
    loss = ((pred - y) ** 2).mean()
    return loss, pred.detach().mean()


def naive_loss(net, x, y, t):
    pred = net.trunk(x[t]) @ net.head_w[t] + net.head_b[t]
    return ((pred - y[t]) ** 2).mean()


@pytest.fixture
def setup():
    torch.manual_seed(0)
    net = MultiHeadNet().double()
    x = torch.randn(T, B, OBS, dtype=torch.float64)
    y = torch.randn(T, B, dtype=torch.float64)
    return net, x, y


def test_task_sliced_gradients_equal_naive_loop(setup):
    net, x, y = setup
    params = dict(net.named_parameters())
    grads, losses, aux = task_sliced_gradients(task_loss, params, (x, y), net)
    assert losses.shape == (T,) and aux.shape == (T,)
    for t in range(T):
        loss_t = naive_loss(net, x, y, t)
        assert torch.allclose(losses[t], loss_t.detach())
        ref = torch.autograd.grad(loss_t, list(params.values()))
        for (name, _), g_ref in zip(params.items(), ref, strict=True):
            assert grads[name].shape == (T,) + params[name].shape
            torch.testing.assert_close(grads[name][t], g_ref, rtol=1e-10, atol=1e-12)


def test_jacobian_from_losses_equals_naive_loop(setup):
    net, x, y = setup
    shared = list(net.trunk.parameters())
    losses = torch.stack([naive_loss(net, x, y, t) for t in range(T)])
    J = jacobian_from_losses(losses, shared, retain_graph=True)
    n = sum(p.numel() for p in shared)
    assert J.shape == (T, n)
    for t in range(T):
        row = torch.cat(
            [g.flatten() for g in torch.autograd.grad(losses[t], shared, retain_graph=True)]
        )
        torch.testing.assert_close(J[t], row, rtol=1e-10, atol=1e-12)


def test_jacobian_from_losses_unused_param_gives_zero_columns(setup):
    net, x, y = setup
    unused = nn.Parameter(torch.ones(3, dtype=torch.float64))
    losses = torch.stack([naive_loss(net, x, y, t) for t in range(T)])
    J = jacobian_from_losses(losses, [unused, *net.trunk.parameters()])
    assert torch.equal(J[:, :3], torch.zeros(T, 3, dtype=torch.float64))


def test_fast_path_jacobian_matches_generic(setup):
    net, x, y = setup
    names = [n for n, _ in net.named_parameters() if n.startswith("trunk.")]
    grads, _, _ = task_sliced_gradients(task_loss, dict(net.named_parameters()), (x, y), net)
    J_fast = flatten_task_gradients(grads, names)
    losses = torch.stack([naive_loss(net, x, y, t) for t in range(T)])
    J_gen = jacobian_from_losses(losses, [dict(net.named_parameters())[n] for n in names])
    torch.testing.assert_close(J_fast, J_gen, rtol=1e-10, atol=1e-12)


def test_write_back_routes_gradients(setup):
    """Shared params get the aggregated direction; each head row gets only its task's gradient."""
    net, x, y = setup
    params = dict(net.named_parameters())
    shared_names = [n for n in params if n.startswith("trunk.")]
    head_names = ["head_w", "head_b"]
    grads, _, _ = task_sliced_gradients(task_loss, params, (x, y), net)
    J = flatten_task_gradients(grads, shared_names)
    direction = torch.arange(J.shape[1], dtype=J.dtype)  # distinguishable numbers
    write_shared_direction(direction, [params[n] for n in shared_names])
    write_task_specific_gradients(grads, {n: params[n] for n in head_names})

    offset = 0
    for n in shared_names:
        p = params[n]
        torch.testing.assert_close(p.grad, direction[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    # head row t must equal the gradient of task t's own loss (other tasks give it nothing)
    for t in range(T):
        g_w, g_b = torch.autograd.grad(naive_loss(net, x, y, t), [net.head_w, net.head_b])
        torch.testing.assert_close(net.head_w.grad[t], g_w[t])
        torch.testing.assert_close(net.head_b.grad[t], g_b[t])
        others = [s for s in range(T) if s != t]
        assert torch.count_nonzero(g_w[others]) == 0
    # the total equals the gradient of the summed loss w.r.t. the heads
    total = sum(naive_loss(net, x, y, t) for t in range(T))
    g_w, g_b = torch.autograd.grad(total, [net.head_w, net.head_b])
    torch.testing.assert_close(net.head_w.grad, g_w)


def test_write_shared_direction_overwrites_or_accumulates():
    p = nn.Parameter(torch.zeros(2, 2))
    p.grad = torch.ones(2, 2)
    write_shared_direction(torch.full((4,), 2.0), [p])
    assert torch.equal(p.grad, torch.full((2, 2), 2.0))
    write_shared_direction(torch.full((4,), 2.0), [p], accumulate=True)
    assert torch.equal(p.grad, torch.full((2, 2), 4.0))


def test_bad_inputs_raise_clear_errors(setup):
    net, x, y = setup
    params = dict(net.named_parameters())
    with pytest.raises(ValueError, match="leading task dim"):
        task_sliced_gradients(task_loss, params, (x, y[:2]), net)
    with pytest.raises(ValueError, match="non-finite loss for task"):
        task_sliced_gradients(
            task_loss, params, (x, y.index_fill(0, torch.tensor([1]), float("nan"))), net
        )
    with pytest.raises(ValueError, match=r"direction has shape"):
        write_shared_direction(torch.zeros(3), [params["head_b"], params["head_w"]])
    with pytest.raises(ValueError, match="no gradient for parameter"):
        flatten_task_gradients({"a": torch.zeros(T, 2)}, ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        jacobian_from_losses(torch.zeros(2, 2, requires_grad=True), [params["head_b"]])
    with pytest.raises(ValueError, match="do not require grad"):
        jacobian_from_losses(torch.zeros(2), [params["head_b"]])
    with pytest.raises(ValueError, match=r"per-task gradient of 'head_b'"):
        write_task_specific_gradients({"head_b": torch.zeros(T, 7)}, {"head_b": params["head_b"]})
