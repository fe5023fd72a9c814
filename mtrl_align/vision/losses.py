"""Per-task training losses for dense prediction, one scalar per task.

* segmentation: cross-entropy with ignore index -1 (mean over labelled pixels);
* depth / disparity: L1 over valid pixels (label != 0);
* normal: 1 - cosine similarity over valid pixels (label vector != 0), predictions normalised;
* offset: L1 over the (dy, dx) entries of instance pixels (finite labels).

A batch without any valid pixel for a task gives a loss of 0 that still depends on the
prediction (so every task always has a gradient graph, of value 0). Masking uses arithmetic
only, so a training step never waits for the GPU to report whether a mask is empty.
Predictions whose spatial size differs from the labels' are resized (bilinear) to the labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtrl_align.vision.specs import DatasetSpec, TaskSpec


def match_label_size(pred: Tensor, label: Tensor) -> Tensor:
    """Resize a prediction [B, C, h, w] to the label's spatial size (bilinear)."""
    size = tuple(label.shape[-2:])
    if tuple(pred.shape[-2:]) == size:
        return pred
    return F.interpolate(pred, size=size, mode="bilinear", align_corners=False)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` is set (0 if nothing is); no host synchronisation."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def task_loss(task: TaskSpec, pred: Tensor, label: Tensor) -> Tensor:
    """Scalar loss of one task; ``pred`` [B, C, h, w], ``label`` in the task's label format."""
    pred = match_label_size(pred, label)
    if task.kind == "segmentation":
        per_pixel = F.cross_entropy(pred, label, ignore_index=-1, reduction="none")
        return _masked_mean(per_pixel, label >= 0)
    if task.kind in ("depth", "disparity"):
        valid = (label != 0) & torch.isfinite(label)
        safe_label = torch.where(valid, label, torch.zeros_like(label))
        return _masked_mean((pred - safe_label).abs(), valid)
    if task.kind == "normal":
        valid = label.abs().sum(1) != 0
        cosine = (F.normalize(pred, dim=1) * label).sum(1)
        return _masked_mean(1.0 - cosine, valid)
    if task.kind == "offset":
        valid = torch.isfinite(label)
        safe_label = torch.where(valid, label, torch.zeros_like(label))
        return _masked_mean((pred - safe_label).abs(), valid)
    raise ValueError(f"unknown task kind '{task.kind}'")


def multitask_losses(
    spec: DatasetSpec, outputs: dict[str, Tensor], labels: dict[str, Tensor]
) -> Tensor:
    """Stacked per-task losses [T] in ``spec.tasks`` order."""
    return torch.stack(
        [task_loss(task, outputs[task.name], labels[task.name]) for task in spec.tasks]
    )
