"""CARE (Sodhani et al. 2021, "Multi-Task Reinforcement Learning with Context-based
Representations"): a mixture of k state encoders, combined by attention weights computed from
a task context, with the context joined to the mixture before the SAC network.

With E = ``embedding_dim`` (the width of every small MLP below, 50 in the authors' MT10
config) and MLP_n(x) meaning n linear layers with ReLU between them (mtrl's
``build_mlp(num_layers=n - 1)``):

* task encoding, one of two sources:

  - learned (default): u_t = relu(e_t), e_t a row of ``task_embedding`` [T, E] (mtrl's
    ``TaskEncoder`` without pretrained embeddings: ``Embedding``, ``ReLU``);
  - task descriptions: u_t = P(relu(d_t)), d_t a row of the frozen buffer
    ``task_descriptions`` [T, P] (per-task sentence embeddings from a language model, read
    from a file by :func:`load_task_descriptions`), P = Linear P->2E, ReLU, Linear 2E->E, ReLU
    (mtrl's projection of pretrained embeddings). No task-specific parameter is left then;

* context: c_t = MLP_3(u_t) [E] (E -> E -> E -> E; mtrl ``build_mlp(num_layers=2)``);
* attention: alpha = softmax(MLP_3(c_t)) [k] (E -> E -> E -> k, temperature 1);
* encoders: k MLPs on the state (without the one-hot id), MLP_2: s -> E -> E (mtrl's
  mixture-of-experts ``FeedForward`` with ``num_layers=2``); z = sum_i alpha_i enc_i(s) [E];
* SAC network: an MLP with widths ``hidden`` on [z, c_t, a] (a: the action of a critic), then
  one linear output layer; features = its last hidden layer.

Only ``task_embedding`` (when learned) is task-specific; the projection, context and attention
networks, the encoders and the SAC network are shared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from agents.architectures.common import (
    TaskConditioned,
    join,
    linear,
    mlp,
    per_sample,
    rows,
    run_mlp,
    task_table,
)
from agents.initialization import InitSpec

DEFAULT_NUM_EXPERTS = 6


def load_task_descriptions(path: str | Path, task_names: Sequence[str]) -> Tensor:
    """Per-task description embeddings [T, P] (float32) in the order of ``task_names``.

    The file is JSON: one object mapping each task name to its embedding, a list of P numbers
    (the format of mtrl's ``metadata/task_embedding/roberta_small/metaworld-mt10.json``), e.g.
    ``{"reach-v3": [0.01, -0.2, ...], "push-v3": [...], ...}``. Every task of the run must be
    there, all with the same length P; other entries are ignored.

    Raises:
        ValueError: a missing task, ragged or non-numeric entries, non-finite values.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task description embeddings file '{path}' does not exist")
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"'{path}' is not valid JSON: {error}") from None
    if not isinstance(table, dict):
        raise ValueError(
            f"'{path}' must hold a JSON object {{task name: [numbers]}}, got a "
            f"{type(table).__name__}"
        )
    missing = [name for name in task_names if name not in table]
    if missing:
        raise ValueError(
            f"'{path}' has no description embedding for task(s) {missing}; it has: "
            f"{', '.join(sorted(table))}"
        )
    vectors = []
    for name in task_names:
        entry = table[name]
        if (
            not isinstance(entry, list)
            or not entry
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in entry)
        ):
            raise ValueError(f"'{path}': the entry of {name!r} must be a non-empty list of numbers")
        if not all(math.isfinite(x) for x in entry):
            raise ValueError(f"'{path}': the entry of {name!r} has non-finite values")
        vectors.append(entry)
    lengths = {len(v) for v in vectors}
    if len(lengths) != 1:
        sizes = {name: len(v) for name, v in zip(task_names, vectors, strict=True)}
        raise ValueError(f"'{path}': the embeddings must all have one length, got {sizes}")
    return torch.tensor(vectors, dtype=torch.float32)


class CARENetwork(TaskConditioned):
    """Mixture of ``num_experts`` encoders with attention from a task context.

    Args:
        hidden: widths of the SAC network after the encoder.
        embedding_dim: E, size of the task embedding, the context, each encoder's output and
            the hidden layers of the small MLPs.
        init: initial weights of every linear layer (the output layer by its head bound); the
            learned task table keeps N(0, 1).
        num_experts: k, number of encoders.
        task_descriptions: frozen description embeddings [T, P] of the tasks, or None for a
            learned task table.
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
        num_experts: int = DEFAULT_NUM_EXPERTS,
        task_descriptions: Tensor | None = None,
    ) -> None:
        super().__init__(obs_dim, num_tasks, hidden)
        size = embedding_dim
        self.num_experts = num_experts
        self.projection: nn.ParameterList | None = None
        if task_descriptions is None:
            self.task_embedding = task_table(num_tasks, size, generator)
        else:
            descriptions = torch.as_tensor(task_descriptions, dtype=torch.float32)
            if descriptions.dim() != 2 or descriptions.shape[0] != num_tasks:
                raise ValueError(
                    f"task_descriptions must have shape [T, P] = [{num_tasks}, P], got "
                    f"{tuple(descriptions.shape)}"
                )
            if not bool(torch.isfinite(descriptions).all()):
                raise ValueError("task_descriptions must be finite")
            self.register_buffer("task_descriptions", descriptions.clone())
            width = descriptions.shape[1]
            self.projection = mlp([width, 2 * size, size], generator, init=init)
        self.context = mlp([size, size, size, size], generator, init=init)
        self.attention = mlp([size, size, size, num_experts], generator, init=init)
        self.encoders = mlp([self.state_dim, size, size], generator, num_experts, init)
        self.trunk = mlp([2 * size + extra_dim, *self.hidden], generator, init=init)
        last = self.hidden[-1]
        self.out_weight, self.out_bias = linear((out_dim, last), generator, init, head=True)

    def task_encoding(self, task_index: Tensor) -> Tensor:
        """u [(T,) E]: relu of the learned row, or the projected description embedding."""
        if self.projection is None:
            return torch.relu(rows(self.task_embedding, task_index))
        descriptions = torch.relu(rows(self.task_descriptions, task_index))
        return run_mlp(descriptions, self.projection, activate_last=True)

    def context_and_attention(self, task_index: Tensor) -> tuple[Tensor, Tensor]:
        """Context c [(T,) E] and encoder weights alpha [(T,) k] of the task(s)."""
        context = run_mlp(self.task_encoding(task_index), self.context, False)
        return context, torch.softmax(run_mlp(context, self.attention, False), dim=-1)

    def forward(
        self, obs: Tensor, extra: Tensor | None, task_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(out [*lead, N, out_dim], features [*lead, N, hidden[-1]])``; see the module
        docstring. obs [N, obs_dim] with 0-dim ``task_index`` or [T, N, obs_dim] with [T]."""
        context, alpha = self.context_and_attention(task_index)
        encoded = run_mlp(self.state(obs), self.encoders, activate_last=False)  # [.., N, k, E]
        mixture = torch.einsum("...nke,...k->...ne", encoded, alpha)
        h = run_mlp(join(mixture, per_sample(context, mixture), extra), self.trunk, True)
        return torch.nn.functional.linear(h, self.out_weight, self.out_bias), h
