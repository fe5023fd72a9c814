"""The reference MT-SAC's settings as options: init scheme and head scale, gradient clipping in
units of the mean-reduced loss, Adam's epsilon and the log-std parametrisation.

Oracles: the uniform distributions' closed-form moments for the init; the reference's own
loss (mean over critics, tasks and samples) differentiated and clipped with
``torch.nn.utils.clip_grad_norm_`` for the clip; the clamp and tanh maps written out here.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from sac_batches import OBS, A, B, T, make_batch

from agents import MultiTaskSAC
from agents.actor import TanhGaussianActor, bound_log_std
from agents.critic import TwinCritic
from agents.initialization import INIT_SCHEMES, InitSpec
from agents.networks import MLP_VARIANTS, VARIANTS
from mtrl_align.config import (
    INIT_SCHEMES as CONFIG_INIT_SCHEMES,
)
from mtrl_align.config import (
    LOG_STD_BOUNDS as CONFIG_LOG_STD_BOUNDS,
)
from mtrl_align.config import (
    MLP_VARIANTS as CONFIG_MLP_VARIANTS,
)
from mtrl_align.config import AgentConfig, AggregationConfig, load_train_config
from mtrl_align.config_io import ConfigError


def _uniform_moments_ok(values: torch.Tensor, bound: float) -> None:
    """values look like i.i.d. U(-bound, bound): inside the bound, variance bound^2 / 3."""
    values = values.detach().double().flatten()
    assert values.abs().max() <= bound
    if values.numel() < 8:  # too few draws for the moments (e.g. a critic's one output bias)
        assert torch.count_nonzero(values) == values.numel()
        return
    expected = bound**2 / 3
    # the sample variance of n uniforms has relative standard error sqrt(0.8 / n)
    tolerance = 6 * math.sqrt(0.8 / values.numel()) * expected
    assert abs(values.var().item() - expected) < tolerance
    assert abs(values.mean().item()) < 6 * math.sqrt(expected / values.numel())


@pytest.mark.parametrize("variant", ["shared", "multi-head", "task-encoder"])
def test_he_uniform_init_and_small_heads_follow_the_formulas(variant):
    gen = torch.Generator().manual_seed(0)
    hidden = [256, 256]
    actor = TanhGaussianActor(
        variant, OBS, T, A, hidden, generator=gen, init=InitSpec("he-uniform", 1e-3)
    )
    critic = TwinCritic(
        variant, OBS, T, A, hidden, generator=gen, init=InitSpec("he-uniform", 3e-3)
    )
    for net, head in ((actor.net, 1e-3), (critic.q1, 3e-3), (critic.q2, 3e-3)):
        widths = [net.trunk[0].shape[1], *hidden[:-1]]
        for i, fan_in in enumerate(widths):
            _uniform_moments_ok(net.trunk[2 * i], math.sqrt(6.0 / fan_in))
            assert torch.count_nonzero(net.trunk[2 * i + 1]) == 0
        if variant == "multi-head":
            head_weight, head_bias = net.heads["weight"], net.heads["bias"]
        else:
            head_weight, head_bias = net.out_weight, net.out_bias
        # weights and biases of the head together: U(-head, head)
        _uniform_moments_ok(torch.cat([head_weight.flatten(), head_bias.flatten()]), head)


def test_torch_init_is_pytorch_linear_default():
    gen = torch.Generator().manual_seed(1)
    net = TanhGaussianActor("shared", OBS, T, A, [300, 300], generator=gen).net
    for i in range(0, len(net.trunk), 2):
        fan_in = net.trunk[i].shape[1]
        _uniform_moments_ok(net.trunk[i], 1 / math.sqrt(fan_in))
        bias = net.trunk[i + 1]
        assert bias.abs().max() <= 1 / math.sqrt(fan_in) and torch.count_nonzero(bias) > 0


def test_he_uniform_without_head_bound_keeps_the_scheme_on_the_head():
    gen = torch.Generator().manual_seed(2)
    net = TanhGaussianActor(
        "shared", OBS, T, 64, [256], generator=gen, init=InitSpec("he-uniform")
    ).net
    _uniform_moments_ok(net.out_weight, math.sqrt(6.0 / 256))
    assert torch.count_nonzero(net.out_bias) == 0


def test_log_std_clip_and_tanh_maps_at_their_bounds():
    low, high = -20.0, 2.0
    raw = torch.tensor([-1e4, -25.0, -20.0, -3.0, 0.0, 1.5, 2.0, 7.0, 1e4], requires_grad=True)
    clipped = bound_log_std(raw, low, high, "clip")
    expected = [low, low, -20.0, -3.0, 0.0, 1.5, 2.0, high, high]
    assert clipped.tolist() == expected
    (grad,) = torch.autograd.grad(clipped.sum(), raw)
    inside = [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]  # clamp passes the bounds' gradient
    assert grad.tolist() == inside

    squashed = bound_log_std(raw, low, high, "tanh")
    assert squashed[0].item() == pytest.approx(low) and squashed[-1].item() == pytest.approx(high)
    assert squashed[4].item() == pytest.approx((low + high) / 2)  # raw 0: the middle, -9
    assert bool((squashed >= low).all() and (squashed <= high).all())
    (grad,) = torch.autograd.grad(squashed[4], raw)
    assert grad[4].item() == pytest.approx((high - low) / 2)  # 11x sensitivity at 0


def test_reference_settings_start_the_policy_near_std_one():
    """He-uniform with a 1e-3 head and the clip: raw log-std ~0, std ~1 (the tanh map would
    give exp(-9) at the same raw outputs)."""
    gen = torch.Generator().manual_seed(3)
    actor = TanhGaussianActor(
        "shared",
        OBS,
        T,
        A,
        [64, 64],
        generator=gen,
        init=InitSpec("he-uniform", 1e-3),
        log_std_bound="clip",
    )
    obs = make_batch().obs
    _, log_std, _ = actor(obs, torch.arange(T))
    assert log_std.abs().max() < 0.05


def make_agent(**agent_kw) -> MultiTaskSAC:
    config = AgentConfig(actor_hidden=[16, 16], critic_hidden=[16, 16], **agent_kw)
    return MultiTaskSAC(config, AggregationConfig(method="uniform"), T, OBS, A, seed=0)


def _mean_reduced_gradients(agent: MultiTaskSAC, batch) -> tuple[list, list]:
    """The reference's gradients, computed here: critic loss = mean over (2 critics, T, B) of
    (Q - r)^2 (gamma = 0, so the target is the reward); actor loss = mean over (T, B) of
    alpha_t log pi - min Q with the agent's policy noise, log pi from torch.distributions."""
    critic = copy.deepcopy(agent.critic)
    actor = copy.deepcopy(agent.actor)
    index = torch.arange(T)
    q, _ = critic(batch.obs, batch.actions, index)
    critic_loss = (q - batch.rewards.unsqueeze(0)).pow(2).mean()
    critic_grads = torch.autograd.grad(critic_loss, list(critic.parameters()))

    noise_gen = torch.Generator().manual_seed(0 + 1)  # the agent's noise stream (seed + 1)
    torch.randn((T, B, A), generator=noise_gen)  # drawn first, for the Bellman targets
    noise = torch.randn((T, B, A), generator=noise_gen)
    mean, log_std, _ = actor(batch.obs, index)
    pre_tanh = mean + log_std.exp() * noise
    normal = torch.distributions.Normal(mean, log_std.exp())
    log_prob = (normal.log_prob(pre_tanh) - torch.log1p(-torch.tanh(pre_tanh).pow(2))).sum(-1)
    q_pi, _ = critic.requires_grad_(False)(batch.obs, torch.tanh(pre_tanh), index)
    alpha = agent.log_alpha.detach().exp().unsqueeze(-1)
    actor_loss = (alpha * log_prob - torch.minimum(q_pi[0], q_pi[1])).mean()
    actor_grads = torch.autograd.grad(actor_loss, list(actor.parameters()))
    return list(critic_grads), list(actor_grads)


def test_grad_clip_is_the_reference_clip_of_the_mean_reduced_loss():
    batch = make_batch()
    clip = 1e-3  # far below the gradients' norms: the clip is active for both networks
    agent = make_agent(gamma=0.0, grad_clip=clip)
    mean_critic, mean_actor = _mean_reduced_gradients(agent, batch)
    agent.update(batch)
    for grads, module, factor in (
        (mean_critic, agent.critic, 2 * T),
        (mean_actor, agent.actor, T),
    ):
        reference = [g.clone() for g in grads]
        holders = [torch.nn.Parameter(torch.zeros_like(g)) for g in reference]
        for holder, g in zip(holders, reference, strict=True):
            holder.grad = g
        norm = torch.nn.utils.clip_grad_norm_(holders, clip)
        assert norm > 10 * clip
        for holder, param in zip(holders, module.parameters(), strict=True):
            torch.testing.assert_close(param.grad, factor * holder.grad, rtol=2e-4, atol=1e-8)


def test_adam_eps_reaches_every_optimiser():
    agent = make_agent(adam_eps=1e-5)
    for optimizer in (agent.actor_optimizer, agent.critic_optimizer, agent.alpha_optimizer):
        assert [group["eps"] for group in optimizer.param_groups] == [1e-5]


def test_config_choices_match_the_agents_and_bad_values_are_named():
    assert CONFIG_INIT_SCHEMES == INIT_SCHEMES
    assert CONFIG_MLP_VARIANTS == MLP_VARIANTS
    assert set(CONFIG_LOG_STD_BOUNDS) == {"tanh", "clip"}
    with pytest.raises(ConfigError, match="'agent.init'.*'xavier'.*he-uniform"):
        load_train_config(None, ["agent.init=xavier"])
    with pytest.raises(ConfigError, match="'agent.log_std_bound'.*'sigmoid'"):
        load_train_config(None, ["agent.log_std_bound=sigmoid"])
    # every architecture takes the reference init (issue 33)
    config = load_train_config(None, ["agent.variant=moore", "agent.init=he-uniform"])
    assert config.agent.init == "he-uniform"
    with pytest.raises(ConfigError, match="adam_eps"):
        load_train_config(None, ["agent.adam_eps=0"])


# -- every architecture (issue 33) -------------------------------------------------------------
HEAD_NAMES = {"out_weight", "out_bias", "heads.weight", "heads.bias"}


def _roles(variant: str, module: torch.nn.Module) -> dict[str, tuple]:
    """Each parameter's rule, written from the architectures' docstrings: ("hidden", fan_in,
    is_bias), ("head",), or ("own", name of the check). A ParameterList keeps [w0, b0, w1, ...];
    a bias's fan-in is its weight's last dim."""
    params = dict(module.named_parameters())
    roles: dict[str, tuple] = {}
    for name, value in params.items():
        prefix, _, index = name.rpartition(".")
        if name in HEAD_NAMES:
            roles[name] = ("head",)
        elif name in ("task_embedding", "composition", "task_weights"):
            roles[name] = ("own", name)
        elif variant == "soft-modules" and prefix == "route_out":
            roles[name] = ("own", "route_out_bias" if int(index) % 2 else "route_out_weight")
        elif variant == "film-per-unit" and prefix == "film" and int(index) % 2:
            roles[name] = ("own", "zero")
        elif variant == "paco" and int(index) >= len(module.layers) - 2:
            roles[name] = ("head",)  # the output layer's K parameter sets
        elif int(index) % 2:
            roles[name] = ("hidden", params[f"{prefix}.{int(index) - 1}"].shape[-1], True)
        else:
            roles[name] = ("hidden", value.shape[-1], False)
    return roles


def _check_own(check: str, value: torch.Tensor, num_experts: int | None) -> None:
    if check == "task_embedding":  # N(0, 1)
        assert abs(value.mean().item()) < 6 / math.sqrt(value.numel())
        assert abs(value.var().item() - 1) < 6 * math.sqrt(2 / value.numel())
    elif check == "composition":  # identical sets: convex rows
        assert (value >= 0).all()
        torch.testing.assert_close(value.sum(1), torch.ones(value.shape[0]))
    elif check == "task_weights":  # MOORE's Glorot-uniform
        assert value.abs().max() <= math.sqrt(6 / (value.shape[0] + num_experts))
    elif check == "route_out_weight":
        _uniform_moments_ok(value, 1e-3)
    else:  # route_out_bias, zero
        assert torch.count_nonzero(value) == 0


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scheme", ["torch", "he-uniform"])
def test_every_architecture_initialises_by_the_formulas(variant, scheme):
    heads = {"actor": 1e-3, "critic": 3e-3} if scheme == "he-uniform" else {}
    config = AgentConfig(
        variant=variant,
        actor_hidden=[64, 64],
        critic_hidden=[64, 64],
        task_embedding_dim=32,
        init=scheme,
        actor_head_init=heads.get("actor"),
        critic_head_init=heads.get("critic"),
        module_hidden=32 if variant == "soft-modules" else None,
    )
    agent = MultiTaskSAC(config, AggregationConfig(), T, OBS, A, seed=0)
    checked = 0
    for network, net in (("actor", agent.actor.net), ("critic", agent.critic.q1)):
        for name, role in _roles(variant, net).items():
            value = dict(net.named_parameters())[name].detach()
            if role[0] == "own":
                _check_own(role[1], value, getattr(net, "num_experts", None))
            elif role[0] == "head" and network in heads:  # the reference's small heads
                _uniform_moments_ok(value, heads[network])
            elif role[0] == "head" or scheme == "torch":  # PyTorch's Linear, head included
                fan_in = value.shape[-1] if role[0] == "head" and value.dim() > 1 else None
                fan_in = fan_in or _fan_in_of_bias(net, name, role)
                _uniform_moments_ok(value, 1 / math.sqrt(fan_in))
            elif role[2]:  # he-uniform: zero biases
                assert torch.count_nonzero(value) == 0, name
            else:
                _uniform_moments_ok(value, math.sqrt(6.0 / role[1]))
            checked += 1
    assert checked == len(list(agent.actor.net.parameters())) + len(
        list(agent.critic.q1.parameters())
    )


def _fan_in_of_bias(net: torch.nn.Module, name: str, role: tuple) -> int:
    """Fan-in of a hidden parameter (role[1]) or of a head bias (its weight's last dim)."""
    if role[0] == "hidden":
        return role[1]
    params = dict(net.named_parameters())
    if name in ("out_bias", "heads.bias"):
        return params[name.replace("bias", "weight")].shape[-1]
    prefix, _, index = name.rpartition(".")  # paco's output sets [w, b]
    return params[f"{prefix}.{int(index) - 1}"].shape[-1]


BEFORE_ISSUE_33 = {
    "shared": "2e870c9f2448e77e",
    "task-encoder": "c3e5388cd6022161",
    "multi-head": "9f866da8bfeafce4",
    "soft-modules": "9d7182962d9df6e9",
    "moore": "a431e79b6de61226",
    "film-per-unit": "a28a5e5ab4ad4ec2",  # the variant called film before issue 33
    "paco": "f44e20a8ba515e99",  # with identical_init=false (the only PaCo init before)
}
"""SHA-256 (first 16 hex digits) of the initial actor and critic state dicts (seed 5, T = 3,
obs 10, actions 2, hidden [16, 16]) drawn by the code before issue 33."""


@pytest.mark.parametrize("variant", sorted(BEFORE_ISSUE_33))
def test_default_init_draws_the_same_numbers_as_before(variant):
    import hashlib

    config = AgentConfig(
        variant=variant,
        actor_hidden=[16, 16],
        critic_hidden=[16, 16],
        identical_init=False if variant == "paco" else None,
    )
    agent = MultiTaskSAC(config, AggregationConfig(), T, OBS, A, seed=5)
    digest = hashlib.sha256()
    for module in (agent.actor, agent.critic):
        for name, value in module.state_dict().items():
            digest.update(name.encode())
            digest.update(value.detach().contiguous().numpy().tobytes())
    assert digest.hexdigest()[:16] == BEFORE_ISSUE_33[variant]


def test_weight_decay_and_temperature_beta1_reach_the_optimisers():
    """AdamW (decoupled decay, BRC's optax.adamw) for actor and critics when
    ``agent.weight_decay`` > 0, plain Adam otherwise; ``agent.alpha_beta1`` for the
    temperatures. Oracle: one torch.optim.AdamW step on a copy of the critic."""
    agent = MultiTaskSAC(
        AgentConfig(actor_hidden=[8], critic_hidden=[8], weight_decay=0.2, alpha_beta1=0.5),
        AggregationConfig(),
        T,
        OBS,
        A,
        seed=0,
    )
    assert isinstance(agent.critic_optimizer, torch.optim.AdamW)
    assert isinstance(agent.actor_optimizer, torch.optim.AdamW)
    assert agent.critic_optimizer.param_groups[0]["weight_decay"] == 0.2
    assert agent.alpha_optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    plain = MultiTaskSAC(
        AgentConfig(actor_hidden=[8], critic_hidden=[8]), AggregationConfig(), T, OBS, A
    )
    assert type(plain.critic_optimizer) is torch.optim.Adam
    assert plain.alpha_optimizer.param_groups[0]["betas"] == (0.9, 0.999)

    critic = copy.deepcopy(agent.critic)
    recorded = {}
    agent.critic_optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: recorded.update(
            {id(p): p.grad.clone() for g in opt.param_groups for p in g["params"]}
        )
    )
    agent.update(make_batch(0))
    oracle = torch.optim.AdamW(
        critic.parameters(), lr=agent.config.critic_lr, eps=agent.config.adam_eps, weight_decay=0.2
    )
    for mine, theirs in zip(agent.critic.parameters(), critic.parameters(), strict=True):
        theirs.grad = recorded[id(mine)]
    oracle.step()
    for mine, theirs in zip(agent.critic.parameters(), critic.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("agent.weight_decay=-0.1", "'agent.weight_decay': -0.1; must be >= 0"),
        ("agent.alpha_beta1=1.0", "'agent.alpha_beta1': 1.0; must be in"),
    ],
)
def test_bad_optimiser_options_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(None, [override])


@pytest.mark.parametrize("sync_free", [False, True])
def test_a_shared_temperature_gets_the_task_mean_gradient_and_stays_one(sync_free):
    """BRC's single temperature: every log_alpha entry receives mean_t -(E log pi_t + H*)
    (computed here from the update's per-task log-probabilities) and the entries stay equal."""
    config = AgentConfig(
        actor_hidden=[8], critic_hidden=[8], shared_temperature=True, target_entropy=-0.5
    )
    agent = MultiTaskSAC(config, AggregationConfig(), T, OBS, A, seed=1, sync_free=sync_free)
    grads = []
    original = agent._temperature_step

    def recording(*args):
        metrics = original(*args)
        grads.append((agent.log_alpha.grad.clone(), metrics["log_prob"].clone()))
        return metrics

    agent._temperature_step = recording
    for seed in range(4):
        agent.update(make_batch(seed))
    for grad, log_prob in grads:
        per_task = -(log_prob + config.target_entropy)
        assert not torch.allclose(per_task, per_task.mean().expand(T))  # tasks do differ
        torch.testing.assert_close(grad, per_task.mean().expand(T))
    alpha = agent.log_alpha.detach()
    assert torch.equal(alpha, alpha[0].expand(T)) and not math.isclose(float(alpha[0]), 0.0)
