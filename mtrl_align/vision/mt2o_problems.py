"""NYUv2 / Cityscapes as MT2O problems (protocol: :mod:`mtrl_align.mt2o.problems`).

The MT2O optimizer trains N copies of a vision multi-task model, one per scalarized
subproblem, on the same mini-batches, and scores each copy by its per-task validation losses
(the objectives whose hypervolume it reports, as in the MT2O paper's NYUv2 experiment).

``make_problem(name, root=..., **options)`` with ``name`` in nyuv2 | cityscapes2 | cityscapes3.
Options (all keyword):

* ``root`` (required): dataset folder, as for ``mtrl-align vision train``;
* ``arch`` (segnet | mtan | resnet_psp, default segnet), ``width`` (default 16),
  ``num_stages`` (5), ``resnet_layers`` ([3, 4, 6, 3]), ``resnet_block`` (bottleneck);
* ``batch_size`` (2), ``eval_batch_size`` (4), ``train_split`` (train), ``eval_split`` (val),
  ``max_train_samples`` / ``max_eval_samples`` (0 = all), ``augment`` (False), and for
  cityscapes3 ``image_size``, ``label_downsample``, ``disparity_scale``, ``cache_dir``;
* ``reference_point``: [T] hypervolume reference in validation-loss space. Default: 1.1 x the
  validation losses of a model initialised with seed ``reference_seed`` (0), i.e. a point every
  trained copy should dominate.

Models use BatchNorm (running statistics change in place), so ``supports_vmap`` is False and
the optimizer loops over the copies. Validation losses are means of per-sample losses, so
they do not depend on ``eval_batch_size``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch.utils.data._utils.collate import default_collate

from mtrl_align.vision.config import DataConfig, ModelConfig
from mtrl_align.vision.datasets import build_dataset
from mtrl_align.vision.losses import multitask_losses
from mtrl_align.vision.models import build_model
from mtrl_align.vision.specs import get_dataset_spec

VISION_PROBLEM_NAMES = ("nyuv2", "cityscapes2", "cityscapes3")
_MODEL_OPTIONS = ("arch", "width", "num_stages", "resnet_layers", "resnet_block")
_DATA_OPTIONS = (
    "root", "train_split", "eval_split", "max_train_samples", "max_eval_samples", "augment",
    "image_size", "label_downsample", "disparity_scale", "cache_dir",
)  # fmt: skip
_OTHER_OPTIONS = ("batch_size", "eval_batch_size", "reference_point", "reference_seed")


class VisionMT2OProblem:
    """A vision benchmark behind the MT2O problem protocol (see the module docstring)."""

    supports_vmap = False

    def __init__(self, dataset: str, **options: Any) -> None:
        allowed = _MODEL_OPTIONS + _DATA_OPTIONS + _OTHER_OPTIONS
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for MT2O problem '{dataset}'; "
                f"allowed: {', '.join(allowed)}"
            )
        if not options.get("root"):
            raise ValueError(f"MT2O problem '{dataset}' needs root=<dataset folder>")
        self.spec = get_dataset_spec(dataset)
        self.name = self.spec.name
        self.task_names = self.spec.task_names
        data_fields = {k: options[k] for k in _DATA_OPTIONS if k in options}
        data_fields.setdefault("augment", False)
        self.data = dataclasses.replace(DataConfig(dataset=dataset), **data_fields)
        model_fields = {k: options[k] for k in _MODEL_OPTIONS if k in options}
        model_fields.setdefault("width", 16)
        self.model_config = dataclasses.replace(ModelConfig(), **model_fields)
        self.batch_size = int(options.get("batch_size", 2))
        self.eval_batch_size = int(options.get("eval_batch_size", 4))
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch_size and eval_batch_size must be >= 1")
        self.train_set = build_dataset(self.data, self.data.train_split, train=True)
        self.eval_set = build_dataset(self.data, self.data.eval_split, train=False)
        reference = options.get("reference_point")
        if reference is None:
            generator = torch.Generator().manual_seed(int(options.get("reference_seed", 0)))
            initial = self.evaluate(self.build_model(generator), torch.device("cpu"))
            reference = (1.1 * initial).tolist()
        if len(reference) != len(self.task_names):
            raise ValueError(
                f"reference_point needs {len(self.task_names)} entries "
                f"({', '.join(self.task_names)}), got {list(reference)}"
            )
        self.reference_point = tuple(float(v) for v in reference)

    def build_model(self, generator: torch.Generator) -> nn.Module:
        """A fresh model whose initial weights depend only on ``generator``."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_model(self.model_config, self.spec)

    def train_batch(self, step: int, generator: torch.Generator, device: torch.device) -> dict:
        """``batch_size`` training samples drawn with ``generator``, as a dict on ``device``."""
        indices = torch.randint(0, len(self.train_set), (self.batch_size,), generator=generator)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(step)
        batch = default_collate([self.train_set[int(i)] for i in indices])
        return {key: value.to(device) for key, value in batch.items()}

    def task_losses(self, forward: Callable[..., Any], batch: dict) -> Tensor:
        """Per-task training losses [T] of one copy (``forward`` = that copy's model)."""
        outputs = forward(batch["image"])
        labels = {name: batch[name] for name in self.task_names}
        return multitask_losses(self.spec, outputs, labels)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device) -> Tensor:
        """Mean per-sample validation loss of each task [T] (eval mode)."""
        was_training = model.training
        model.eval()
        model.to(device)
        total = torch.zeros(len(self.task_names), dtype=torch.float64, device=device)
        count = 0
        try:
            for batch in DataLoader(self.eval_set, batch_size=self.eval_batch_size):
                outputs = model(batch["image"].to(device))
                for i in range(batch["image"].shape[0]):
                    single = {name: outputs[name][i : i + 1] for name in self.task_names}
                    labels = {name: batch[name][i : i + 1].to(device) for name in self.task_names}
                    total += multitask_losses(self.spec, single, labels).double()
                    count += 1
        finally:
            model.train(was_training)
        return (total / count).float()


def make_problem(name: str, **options: Any) -> VisionMT2OProblem:
    """The MT2O problem of vision benchmark ``name`` (nyuv2 | cityscapes2 | cityscapes3)."""
    if name not in VISION_PROBLEM_NAMES:
        raise ValueError(
            f"unknown vision MT2O problem '{name}'; choose from: {', '.join(VISION_PROBLEM_NAMES)}"
        )
    return VisionMT2OProblem(name, **options)
