"""Network architectures (soft-modules, care, moore, paco, film, film-per-unit) inside
multi-task SAC.

Checks where gradients flow (which parameter gets gradient from which task's loss), that task
losses stay separate, that the fused vmapped per-task gradients equal a plain autograd loop,
determinism, checkpoint round trips, a short training run per variant, and that the factory
leaves the three MLP variants exactly as they were.
"""

from __future__ import annotations

import copy

import pytest
import torch
from sac_batches import OBS, A, B, Batch, T, loop_gradients, make_batch
from torch.func import vmap

from agents import MultiTaskSAC, TanhGaussianActor, TaskConditionedMLP, TwinCritic
from agents.architectures.moore import gram_schmidt
from agents.losses import ActorBatch, CriticBatch
from agents.networks import MLP_VARIANTS, VARIANTS, build_network
from mtrl_align.config import AgentConfig, AggregationConfig, load_train_config
from mtrl_align.config_io import ConfigError

NEW = ("soft-modules", "care", "moore", "paco", "film", "film-per-unit")
SPECIFIC = {
    "soft-modules": {"task_embedding"},
    "care": {"task_embedding"},
    "moore": {"task_weights", "heads.weight", "heads.bias"},
    "paco": {"composition"},
    "film": {"task_embedding"},
    "film-per-unit": {"task_embedding"},
}
SMALL = {  # small non-default options: three module layers exercise the routing skip inputs
    "soft-modules": {"num_modules": 3, "num_module_layers": 3, "module_hidden": 8},
    "care": {"num_experts": 3},
    "moore": {"num_experts": 3},
    "paco": {"num_experts": 3},
    "film": {},
    "film-per-unit": {},
}


def make_agent(variant: str, method: str = "uniform", seed: int = 0, **agent_kw) -> MultiTaskSAC:
    config = AgentConfig(variant=variant, actor_hidden=[16, 16], critic_hidden=[16, 16], **agent_kw)
    return MultiTaskSAC(config, AggregationConfig(method=method), T, OBS, A, seed=seed)


def make_net(variant: str, seed: int = 0) -> torch.nn.Module:
    return build_network(
        variant,
        OBS,
        T,
        extra_dim=A,
        hidden=[12, 12],
        out_dim=2,
        embedding_dim=6,
        generator=torch.Generator().manual_seed(seed),
        options=SMALL[variant],
    )


def critic_inputs(agent: MultiTaskSAC, batch: Batch) -> CriticBatch:
    targets = agent._bellman_targets(batch, agent.log_alpha.detach().exp())
    return CriticBatch(batch.obs, batch.actions, targets)


# -- the factory keeps the MLP variants as they were ------------------------------------------
@pytest.mark.parametrize("variant", MLP_VARIANTS)
def test_factory_builds_the_mlp_variants_bit_identically(variant):
    direct = TaskConditionedMLP(
        variant, OBS, T, A, [16, 16], 1, embedding_dim=5, generator=torch.Generator().manual_seed(3)
    )
    built = build_network(
        variant, OBS, T, A, [16, 16], 1, embedding_dim=5, generator=torch.Generator().manual_seed(3)
    )
    assert type(built) is TaskConditionedMLP
    assert list(built.state_dict()) == list(direct.state_dict())
    for name, value in direct.state_dict().items():
        assert torch.equal(built.state_dict()[name], value), name
    # inside the actor and critic: same names, same draws from one shared generator
    g = torch.Generator().manual_seed(7)
    actor = TanhGaussianActor(variant, OBS, T, A, [16], embedding_dim=5, generator=g)
    critic = TwinCritic(variant, OBS, T, A, [16], embedding_dim=5, generator=g)
    g = torch.Generator().manual_seed(7)
    nets = [
        TaskConditionedMLP(variant, OBS, T, e, [16], o, embedding_dim=5, generator=g)
        for e, o in ((0, 2 * A), (A, 1), (A, 1))
    ]
    for module, prefix, net in zip(
        (actor, critic, critic), ("net.", "q1.", "q2."), nets, strict=True
    ):
        for name, value in net.state_dict().items():
            assert torch.equal(module.state_dict()[prefix + name], value), prefix + name
    assert actor.is_task_specific is TaskConditionedMLP.is_task_specific
    assert critic.is_task_specific is TaskConditionedMLP.is_task_specific


def test_unknown_variant_and_options_are_clear_errors():
    with pytest.raises(ValueError, match="unknown architecture 'moe'"):
        build_network("moe", OBS, T, 0, [8], 1)
    with pytest.raises(ValueError, match=r"\['num_experts'\] do not apply to variant 'shared'"):
        build_network("shared", OBS, T, 0, [8], 1, options={"num_experts": 2})
    with pytest.raises(ValueError, match=r"do not apply to variant 'film' \(it takes: none\)"):
        build_network("film", OBS, T, 0, [8], 1, options={"num_experts": 2})
    with pytest.raises(ValueError, match="num_experts=0 must be an integer >= 1"):
        build_network("moore", OBS, T, 0, [8], 1, options={"num_experts": 0})
    with pytest.raises(ValueError, match="unknown network option"):
        build_network("care", OBS, T, 0, [8], 1, options={"experts": 2})


def test_config_accepts_the_variants_and_checks_their_options():
    for variant in NEW:
        assert load_train_config(None, [f"agent.variant={variant}"]).agent.variant == variant
    config = load_train_config(None, ["agent.variant=moore", "agent.num_experts=3"])
    assert config.agent.num_experts == 3
    with pytest.raises(ConfigError, match="'agent.num_experts' only applies to variant"):
        load_train_config(None, ["agent.variant=film", "agent.num_experts=3"])
    with pytest.raises(ConfigError, match="'agent.num_modules' only applies"):
        load_train_config(None, ["agent.variant=paco", "agent.num_modules=3"])
    with pytest.raises(ConfigError, match="'agent.module_hidden': 0; must be > 0"):
        load_train_config(None, ["agent.variant=soft-modules", "agent.module_hidden=0"])


# -- the forward contract ---------------------------------------------------------------------
@pytest.mark.parametrize("variant", NEW)
def test_shared_and_task_specific_split(variant):
    net = make_net(variant)
    specific = {n for n, _ in net.named_parameters() if net.is_task_specific(n)}
    assert specific == SPECIFIC[variant]
    agent = make_agent(variant)
    for network, prefixes in (("actor", ("net.",)), ("critic", ("q1.", "q2."))):
        names = set(agent.gradients[network].specific_names)
        assert names == {p + n for p in prefixes for n in SPECIFIC[variant]}
        assert agent.gradients[network].shared_names, "every variant has shared parameters"


@pytest.mark.parametrize("variant", NEW)
def test_all_task_one_task_and_vmapped_forwards_agree(variant):
    net = make_net(variant)
    g = torch.Generator().manual_seed(1)
    obs, extra = torch.randn(T, B, OBS, generator=g), torch.randn(T, B, A, generator=g)
    out, features = net(obs, extra, torch.arange(T))
    assert out.shape == (T, B, 2) and features.shape[:2] == (T, B)
    mapped_out, mapped_features = vmap(net)(obs, extra, torch.arange(T))
    for t in range(T):
        one_out, one_features = net(obs[t], extra[t], torch.tensor(t))
        torch.testing.assert_close(out[t], one_out, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(features[t], one_features, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mapped_out, out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mapped_features, features, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", NEW)
def test_gradient_flow_per_task(variant):
    """Task t's loss reaches every shared parameter and only row t of each task-specific one."""
    net = make_net(variant)
    g = torch.Generator().manual_seed(2)
    obs, extra = torch.randn(T, B, OBS, generator=g), torch.randn(T, B, A, generator=g)
    out, _ = net(obs, extra, torch.arange(T))
    losses = out.pow(2).mean(dim=(1, 2))
    params = dict(net.named_parameters())
    for t in range(T):
        grads = torch.autograd.grad(losses[t], list(params.values()), retain_graph=True)
        for (name, _), grad in zip(params.items(), grads, strict=True):
            if net.is_task_specific(name):
                others = [s for s in range(T) if s != t]
                assert grad[t].abs().sum() > 0, f"{name}: task {t} gives its own row nothing"
                assert torch.count_nonzero(grad[others]) == 0, f"{name}: task {t} leaks"
            else:
                assert grad.abs().sum() > 0, f"shared {name} gets nothing from task {t}"


@pytest.mark.parametrize("variant", NEW)
def test_changing_one_tasks_batch_changes_only_its_loss(variant):
    agent = make_agent(variant)
    batch = make_batch()
    cb = critic_inputs(agent, batch)
    params = dict(agent.critic.named_parameters())
    before, _ = agent.losses.critic_loss(params, cb, agent.task_index)
    changed = CriticBatch(
        cb.obs.clone().index_fill_(0, torch.tensor([1]), 0.5),
        cb.actions.clone().index_fill_(0, torch.tensor([1]), -0.3),
        cb.targets.clone().index_fill_(0, torch.tensor([1]), 2.0),
    )
    after, _ = agent.losses.critic_loss(params, changed, agent.task_index)
    assert after[1] != before[1]
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]], rtol=0, atol=0)


@pytest.mark.parametrize("variant", NEW)
def test_vmapped_per_task_gradients_match_autograd_loop(variant):
    agent = make_agent(variant, method="aligned-mtl")
    batch = make_batch()
    cb = critic_inputs(agent, batch)
    fused, _, _ = agent.gradients["critic"].per_task_gradients(cb, agent.task_index, ())
    oracle = loop_gradients(agent.losses.critic_loss, agent.critic, cb)
    assert set(fused) == set(oracle)
    for name in oracle:
        torch.testing.assert_close(fused[name], oracle[name], rtol=1e-4, atol=1e-6)
    ab = ActorBatch(batch.obs, torch.randn(T, B, A), agent.log_alpha.detach().exp())
    extra = ({n: p.detach() for n, p in agent.critic.named_parameters()},)
    fused, _, _ = agent.gradients["actor"].per_task_gradients(ab, agent.task_index, extra)
    oracle = loop_gradients(agent.losses.actor_loss, agent.actor, ab, extra)
    for name in oracle:
        torch.testing.assert_close(fused[name], oracle[name], rtol=1e-4, atol=1e-6)


# -- variant-specific mechanics ---------------------------------------------------------------
def test_moore_gram_schmidt_gives_orthonormal_experts_in_their_span():
    g = torch.Generator().manual_seed(4)
    vectors = torch.randn(2, 5, 4, 9, generator=g)  # [T, N, k, h]
    basis = gram_schmidt(vectors)
    eye = torch.eye(4).expand(2, 5, 4, 4)
    torch.testing.assert_close(basis @ basis.transpose(-1, -2), eye, rtol=0, atol=1e-5)
    # each u_i lies in span(v_1..v_i): projecting v_1..v_i onto u_1..u_i reproduces them
    coefficients = vectors @ basis.transpose(-1, -2)  # [.., k, k], lower triangular
    torch.testing.assert_close(
        coefficients.triu(1), torch.zeros_like(coefficients), atol=1e-5, rtol=0
    )
    # a zero expert output stays finite (no NaN from normalising a zero vector)
    assert torch.isfinite(gram_schmidt(torch.zeros(3, 2, 5))).all()


def test_paco_composes_each_tasks_network_from_the_parameter_sets():
    net = make_net("paco")
    g = torch.Generator().manual_seed(5)
    obs, extra = torch.randn(B, OBS, generator=g), torch.randn(B, A, generator=g)
    t = 2
    w = net.composition[t]
    h = torch.cat([obs[:, : OBS - T], extra], dim=-1)
    layers = list(net.layers)
    for i in range(0, len(layers), 2):
        weight = sum(w[k] * layers[i][k] for k in range(w.numel()))
        bias = sum(w[k] * layers[i + 1][k] for k in range(w.numel()))
        h = h @ weight.T + bias
        if i < len(layers) - 2:
            h = torch.relu(h)
    out, _ = net(obs, extra, torch.tensor(t))
    torch.testing.assert_close(out, h, rtol=1e-5, atol=1e-6)


def test_soft_modules_routes_are_distributions_that_depend_on_the_task():
    net = make_net("soft-modules")
    obs = torch.randn(B, OBS).expand(T, B, OBS)
    out, _ = net(obs, torch.zeros(T, B, A), torch.arange(T))
    # same states, different tasks: routes start near uniform (small init) but already differ
    assert (out[0] - out[1]).abs().max() > 0
    g = torch.rand(T, B, 8)
    probs = net.routes(g)
    assert [p.shape for p in probs] == [(T, B, 3, 3), (T, B, 3, 3), (T, B, 3)]
    for p in probs:
        torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))


# -- agents with each variant -----------------------------------------------------------------
@pytest.mark.parametrize("variant", NEW)
def test_same_seed_same_agent_and_update(variant):
    first, second = make_agent(variant, seed=3), make_agent(variant, seed=3)
    other = make_agent(variant, seed=4)
    for name, value in first.actor.state_dict().items():
        assert torch.equal(second.actor.state_dict()[name], value), name
    assert any(
        not torch.equal(other.critic.state_dict()[n], v)
        for n, v in first.critic.state_dict().items()
    )
    for agent in (first, second):
        agent.update(make_batch())
    obs = make_batch(1).obs[:, 0]
    assert torch.equal(first.act(obs), second.act(obs))
    assert torch.equal(first.act(obs, deterministic=True), second.act(obs, deterministic=True))


@pytest.mark.parametrize("variant", NEW)
def test_state_dict_round_trip_continues_identically(variant):
    first = make_agent(variant, method="aligned-mtl")
    first.update(make_batch(0))
    second = make_agent(variant, method="aligned-mtl", seed=9)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    for agent in (first, second):
        result = agent.update(make_batch(1))
        assert not result.skipped
    for module in ("actor", "critic", "critic_target"):
        for key, value in getattr(first, module).state_dict().items():
            assert torch.equal(getattr(second, module).state_dict()[key], value), (module, key)
    obs = make_batch(2).obs[:, 0]
    assert torch.equal(first.act(obs), second.act(obs))


@pytest.mark.parametrize("variant", NEW)
def test_representation_level_update_runs(variant):
    agent = make_agent(variant, method="aligned-mtl-ub")
    assert agent.gradients["critic"].mode == "representation"
    result = agent.update(make_batch(), collect_stats=True)
    assert not result.skipped and result.weights["critic"].shape == (T,)


@pytest.mark.parametrize("variant", NEW)
def test_short_training_run_lowers_the_critic_loss(variant):
    """200 updates on one fixed batch with gamma = 0 (fixed targets = rewards)."""
    agent = make_agent(variant, gamma=0.0, critic_lr=1e-3)
    batch = make_batch(5)
    first = agent.update(batch).metrics["critic_loss"].mean()
    for _ in range(199):
        result = agent.update(batch)
    assert not result.skipped
    last = result.metrics["critic_loss"].mean()
    assert last < 0.3 * first, (float(first), float(last))


def test_options_reach_actor_and_critic_networks():
    g = torch.Generator().manual_seed(0)
    actor = TanhGaussianActor("moore", OBS, T, A, [8], generator=g, options={"num_experts": 3})
    critic = TwinCritic("paco", OBS, T, A, [8], generator=g, options={"num_experts": 2})
    assert actor.net.task_weights.shape == (T, 3)
    assert critic.q1.composition.shape == (T, 2) and critic.q2.composition.shape == (T, 2)
    defaults = TwinCritic("soft-modules", OBS, T, A, [8], generator=g)
    assert (defaults.q1.num_modules, defaults.q1.num_module_layers) == (2, 2)
    assert defaults.q1.module_hidden == 256


def test_agent_config_options_reach_the_agent():
    agent = make_agent("moore", num_experts=3)
    assert agent.actor.net.task_weights.shape == (T, 3)


def test_every_variant_is_known_to_the_config():
    from mtrl_align import config

    assert set(config.VARIANTS) == set(VARIANTS)
