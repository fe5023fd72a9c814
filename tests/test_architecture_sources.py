"""Each architecture against its source's definition, written out here layer by layer from the
network's own parameters (plain matmuls, no helper of ``agents.architectures``).

Sources: Soft Modularization, CARE and FiLM as in metaworld-algorithms (``nn/soft_modules.py``,
``nn/care.py``, ``nn/film.py``) and facebookresearch/mtrl (``build_mlp``, ``TaskEncoder``);
PaCo as in the authors' paco-mtrl (``CompositionalFC``, ``kernel_identical_init``).
"""

from __future__ import annotations

import json

import pytest
import torch
from sac_batches import OBS, A, B, T, make_batch

from agents import MultiTaskSAC
from agents.architectures.care import load_task_descriptions
from agents.networks import build_network
from mtrl_align.config import AgentConfig, AggregationConfig, load_train_config
from mtrl_align.config_io import ConfigError

STATE = OBS - T


def linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return h @ weight.T + bias


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, OBS, generator=g), torch.randn(B, A, generator=g)


def network(variant: str, seed: int, hidden=(16, 16), **kw) -> torch.nn.Module:
    """A critic-shaped network (extra = the action, 2 outputs) of ``variant``."""
    generator = torch.Generator().manual_seed(seed)
    return build_network(variant, OBS, T, A, list(hidden), 2, generator=generator, **kw)


def assert_matches_reference(net, reference, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's outputs and features equal ``reference(net, obs, action, t)`` for every
    task t; returns the inputs used."""
    obs, action = inputs(seed)
    for t in range(T):
        out, features = net(obs, action, torch.tensor(t))
        expected_out, expected_features = reference(net, obs, action, t)
        torch.testing.assert_close(features, expected_features, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-6)
    return obs, action


# -- Soft Modularization ----------------------------------------------------------------------
def soft_modules_reference(net, obs, action, t):
    """metaworld-algorithms' SoftModularizationNetwork for one task (notes 1-5 there): the
    routing input task_embedding_fc is Linear, ReLU, Linear with its output not activated."""
    e = torch.cat([obs[:, :STATE], action], dim=-1)
    enc = list(net.encoder)
    for i in range(0, len(enc), 2):
        e = linear(e, enc[i], enc[i + 1])
        if i < len(enc) - 2:
            e = torch.relu(e)
    w1, b1, w2, b2 = list(net.routing_input)
    g = linear(torch.relu(linear(torch.relu(e * net.task_embedding[t]), w1, b1)), w2, b2)
    n, depth = net.num_modules, net.num_module_layers
    probs, previous = [], []
    for layer in range(depth):
        h = g
        if layer > 0:
            up_w, up_b = net.route_up[2 * layer - 2], net.route_up[2 * layer - 1]
            h = g * linear(torch.cat(previous, dim=-1), up_w, up_b)
        logits = linear(torch.relu(h), net.route_out[2 * layer], net.route_out[2 * layer + 1])
        if layer < depth - 1:
            p = torch.softmax(logits.reshape(B, n, n), dim=-1)
            previous.append(p.reshape(B, n * n))
        else:
            p = torch.softmax(logits, dim=-1)
        probs.append(p)
    x = [torch.relu(e)] * n
    for layer in range(depth):
        weight, bias = net.module_layers[2 * layer], net.module_layers[2 * layer + 1]
        y = [linear(x[j], weight[j], bias[j]) for j in range(n)]
        if layer < depth - 1:
            x = [
                torch.relu(sum(probs[layer][:, i, j : j + 1] * y[j] for j in range(n)))
                for i in range(n)
            ]
    features = torch.relu(sum(probs[-1][:, j : j + 1] * y[j] for j in range(n)))
    return linear(features, net.out_weight, net.out_bias), features


def test_soft_modules_follow_the_source_with_the_last_routing_layer_unactivated():
    options = {"num_modules": 3, "num_module_layers": 3, "module_hidden": 8}
    net = network("soft-modules", 1, (12, 12), options=options)
    with torch.no_grad():  # routes far from uniform, so that every gate matters
        for i in range(0, len(net.route_out), 2):
            net.route_out[i].normal_(0.0, 2.0, generator=torch.Generator().manual_seed(i))
    obs, action = assert_matches_reference(net, soft_modules_reference, 0)
    # every routing parameter gets gradient through the outputs
    out, _ = net(obs, action, torch.tensor(0))
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.route_up)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.routing_input)


# -- CARE -------------------------------------------------------------------------------------
def mlp_reference(h: torch.Tensor, params, activate_last: bool = False) -> torch.Tensor:
    params = list(params)
    for i in range(0, len(params), 2):
        h = linear(h, params[i], params[i + 1])
        if i < len(params) - 2 or activate_last:
            h = torch.relu(h)
    return h


def care_reference(net, obs, action, t):
    """CARE for one task as mtrl builds it: u = ReLU(embedding) (or the projected description),
    context = build_mlp(num_layers=2) (three linear layers), attention = build_mlp(num_layers=2)
    on the context, encoders = FeedForward(num_layers=2) (two linear layers each)."""
    if net.projection is None:
        u = torch.relu(net.task_embedding[t])
    else:
        u = mlp_reference(torch.relu(net.task_descriptions[t]), net.projection, True)
    context_params = list(net.context)
    attention_params = list(net.attention)
    assert len(context_params) == 6 and len(attention_params) == 6  # three linear layers each
    context = mlp_reference(u, context_params)
    alpha = torch.softmax(mlp_reference(context, attention_params), dim=-1)
    w1, b1, w2, b2 = list(net.encoders)
    state = obs[:, :STATE]
    mixture = sum(
        alpha[i] * linear(torch.relu(linear(state, w1[i], b1[i])), w2[i], b2[i])
        for i in range(net.num_experts)
    )
    trunk_in = torch.cat([mixture, context.expand(B, -1), action], dim=-1)
    h = mlp_reference(trunk_in, net.trunk, activate_last=True)
    return linear(h, net.out_weight, net.out_bias), h


def write_descriptions(path, names, width, seed=0, **extra):
    g = torch.Generator().manual_seed(seed)
    table = {name: torch.randn(width, generator=g).tolist() for name in names}
    table.update(extra)
    path.write_text(json.dumps(table))
    return table


@pytest.mark.parametrize("source", ["learned", "descriptions"])
def test_care_follows_mtrl_context_attention_and_encoders(source, tmp_path):
    descriptions = None
    if source == "descriptions":
        names = [f"task-{i}" for i in range(T)]
        write_descriptions(tmp_path / "d.json", names, 12, other=[1.0])
        descriptions = load_task_descriptions(tmp_path / "d.json", names)
    net = network(
        "care", 2, embedding_dim=6, options={"num_experts": 3}, task_descriptions=descriptions
    )
    obs, action = assert_matches_reference(net, care_reference, 1)


def test_care_with_task_descriptions_has_no_task_specific_parameters(tmp_path):
    names = ["reach-v3", "push-v3", "pick-place-v3"]
    table = write_descriptions(tmp_path / "d.json", list(reversed(names)), 9, seed=3)
    descriptions = load_task_descriptions(tmp_path / "d.json", names)
    # rows in the order of the run's tasks, not of the file
    assert descriptions.shape == (T, 9)
    for i, name in enumerate(names):
        assert descriptions[i].tolist() == pytest.approx(table[name])
    net = build_network("care", OBS, T, A, [8], 1, embedding_dim=4, task_descriptions=descriptions)
    params = dict(net.named_parameters())
    assert not any(net.is_task_specific(n) for n in params)
    assert "task_embedding" not in params
    assert "task_descriptions" in dict(net.named_buffers())  # frozen: a buffer, no gradient
    assert not net.task_descriptions.requires_grad
    obs, action = inputs(2)
    out, _ = net(obs.expand(T, B, OBS), action.expand(T, B, A), torch.arange(T))
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.projection)
    # two tasks with the same description get the same network
    same = descriptions.clone()
    same[1] = same[0]
    net = build_network("care", OBS, T, A, [8], 1, embedding_dim=4, task_descriptions=same)
    out, _ = net(obs.expand(T, B, OBS), action.expand(T, B, A), torch.arange(T))
    torch.testing.assert_close(out[0], out[1])
    assert not torch.allclose(out[0], out[2])


def test_task_description_file_errors_name_the_problem(tmp_path):
    path = tmp_path / "d.json"
    write_descriptions(path, ["a", "b"], 4)
    with pytest.raises(ValueError, match=r"no description embedding for task\(s\) \['c'\]"):
        load_task_descriptions(path, ["a", "c"])
    path.write_text(json.dumps({"a": [1.0, 2.0], "b": [1.0]}))
    with pytest.raises(ValueError, match="one length"):
        load_task_descriptions(path, ["a", "b"])
    path.write_text(json.dumps({"a": ["x"], "b": [1.0]}))
    with pytest.raises(ValueError, match="'a' must be a non-empty list of numbers"):
        load_task_descriptions(path, ["a", "b"])
    path.write_text(json.dumps([[1.0]]))
    with pytest.raises(ValueError, match="JSON object"):
        load_task_descriptions(path, ["a"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_task_descriptions(tmp_path / "none.json", ["a"])
    with pytest.raises(ValueError, match="only apply to variant"):
        build_network("film", OBS, T, A, [8], 1, task_descriptions=torch.zeros(T, 4))


def test_agent_reads_task_descriptions_and_round_trips(tmp_path):
    names = ["t0", "t1", "t2"]
    write_descriptions(tmp_path / "d.json", names, 5)
    config = AgentConfig(
        variant="care",
        actor_hidden=[8],
        critic_hidden=[8],
        task_embedding_dim=4,
        task_descriptions=str(tmp_path / "d.json"),
    )
    agent = MultiTaskSAC(config, AggregationConfig(), T, OBS, A, task_names=names)
    assert not agent.update(make_batch()).skipped
    other = MultiTaskSAC(config, AggregationConfig(), T, OBS, A, seed=4, task_names=names)
    other.load_state_dict(agent.state_dict())
    obs = make_batch(1).obs[:, 0]
    assert torch.equal(agent.act(obs, deterministic=True), other.act(obs, deterministic=True))
    with pytest.raises(ValueError, match="needs the names of the T tasks"):
        MultiTaskSAC(config, AggregationConfig(), T, OBS, A)
    with pytest.raises(
        ConfigError, match=r"'agent.task_descriptions' only applies to variant\(s\) care"
    ):
        load_train_config(None, ["agent.variant=moore", "agent.task_descriptions=x.json"])


# -- FiLM -------------------------------------------------------------------------------------
def film_reference(net, obs, action, t):
    """metaworld-algorithms' FiLMNetwork for one task: u = ReLU(embedding); a 3-layer MLP of u
    gives 3 (gamma, beta) scalar pairs; encoder layers relu(W x + b) * gamma + beta (the last
    one without ReLU); the SAC network reads [encoder output, u] (plus the critic's action)."""
    u = torch.relu(net.task_embedding[t])
    film = mlp_reference(u, net.film)
    assert film.shape == (6,)
    gamma, beta = film[0::2], film[1::2]
    x = obs[:, :STATE]
    enc = list(net.encoder)
    assert len(enc) == 6 and enc[4].shape[0] == net.task_embedding.shape[1]
    for layer in range(3):
        x = linear(x, enc[2 * layer], enc[2 * layer + 1])
        if layer < 2:
            x = torch.relu(x)
        x = x * gamma[layer] + beta[layer]
    h = mlp_reference(torch.cat([x, u.expand(B, -1), action], -1), net.trunk, True)
    return linear(h, net.out_weight, net.out_bias), h


def test_film_follows_the_reference_scalar_modulation_of_a_small_encoder():
    net = network("film", 6, embedding_dim=5)
    obs, action = assert_matches_reference(net, film_reference, 3)
    # the gammas and betas are trained through the outputs
    out, _ = net(obs.expand(T, B, OBS), action.expand(T, B, A), torch.arange(T))
    out.sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in net.film)


def test_film_per_unit_scales_and_shifts_every_hidden_unit():
    net = network("film-per-unit", 7, embedding_dim=5)
    with torch.no_grad():  # non-zero generator biases, so that the 1 + dgamma offset shows
        for i in range(1, len(net.film), 2):
            net.film[i].normal_(generator=torch.Generator().manual_seed(i))
    obs, action = inputs(4)
    t = 1
    e = net.task_embedding[t]
    h = torch.cat([obs[:, :STATE], action], -1)
    for layer in range(2):
        film = linear(e, net.film[2 * layer], net.film[2 * layer + 1])
        dgamma, beta = film[:16], film[16:]
        h = torch.relu(
            (1 + dgamma) * linear(h, net.trunk[2 * layer], net.trunk[2 * layer + 1]) + beta
        )
    out, features = net(obs, action, torch.tensor(t))
    torch.testing.assert_close(features, h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, linear(h, net.out_weight, net.out_bias), rtol=1e-5, atol=1e-6)
