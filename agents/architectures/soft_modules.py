"""Soft Modularization (Yang et al. 2020, "Multi-Task Reinforcement Learning with Soft
Modularization"): a base network of L layers x n modules whose connections are weighted per
sample by a routing network conditioned on the state and the task.

Forward for one sample (s, t), with D = hidden[-1] and d = ``module_hidden``:

* observation encoder f: e = f([s, a]) [D] (MLP with widths ``hidden``, last layer linear);
* routing input: g = MLP_g(relu(e * z_t)) [d], z_t a row of the learned task table
  ``task_embedding`` [T, D] (the linear map of the one-hot id); MLP_g is Linear D->d, ReLU,
  Linear d->d, its last layer left unactivated (as in the authors' code and the reference), so
  g has both signs;
* routing layer l = 1..L: p^1 = softmax(W_d^1 relu(g)), p^l = softmax(W_d^l relu(g *
  (W_u^l [p^1, .., p^(l-1)] + b_u^l))); p^l is [n, n] (row i: how module i of layer l+1 mixes
  the modules of layer l) for l < L and [n] (the final mixture) for l = L. The gate of a
  later layer is ReLU(g * u) with the raw g: a ReLU on g itself would zero every unit where
  g < 0 before the product, whatever the sign of u;
* modules: x^0 = relu(e) fed to all n modules of layer 1; y^l_j = W^l_j x^(l-1)_j + b^l_j;
  x^l_i = relu(sum_j p^l_ij y^l_j); features = relu(sum_j p^L_j y^L_j) [d];
* output: one linear layer d -> out (shared).

The routing output layers start near zero (U(-1e-3, 1e-3), zero bias), so every route starts
close to uniform. Only ``task_embedding`` is task-specific; the encoder, the routing network and
all modules are used by every task and are shared.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from agents.architectures.common import (
    TaskConditioned,
    join,
    linear,
    mlp,
    rows,
    run_mlp,
    task_table,
)
from agents.initialization import InitSpec

DEFAULT_NUM_MODULES = 2
DEFAULT_NUM_MODULE_LAYERS = 2
DEFAULT_MODULE_HIDDEN = 256
ROUTING_INIT = 1e-3


class SoftModularNetwork(TaskConditioned):
    """Base network of ``num_module_layers`` x ``num_modules`` modules plus a routing network.

    Args:
        hidden: widths of the observation encoder f (the last one is D).
        num_modules: n, modules per layer.
        num_module_layers: L, layers of modules.
        module_hidden: d, width of each module and of the routing network.
        init: initial weights of every linear layer (the output layer by its head bound); the
            task table (N(0, 1)) and the routing output layers (U(-1e-3, 1e-3), zero bias)
            keep their own.
    """

    TASK_SPECIFIC = ("task_embedding",)

    def __init__(
        self,
        obs_dim: int,
        num_tasks: int,
        extra_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        embedding_dim: int,
        generator: torch.Generator,
        init: InitSpec | None = None,
        num_modules: int = DEFAULT_NUM_MODULES,
        num_module_layers: int = DEFAULT_NUM_MODULE_LAYERS,
        module_hidden: int = DEFAULT_MODULE_HIDDEN,
    ) -> None:
        super().__init__(obs_dim, num_tasks, hidden)
        del embedding_dim  # the task embedding has the encoder's width D
        n, depth, d = num_modules, num_module_layers, module_hidden
        width = self.hidden[-1]
        self.num_modules, self.num_module_layers, self.module_hidden = n, depth, d
        self.encoder = mlp([self.state_dim + extra_dim, *self.hidden], generator, init=init)
        self.task_embedding = task_table(num_tasks, width, generator)
        self.routing_input = mlp([width, d, d], generator, init=init)
        self.route_up = nn.ParameterList()  # W_u^l, b_u^l for l = 2..L
        self.route_out = nn.ParameterList()  # W_d^l, b_d^l for l = 1..L
        for layer in range(depth):
            if layer > 0:
                self.route_up.extend(linear((d, layer * n * n), generator, init))
            out = n if layer == depth - 1 else n * n
            weight = nn.Parameter(torch.empty(out, d))
            with torch.no_grad():
                weight.uniform_(-ROUTING_INIT, ROUTING_INIT, generator=generator)
            self.route_out.append(weight)
            self.route_out.append(nn.Parameter(torch.zeros(out)))
        self.module_layers = nn.ParameterList()  # layer l: weight [n, d, in], bias [n, d]
        for layer in range(depth):
            fan_in = width if layer == 0 else d
            self.module_layers.extend(linear((n, d, fan_in), generator, init))
        self.out_weight, self.out_bias = linear((out_dim, d), generator, init, head=True)

    def routes(self, g: Tensor) -> list[Tensor]:
        """Routing probabilities from the routing input g [..., d]: L-1 tensors [..., n, n]
        and the final mixture [..., n]."""
        n = self.num_modules
        probs: list[Tensor] = []
        for layer in range(self.num_module_layers):
            h = g
            if layer > 0:
                previous = torch.cat([p.flatten(-2) for p in probs], dim=-1)
                up_w, up_b = self.route_up[2 * layer - 2], self.route_up[2 * layer - 1]
                h = g * torch.nn.functional.linear(previous, up_w, up_b)
            logits = torch.nn.functional.linear(
                torch.relu(h), self.route_out[2 * layer], self.route_out[2 * layer + 1]
            )
            if layer < self.num_module_layers - 1:
                logits = logits.unflatten(-1, (n, n))
            probs.append(torch.softmax(logits, dim=-1))
        return probs

    def forward(
        self, obs: Tensor, extra: Tensor | None, task_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(out [*lead, N, out_dim], features [*lead, N, module_hidden])``; see the module
        docstring. obs [N, obs_dim] with 0-dim ``task_index`` or [T, N, obs_dim] with [T]."""
        e = run_mlp(join(self.state(obs), extra), self.encoder, activate_last=False)
        z = rows(self.task_embedding, task_index).unsqueeze(-2)  # [(T,) 1, D]
        g = run_mlp(torch.relu(e * z), self.routing_input, activate_last=False)
        probs = self.routes(g)
        x = torch.relu(e)
        for layer in range(self.num_module_layers):
            weight, bias = self.module_layers[2 * layer], self.module_layers[2 * layer + 1]
            if layer == 0:  # every module of the first layer reads relu(e)
                y = torch.einsum("...i,koi->...ko", x, weight) + bias
            else:
                y = torch.einsum("...ki,koi->...ko", x, weight) + bias
            if layer < self.num_module_layers - 1:
                x = torch.relu(torch.einsum("...ij,...jo->...io", probs[layer], y))
        features = torch.relu(torch.einsum("...j,...jo->...o", probs[-1], y))
        out = torch.nn.functional.linear(features, self.out_weight, self.out_bias)
        return out, features
