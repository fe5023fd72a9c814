"""BroNet and LayerNorm trunks: forward against the layout written out by hand, orthogonal
init, where gradients flow and that task losses stay apart through the new networks (every
variant, categorical critic, every aggregation mode), the interference matrices, and the
config errors for architectures that do not take them."""

from __future__ import annotations

import pytest
import torch
from sac_batches import OBS, A, B, T, loop_gradients, make_batch

from agents import MultiTaskSAC
from agents.initialization import InitSpec
from agents.losses import ActorBatch, CriticBatch
from agents.networks import TaskConditionedMLP
from agents.trunks import LAYER_NORM_EPS, TrunkSpec
from mtrl_align.config import AgentConfig, AggregationConfig, load_train_config
from mtrl_align.config_io import ConfigError

VARIANTS = ("shared", "task-encoder", "multi-head")


def layer_norm(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + LAYER_NORM_EPS) * scale + shift


def randomise_norms(module: torch.nn.Module) -> None:
    """LayerNorm scales and shifts away from their (1, 0) init, so that the test sees them."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm_" in name:
                p.copy_(torch.randn(p.shape, generator=g))


def test_bronet_forward_is_the_brc_layout():
    net = TaskConditionedMLP(
        "shared", OBS, T, extra_dim=0, hidden=[8], out_dim=3, trunk=TrunkSpec("bronet", blocks=2)
    )
    randomise_norms(net)
    x = torch.randn(5, OBS)
    out, features = net(x, None, torch.tensor(1))
    p = dict(net.named_parameters())

    def dense_norm(prefix: str, h: torch.Tensor) -> torch.Tensor:
        z = h @ p[f"{prefix}.weight"].T + p[f"{prefix}.bias"]
        return layer_norm(z, p[f"{prefix}.norm_weight"], p[f"{prefix}.norm_bias"])

    h = torch.relu(dense_norm("trunk.input", x))
    for b in range(2):  # h + LN(W2 relu(LN(W1 h)))
        r = torch.relu(dense_norm(f"trunk.blocks.{b}.first", h))
        h = h + dense_norm(f"trunk.blocks.{b}.second", r)
    torch.testing.assert_close(features, h)
    torch.testing.assert_close(out, h @ p["out_weight"].T + p["out_bias"])
    assert len([n for n in p if n.endswith(".weight")]) == 1 + 2 * 2  # input + 2 per block


def test_layer_norm_mlp_forward_and_default_names_unchanged():
    net = TaskConditionedMLP(
        "multi-head",
        OBS,
        T,
        extra_dim=A,
        hidden=[6, 4],
        out_dim=2,
        trunk=TrunkSpec(layer_norm=True),
    )
    randomise_norms(net)
    x, a = torch.randn(5, OBS), torch.randn(5, A)
    out, features = net(x, a, torch.tensor(2))
    p = dict(net.named_parameters())
    h = torch.cat([x, a], -1)
    for i in range(2):
        z = h @ p[f"trunk.layers.{i}.weight"].T + p[f"trunk.layers.{i}.bias"]
        h = torch.relu(
            layer_norm(z, p[f"trunk.layers.{i}.norm_weight"], p[f"trunk.layers.{i}.norm_bias"])
        )
    torch.testing.assert_close(features, h)
    torch.testing.assert_close(out, h @ p["heads.weight"][2].T + p["heads.bias"][2])
    # the plain trunk keeps the parameter names of existing checkpoints
    plain = TaskConditionedMLP("shared", OBS, T, extra_dim=0, hidden=[6, 4], out_dim=2)
    names = {n for n, _ in plain.named_parameters()}
    assert names == {"trunk.0", "trunk.1", "trunk.2", "trunk.3", "out_weight", "out_bias"}


def test_orthogonal_init_is_orthogonal_times_sqrt2_with_zero_biases():
    net = TaskConditionedMLP(
        "multi-head",
        OBS,
        T,
        extra_dim=0,
        hidden=[8],
        out_dim=3,
        init=InitSpec("orthogonal"),
        trunk=TrunkSpec("bronet", blocks=1),
    )
    block = net.trunk.blocks[0].first.weight  # square [8, 8]
    gain2 = 2.0  # (BRC: orthogonal(sqrt(2)))^2
    torch.testing.assert_close(block @ block.T, gain2 * torch.eye(8), atol=1e-5, rtol=0)
    wide = net.trunk.input.weight  # [8, OBS]: orthonormal rows
    torch.testing.assert_close(wide @ wide.T, gain2 * torch.eye(8), atol=1e-5, rtol=0)
    for t in range(T):  # each task's head [3, 8]: orthonormal rows of its own
        head = net.heads["weight"][t]
        torch.testing.assert_close(head @ head.T, gain2 * torch.eye(3), atol=1e-5, rtol=0)
    assert not torch.allclose(net.heads["weight"][0], net.heads["weight"][1])
    for name, p in net.named_parameters():
        if name.endswith("bias") and "norm" not in name:
            assert bool((p == 0).all()), name


def make_agent(variant: str, method: str = "uniform", **kw) -> MultiTaskSAC:
    config = AgentConfig(
        variant=variant,
        actor_hidden=[8],
        critic_hidden=[8],
        critic_trunk="bronet",
        actor_trunk="bronet",
        critic_loss="two-hot",
        num_bins=11,
        v_max=2.0,
        init="orthogonal",
        **kw,
    )
    return MultiTaskSAC(config, AggregationConfig(method=method), T, OBS, A, seed=0)


def critic_batch(agent: MultiTaskSAC, seed: int = 0) -> CriticBatch:
    batch = make_batch(seed)
    targets = agent._bellman_targets(batch, agent.temperatures())
    return CriticBatch(batch.obs, batch.actions, targets)


@pytest.mark.parametrize("variant", VARIANTS)
def test_per_task_gradients_and_their_flow_through_bronet_and_categorical_critic(variant):
    agent = make_agent(variant)
    for network, batch, extra in (
        ("critic", critic_batch(agent), ()),
        (
            "actor",
            ActorBatch(make_batch().obs, torch.randn(T, B, A), agent.temperatures()),
            ({n: p.detach() for n, p in agent.critic.named_parameters()},),
        ),
    ):
        gradients = agent.gradients[network]
        fused, _, _ = gradients.per_task_gradients(batch, agent.task_index, extra)
        oracle = loop_gradients(gradients.loss_fn, gradients.module, batch, extra)
        for name, grad in oracle.items():
            torch.testing.assert_close(fused[name], grad, rtol=1e-4, atol=1e-6)
            if "norm_" in name or "trunk." in name:  # shared: every task reaches them
                assert not gradients.module.is_task_specific(name)
                assert all(float(grad[t].abs().sum()) > 0 for t in range(T)), (network, name)
        for name in gradients.specific_names:  # rows of other tasks get exactly zero
            for t in range(T):
                others = [s for s in range(T) if s != t]
                assert float(fused[name][t][others].abs().sum()) == 0.0, (network, name, t)
                assert float(fused[name][t][t].abs().sum()) > 0.0, (network, name, t)
        assert bool(gradients.specific_names) == (variant != "shared")


@pytest.mark.parametrize("variant", VARIANTS)
def test_task_losses_stay_apart_through_layer_norm(variant):
    """Changing task 0's inputs leaves the losses and gradients of tasks 1..T-1 unchanged
    (LayerNorm normalises each sample on its own)."""
    agent = make_agent(variant)
    batch = critic_batch(agent)
    changed = batch._replace(obs=batch.obs.clone(), actions=batch.actions.clone())
    changed.obs[0, :, :-T] += 3.0 * torch.randn(B, OBS - T)
    changed.actions[0] = -changed.actions[0]
    critic = agent.gradients["critic"]
    index = torch.arange(T)
    params = dict(agent.critic.named_parameters())
    losses, _ = critic.loss_fn(params, batch, index)  # all tasks in one forward pass
    losses2, _ = critic.loss_fn(params, changed, index)
    assert float(losses[0].detach()) != float(losses2[0].detach())
    torch.testing.assert_close(losses2[1:].detach(), losses[1:].detach(), rtol=0, atol=0)
    grads = loop_gradients(critic.loss_fn, agent.critic, batch)
    grads2 = loop_gradients(critic.loss_fn, agent.critic, changed)
    for name in grads:
        torch.testing.assert_close(grads2[name][1:], grads[name][1:], rtol=0, atol=0)


def _oracle_cosine(agent: MultiTaskSAC, network: str, batch, extra=()) -> torch.Tensor:
    gradients = agent.gradients[network]
    oracle = loop_gradients(gradients.loss_fn, gradients.module, batch, extra)
    J = torch.cat([oracle[n].reshape(T, -1) for n in gradients.shared_names], 1).double()
    unit = J / J.norm(dim=1, keepdim=True)
    return unit @ unit.T


@pytest.mark.parametrize(
    ("method", "variant"),
    [("uniform", "multi-head"), ("pcgrad", "task-encoder"), ("mgda-ub", "shared")],
    ids=["sum", "jacobian", "representation"],
)
def test_update_with_every_gradient_mode_logs_the_interference_matrix(method, variant):
    agent = make_agent(variant, method=method)
    batch = make_batch()
    targets = agent._bellman_targets(batch, agent.temperatures())
    agent.noise_generator.manual_seed(1)  # the update draws the same target noise again
    # the critic's cosines, from a plain autograd loop over the same batch and targets
    expected = _oracle_cosine(agent, "critic", CriticBatch(batch.obs, batch.actions, targets))
    agent.noise_generator.manual_seed(1)
    before = {n: p.detach().clone() for n, p in agent.critic.named_parameters()}
    result = agent.update(batch, collect_stats=True)
    assert not result.skipped
    assert set(result.interference) == {"critic", "actor"}
    cosine = result.interference["critic"]
    assert cosine.shape == (T, T) and cosine.dtype == torch.float64
    torch.testing.assert_close(cosine, expected, rtol=1e-4, atol=1e-5)
    upper = cosine[torch.triu_indices(T, T, 1).unbind()]
    assert result.stats["critic"]["mean_cos"] == pytest.approx(float(upper.mean()))
    assert result.stats["critic"]["min_cos"] == pytest.approx(float(upper.min()))
    assert any(not torch.equal(p, before[n]) for n, p in agent.critic.named_parameters())
    assert agent.update(batch).interference == {}  # only at logged updates


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["agent.variant=moore", "agent.critic_trunk=bronet", "agent.critic_hidden=[64]"],
            "critic_trunk=bronet only applies to agent.variant in shared, task-encoder, "
            "multi-head, not 'moore'",
        ),
        (["agent.variant=care", "agent.layer_norm=true"], "layer_norm=true only applies"),
        (
            ["agent.actor_trunk=bronet", "agent.actor_hidden=[64, 64]"],
            r"actor_trunk=bronet takes one width .*got agent.actor_hidden=\[64, 64\]",
        ),
        (["agent.critic_trunk=resnet"], "'agent.critic_trunk': 'resnet'; choose from: mlp, bronet"),
        (
            ["agent.critic_loss=huber"],
            "'agent.critic_loss': 'huber'; choose from: mse, two-hot, hl-gauss, c51",
        ),
        (["agent.q_reduction=max"], "'agent.q_reduction': 'max'; choose from: min, mean"),
        (["agent.num_bins=1"], "'agent.num_bins': 1; must be >= 2"),
        (["agent.v_max=0"], "'agent.v_max': 0"),
        (["agent.reward_normalization=true", "agent.gamma=1.0"], "needs agent.gamma < 1"),
        (
            ["agent.critic_blocks=0", "agent.critic_trunk=bronet", "agent.critic_hidden=[8]"],
            "'agent.critic_blocks': 0",
        ),
    ],
)
def test_config_errors_name_the_bad_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(None, overrides)
