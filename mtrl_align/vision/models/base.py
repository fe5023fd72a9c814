"""The interface every vision multi-task model implements.

A model splits into a shared ``encode`` (input image -> shared representation, a list of
feature tensors) and a ``decode`` (shared representation -> one output per task). The
representation is the boundary the UB ("upper bound") aggregators differentiate at:
``decode`` must read the encoder only through the tensors ``encode`` returns.

Parameters fall into three groups, which the trainer treats differently:

* ``encoder_parameters()``: used by ``encode`` (shared by all tasks);
* ``shared_decoder_parameters()``: used by ``decode`` but shared by all tasks (e.g. MTAN's
  shared attention convolutions; empty for a plain encoder + heads split);
* ``task_parameters()``: ``{task: [params]}`` used by one task only (heads, task attention).

``shared_parameters()`` = encoder + shared decoder parameters: the columns of the Jacobian the
aggregator sees when it works on parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mtrl_align.vision.specs import TaskSpec


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1
) -> nn.Sequential:
    """Conv (same padding) -> BatchNorm -> ReLU."""
    padding = dilation * (kernel_size // 2)
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def finalize_output(task: TaskSpec, raw: Tensor) -> Tensor:
    """Task-kind post-processing of a head's raw output [B, C, H, W] (normals get unit length)."""
    if task.kind == "normal":
        return F.normalize(raw, dim=1)
    return raw


class MultiTaskDenseModel(nn.Module):
    """Base class: ``forward(x [B, 3, H, W]) -> {task: [B, C_task, h, w]}``."""

    def __init__(self, tasks: Sequence[TaskSpec]) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a multi-task model needs at least one task")
        self.tasks = tuple(tasks)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(task.name for task in self.tasks)

    def encode(self, images: Tensor) -> list[Tensor]:
        """Shared representation: a list of feature tensors computed from ``images``."""
        raise NotImplementedError

    def decode(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        """Task outputs from the shared representation returned by :meth:`encode`."""
        raise NotImplementedError

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.decode(self.encode(images))

    def encoder_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def shared_decoder_parameters(self) -> list[nn.Parameter]:
        return []

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        return self.encoder_parameters() + self.shared_decoder_parameters()

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Everything ``decode`` uses: shared decoder parameters then each task's, in task order."""
        params = self.shared_decoder_parameters()
        for name in self.task_names:
            params += self.task_parameters()[name]
        return params

    def check_parameter_groups(self) -> None:
        """Every parameter belongs to exactly one group (guards against forgotten modules)."""
        grouped = [id(p) for p in self.encoder_parameters() + self.decoder_parameters()]
        if len(grouped) != len(set(grouped)):
            raise AssertionError(f"{type(self).__name__}: a parameter is listed in two groups")
        missing = [n for n, p in self.named_parameters() if id(p) not in set(grouped)]
        if missing:
            raise AssertionError(f"{type(self).__name__}: parameters in no group: {missing[:5]}")
