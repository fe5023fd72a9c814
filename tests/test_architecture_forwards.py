"""CARE, MOORE, FiLM and per-unit FiLM forwards against per-sample computations written out here.

Each network's parameters are redrawn at random (so no zero bias or special init hides a
mistake), then its all-task forward [T, N, ...] and its one-task forward [N, ...] are compared
with a loop over tasks and samples that applies each layer as ``W @ x + b`` following the
papers' equations (see each architecture's module docstring). MOORE's orthonormal basis comes
from ``torch.linalg.qr`` (Gram-Schmidt in expert order = QR with a positive diagonal of R), so
the test checks that the forward really orthogonalises the experts, not only the helper.
Everything runs in float64, so the comparisons are tight.
"""

from __future__ import annotations

import pytest
import torch

from agents.networks import build_network

T, STATE, A, N = 3, 7, 2, 4
OBS = STATE + T
HIDDEN = [8, 6]
OUT = 3
EMBED = 5
K = 3  # experts (MOORE) / encoders (CARE)


def make_net(variant: str, with_action: bool) -> torch.nn.Module:
    options = {"num_experts": K} if variant in ("care", "moore") else {}
    net = build_network(
        variant,
        OBS,
        T,
        extra_dim=A if with_action else 0,
        hidden=HIDDEN,
        out_dim=OUT,
        embedding_dim=EMBED,
        generator=torch.Generator().manual_seed(0),
        options=options,
    ).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.6 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return net


def inputs(with_action: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(2)
    one_hot = torch.eye(T, dtype=torch.float64).unsqueeze(1).expand(T, N, T)
    obs = torch.cat([torch.randn(T, N, STATE, generator=g, dtype=torch.float64), one_hot], -1)
    action = torch.rand(T, N, A, generator=g, dtype=torch.float64) * 2 - 1
    return obs, (action if with_action else None)


def affine(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return weight @ x + bias


def state_and_action(obs, action, t: int, n: int) -> torch.Tensor:
    """[s, a] of sample n of task t (the state without the one-hot id)."""
    parts = [obs[t, n, :STATE]]
    if action is not None:
        parts.append(action[t, n])
    return torch.cat(parts)


def care_by_hand(net, obs, action):
    p = dict(net.named_parameters())
    out = torch.zeros(T, N, OUT, dtype=obs.dtype)
    features = torch.zeros(T, N, HIDDEN[-1], dtype=obs.dtype)
    for t in range(T):
        u = torch.relu(p["task_embedding"][t])  # mtrl's TaskEncoder: Embedding, ReLU
        c = torch.relu(affine(p["context.0"], p["context.1"], u))
        c = torch.relu(affine(p["context.2"], p["context.3"], c))
        c = affine(p["context.4"], p["context.5"], c)  # context, no activation at the end
        scores = torch.relu(affine(p["attention.0"], p["attention.1"], c))
        scores = torch.relu(affine(p["attention.2"], p["attention.3"], scores))
        scores = affine(p["attention.4"], p["attention.5"], scores)
        weights = scores.exp() / scores.exp().sum()  # softmax over the K encoders
        for n in range(N):
            s = obs[t, n, :STATE]
            z = torch.zeros(EMBED, dtype=obs.dtype)
            for j in range(K):
                first = torch.relu(affine(p["encoders.0"][j], p["encoders.1"][j], s))
                z = z + weights[j] * affine(p["encoders.2"][j], p["encoders.3"][j], first)
            h = torch.cat([z, c] + ([action[t, n]] if action is not None else []))
            h = torch.relu(affine(p["trunk.0"], p["trunk.1"], h))
            h = torch.relu(affine(p["trunk.2"], p["trunk.3"], h))
            features[t, n] = h
            out[t, n] = affine(p["out_weight"], p["out_bias"], h)
    return out, features


def moore_by_hand(net, obs, action):
    p = dict(net.named_parameters())
    out = torch.zeros(T, N, OUT, dtype=obs.dtype)
    features = torch.zeros(T, N, HIDDEN[-1], dtype=obs.dtype)
    for t in range(T):
        for n in range(N):
            x = state_and_action(obs, action, t, n)
            experts = []
            for j in range(K):
                first = torch.relu(affine(p["experts.0"][j], p["experts.1"][j], x))
                experts.append(affine(p["experts.2"][j], p["experts.3"][j], first))  # linear last
            V = torch.stack(experts)  # [K, h]
            Q, R = torch.linalg.qr(V.T)  # V^T = Q R, Q [h, K] orthonormal columns
            U = (Q * torch.sign(torch.diagonal(R))).T  # rows: Gram-Schmidt in expert order
            assert torch.allclose(U @ U.T, torch.eye(K, dtype=U.dtype), atol=1e-12)
            f = torch.tanh(U.T @ p["task_weights"][t])
            features[t, n] = f
            out[t, n] = affine(p["heads.weight"][t], p["heads.bias"][t], f)
    return out, features


def film_by_hand(net, obs, action):
    """The reference FiLM: a 3-layer state encoder, each layer scaled and shifted by one scalar
    pair (gamma_l, beta_l) from an MLP of relu(embedding); the SAC MLP on [z, u, a]."""
    p = dict(net.named_parameters())
    out = torch.zeros(T, N, OUT, dtype=obs.dtype)
    features = torch.zeros(T, N, HIDDEN[-1], dtype=obs.dtype)
    for t in range(T):
        u = torch.relu(p["task_embedding"][t])
        f = torch.relu(affine(p["film.0"], p["film.1"], u))
        f = torch.relu(affine(p["film.2"], p["film.3"], f))
        f = affine(p["film.4"], p["film.5"], f)  # [gamma_1, beta_1, gamma_2, beta_2, ...]
        for n in range(N):
            x = obs[t, n, :STATE]
            for layer in range(3):
                x = affine(p[f"encoder.{2 * layer}"], p[f"encoder.{2 * layer + 1}"], x)
                if layer < 2:
                    x = torch.relu(x)
                x = x * f[2 * layer] + f[2 * layer + 1]
            h = torch.cat([x, u] + ([action[t, n]] if action is not None else []))
            h = torch.relu(affine(p["trunk.0"], p["trunk.1"], h))
            h = torch.relu(affine(p["trunk.2"], p["trunk.3"], h))
            features[t, n] = h
            out[t, n] = affine(p["out_weight"], p["out_bias"], h)
    return out, features


def film_per_unit_by_hand(net, obs, action):
    p = dict(net.named_parameters())
    out = torch.zeros(T, N, OUT, dtype=obs.dtype)
    features = torch.zeros(T, N, HIDDEN[-1], dtype=obs.dtype)
    for t in range(T):
        e = p["task_embedding"][t]
        for n in range(N):
            h = state_and_action(obs, action, t, n)
            for layer, width in enumerate(HIDDEN):
                generated = affine(p[f"film.{2 * layer}"], p[f"film.{2 * layer + 1}"], e)
                gamma, beta = 1.0 + generated[:width], generated[width:]
                pre = affine(p[f"trunk.{2 * layer}"], p[f"trunk.{2 * layer + 1}"], h)
                h = torch.relu(gamma * pre + beta)
            features[t, n] = h
            out[t, n] = affine(p["out_weight"], p["out_bias"], h)
    return out, features


BY_HAND = {
    "care": care_by_hand,
    "moore": moore_by_hand,
    "film": film_by_hand,
    "film-per-unit": film_per_unit_by_hand,
}


@pytest.mark.parametrize("with_action", [True, False], ids=["critic", "actor"])
@pytest.mark.parametrize("variant", sorted(BY_HAND))
def test_forward_equals_the_per_sample_equations(variant, with_action):
    net = make_net(variant, with_action)
    obs, action = inputs(with_action)
    expected_out, expected_features = BY_HAND[variant](net, obs, action)
    with torch.no_grad():
        out, features = net(obs, action, torch.arange(T))
    torch.testing.assert_close(out, expected_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(features, expected_features, rtol=1e-10, atol=1e-12)
    for t in range(T):  # the one-task form gives the same rows
        with torch.no_grad():
            one, _ = net(obs[t], None if action is None else action[t], torch.tensor(t))
        torch.testing.assert_close(one, expected_out[t], rtol=1e-10, atol=1e-12)


def test_moore_features_have_the_task_weights_as_orthonormal_coordinates():
    """A property on top of the hand computation: atanh(features) = U^T w_t with orthonormal
    rows U spanning the experts, so it lies in their span and its norm is |w_t|."""
    net = make_net("moore", with_action=False)
    obs, _ = inputs(False)
    with torch.no_grad():
        _, features = net(obs, None, torch.arange(T))
    p = dict(net.named_parameters())
    for t in range(T):
        x = obs[t, 0, :STATE]
        hidden = [torch.relu(affine(p["experts.0"][j], p["experts.1"][j], x)) for j in range(K)]
        experts = torch.stack(
            [affine(p["experts.2"][j], p["experts.3"][j], hidden[j]) for j in range(K)]
        )
        basis, _ = torch.linalg.qr(experts.T)  # an orthonormal basis of their span, [h, K]
        direction = torch.atanh(features[t, 0])
        torch.testing.assert_close(basis @ (basis.T @ direction), direction, rtol=1e-9, atol=1e-10)
        norm = p["task_weights"][t].norm()
        torch.testing.assert_close(direction.norm(), norm, rtol=1e-9, atol=1e-12)
