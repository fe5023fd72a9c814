"""The sync-free update (train.sync_free): no host read inside an update, the same results as
the per-update path up to float rounding, and a skipped update that changes nothing.

Oracles: ``torch.optim.Adam`` for the masked Adam step, ``torch.isfinite`` per tensor for the
finiteness flag, and the per-update (host-checked) agent for whole updates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from sac_batches import OBS, A, T, assert_same_state, clone_state, learning_state, make_batch

from agents import MultiTaskSAC
from agents.sync_free import finite_flag, masked_adam_step
from mtrl_align.config import (
    AgentConfig,
    AggregationConfig,
    ConfigError,
    load_train_config,
    resolve_sync_free,
)

HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


@contextlib.contextmanager
def host_reads_forbidden() -> Iterator[None]:
    """Make every way of reading a tensor's value on the host raise (a GPU sync on CUDA)."""
    saved = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def refuse(name: str):
        def method(self, *args, **kwargs):
            raise AssertionError(f"host read Tensor.{name} inside the update")

        return method

    for name in HOST_READS:
        setattr(torch.Tensor, name, refuse(name))
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def make_agent(
    sync_free: bool,
    variant: str = "shared",
    method: str = "uniform",
    temperature_task_weights: bool = False,
    **agent_kw,
):
    config = AgentConfig(variant=variant, actor_hidden=[16, 16], critic_hidden=[16, 16], **agent_kw)
    agg = AggregationConfig(method=method, temperature_task_weights=temperature_task_weights)
    return MultiTaskSAC(config, agg, T, OBS, A, seed=4, sync_free=sync_free)


def assert_close_state(a, b, atol: float = 1e-5) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b)
        for key in a:
            assert_close_state(a[key], b[key], atol)
    elif isinstance(a, list | tuple):
        for x, y in zip(a, b, strict=True):
            assert_close_state(x, y, atol)
    elif isinstance(a, torch.Tensor) and a.is_floating_point():
        torch.testing.assert_close(a.float(), b.float().to(a.device), atol=atol, rtol=1e-4)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b.to(a.device))
    else:
        assert a == b


# -- building blocks --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("optimizer_class", "weight_decay"), [(torch.optim.Adam, 0.0), (torch.optim.AdamW, 0.3)]
)
def test_masked_adam_step_matches_torch_adam(optimizer_class, weight_decay):
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (3,), (2, 4, 2)]
    ours = [torch.randn(s, generator=g) for s in shapes]
    theirs = [p.clone() for p in ours]
    options = {"lr": 3e-3, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": weight_decay}
    ours_opt = optimizer_class(ours, **options)
    theirs_opt = optimizer_class(theirs, foreach=False, **options)
    ok = torch.tensor(True)
    for _ in range(6):
        for p, q in zip(ours, theirs, strict=True):
            grad = torch.randn(p.shape, generator=g)
            p.grad, q.grad = grad.clone(), grad.clone()
        masked_adam_step(ours_opt, ok)
        theirs_opt.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(ours_opt.state[p][key], theirs_opt.state[q][key])
    # the state layout is torch's: our state dict loads into a torch Adam and back
    torch.optim.Adam(theirs, **options).load_state_dict(ours_opt.state_dict())


@pytest.mark.parametrize("weight_decay", [0.0, 0.5])
def test_masked_adam_step_with_a_false_flag_changes_nothing_even_with_nan_gradients(weight_decay):
    params = [torch.randn(4, 2), torch.randn(3)]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=weight_decay)
    for p in params:
        p.grad = torch.randn_like(p)
    masked_adam_step(optimizer, torch.tensor(True))
    before = (
        [p.clone() for p in params],
        [{k: v.clone() for k, v in optimizer.state[p].items()} for p in params],
    )
    for p in params:
        p.grad = torch.full_like(p, float("nan"))
    masked_adam_step(optimizer, torch.tensor(False))
    for p, saved in zip(params, before[0], strict=True):
        assert torch.equal(p, saved)
    for p, saved in zip(params, before[1], strict=True):
        for key, value in saved.items():
            assert torch.equal(optimizer.state[p][key], value), key
    fresh = [torch.randn(3)]
    fresh_opt = torch.optim.Adam(fresh)
    fresh[0].grad = torch.tensor([float("inf"), 1.0, 2.0])
    saved = fresh[0].clone()
    masked_adam_step(fresh_opt, torch.tensor(False))
    assert torch.equal(fresh[0], saved) and float(fresh_opt.state[fresh[0]]["step"]) == 0.0


def test_masked_adam_step_refuses_options_it_does_not_implement():
    param = torch.zeros(2, requires_grad=True)
    param.grad = torch.ones(2)
    with pytest.raises(ValueError, match="L2 weight_decay=0.1 is not supported"):
        masked_adam_step(torch.optim.Adam([param], weight_decay=0.1), torch.tensor(True))


@pytest.mark.parametrize(
    "values",
    [
        [torch.randn(3, 2), torch.randn(4)],
        [torch.full((3,), 3e38), torch.full((2, 2), -3e38)],  # finite, but a sum would overflow
        [torch.randn(3), torch.tensor([1.0, float("nan")])],
        [torch.tensor([float("-inf")]), torch.randn(2)],
    ],
)
def test_finite_flag_agrees_with_isfinite_per_tensor(values):
    expected = all(bool(torch.isfinite(v).all()) for v in values)
    assert bool(finite_flag(values)) is expected


# -- whole updates ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variant", "agent_kw"),
    [
        ("shared", {}),
        ("multi-head", {"grad_clip": 0.5}),
        ("task-encoder", {"target_update_every": 2}),
        ("care", {}),
        ("multi-head", {"critic_loss": "hl-gauss", "num_bins": 11, "layer_norm": True}),
        ("shared", {"weight_decay": 0.05, "alpha_beta1": 0.5, "q_reduction": "mean"}),
        ("task-encoder", {"critic_loss": "c51", "num_bins": 11, "shared_task_embedding": True}),
        # PaCo's extreme-task masking and reset decided on the device (the losses here are
        # ~250-400: this threshold masks some tasks), with the temperature task weights on top
        ("paco", {"extreme_loss_threshold": 330.0, "temperature_task_weights": True}),
    ],
)
def test_sync_free_updates_equal_the_per_update_path(variant, agent_kw):
    checked, free = make_agent(False, variant, **agent_kw), make_agent(True, variant, **agent_kw)
    for seed in range(5):
        batch = make_batch(seed)
        a, b = checked.update(batch, collect_stats=seed == 3), free.update(batch, seed == 3)
        assert a.skipped is False and not bool(b.skipped)
        assert_close_state(a.metrics, b.metrics)
        if seed == 3:
            assert set(a.stats) == set(b.stats)
            for network in a.stats:
                for key, value in a.stats[network].items():
                    assert b.stats[network][key] == pytest.approx(value, rel=1e-3, abs=1e-6), key
    assert_close_state(checked.state_dict(), free.state_dict())
    if variant == "paco":
        assert 0 < int(checked.extreme_task_counts.sum()) < 5 * T  # masked, but not always


def test_sync_free_update_reads_nothing_back_from_the_device():
    free, checked = make_agent(True), make_agent(False)
    categorical = make_agent(True, critic_loss="two-hot", num_bins=11, layer_norm=True)
    batch = make_batch(0)
    with host_reads_forbidden():
        free.update(batch)
        free.update(batch._replace(rewards=torch.full_like(batch.rewards, float("nan"))))
        categorical.update(batch)
    paco = make_agent(True, "paco", temperature_task_weights=True, extreme_loss_threshold=1.0)
    with host_reads_forbidden():
        paco.update(batch)
    with host_reads_forbidden(), pytest.raises(AssertionError, match="host read"):
        checked.update(batch)  # the per-update path decides on the host: the guard catches it


def test_a_sync_free_skip_changes_no_learning_state_and_counts_on_the_device():
    agent = make_agent(True, "multi-head", grad_clip=1.0)
    agent.update(make_batch(0))
    before = learning_state(agent)
    batch = make_batch(1)
    poisoned = batch._replace(
        rewards=batch.rewards.clone().index_fill_(0, torch.tensor([1]), float("inf"))
    )
    result = agent.update(poisoned)
    assert bool(result.skipped)
    assert_same_state(before, learning_state(agent))
    assert (agent.nonfinite_skips, agent.consecutive_nonfinite, agent.num_updates) == (1, 1, 1)
    agent.update(poisoned)
    assert agent.update(make_batch(2)).skipped.item() is False
    assert (agent.nonfinite_skips, agent.consecutive_nonfinite, agent.num_updates) == (2, 0, 2)
    assert agent.longest_nonfinite_run == 2 and agent.update_calls == 4


def test_sync_free_agent_resumes_identically_and_reads_per_update_checkpoints():
    agent = make_agent(True)
    for seed in range(3):
        agent.update(make_batch(seed))
    resumed = make_agent(True)
    resumed.load_state_dict(clone_state(agent.state_dict()))  # as if saved to disk
    for seed in range(3, 5):
        agent.update(make_batch(seed))
        resumed.update(make_batch(seed))
    assert_same_state(agent.state_dict(), resumed.state_dict())

    checked = make_agent(False)
    checked.update(make_batch(0))
    switched = make_agent(True)
    switched.load_state_dict(clone_state(checked.state_dict()))
    checked.update(make_batch(1))
    switched.update(make_batch(1))
    assert_close_state(checked.state_dict(), switched.state_dict())


def test_sync_free_is_refused_for_methods_with_aggregator_logic():
    with pytest.raises(ValueError, match="method 'aligned-mtl' aggregates"):
        make_agent(True, method="aligned-mtl")
    with pytest.raises(ConfigError, match="train.sync_free=on needs summed-loss gradients"):
        load_train_config(None, ["train.sync_free=on", "aggregation.method=pcgrad"])
    config = load_train_config(None, ["train.sync_free=on", "aggregation.networks=[]"])
    assert config.train.sync_free == "on"
    with pytest.raises(ConfigError, match="'train.sync_free'.*choose from: auto, on, off"):
        load_train_config(None, ["train.sync_free=maybe"])


def test_auto_sync_free_is_on_only_for_cuda_with_summed_losses():
    uniform, pcgrad = AggregationConfig(method="uniform"), AggregationConfig(method="pcgrad")
    assert resolve_sync_free("auto", "cuda", uniform) is True
    assert resolve_sync_free("auto", "cuda:1", uniform) is True
    assert resolve_sync_free("auto", "cpu", uniform) is False
    assert resolve_sync_free("auto", "cuda", pcgrad) is False
    assert resolve_sync_free("on", "cpu", uniform) is True
    assert resolve_sync_free("off", "cuda", uniform) is False
