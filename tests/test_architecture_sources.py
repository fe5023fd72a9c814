"""Each architecture against its source's definition, written out here layer by layer from the
network's own parameters (plain matmuls, no helper of ``agents.architectures``).

Sources: Soft Modularization, CARE and FiLM as in metaworld-algorithms (``nn/soft_modules.py``,
``nn/care.py``, ``nn/film.py``) and facebookresearch/mtrl (``build_mlp``, ``TaskEncoder``);
PaCo as in the authors' paco-mtrl (``CompositionalFC``, ``kernel_identical_init``).
"""

from __future__ import annotations

import torch
from sac_batches import OBS, A, B, T

from agents.networks import build_network

STATE = OBS - T


def linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return h @ weight.T + bias


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, OBS, generator=g), torch.randn(B, A, generator=g)


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
    net = build_network(
        "soft-modules",
        OBS,
        T,
        A,
        [12, 12],
        2,
        generator=torch.Generator().manual_seed(1),
        options=options,
    )
    with torch.no_grad():  # routes far from uniform, so that every gate matters
        for i in range(0, len(net.route_out), 2):
            net.route_out[i].normal_(0.0, 2.0, generator=torch.Generator().manual_seed(i))
    obs, action = inputs()
    for t in range(T):
        out, features = net(obs, action, torch.tensor(t))
        expected_out, expected_features = soft_modules_reference(net, obs, action, t)
        torch.testing.assert_close(features, expected_features, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-6)
    # the routing input g has units of both signs (so a ReLU on g would change the gates)
    # and every routing parameter gets gradient through the outputs
    seen = {}
    handle = net.route_up[0].register_hook(lambda grad: seen.setdefault("up", grad))
    out, _ = net(obs, action, torch.tensor(0))
    out.sum().backward()
    handle.remove()
    assert seen["up"].abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.routing_input)
