"""Dense-prediction metrics accumulated over a whole split (never averaged per batch).

Every meter keeps running sums (counts in int64, sums in float64, on the predictions' device)
and computes its metrics only in :meth:`compute`, so the result is the same for any batch size
or batch order. Invalid pixels follow :mod:`mtrl_align.vision.specs`.

* segmentation: one confusion matrix [C, C]; ``miou`` = mean over classes that occur in the
  labels or the predictions of TP / (TP + FP + FN); ``pixel_acc`` = trace / total.
* depth / disparity: over valid pixels (label != 0): ``abs_err`` = mean |p - y|, ``rel_err`` =
  mean |p - y| / |y|, ``mse`` = mean (p - y)^2.
* normal: predictions are L2-normalised; angle = acos(clip(<p, y>, -1, 1)) in degrees over valid
  pixels (label vector != 0): ``mean_angle``, ``median_angle``, ``within_11.25/22.5/30``
  (share of pixels with angle strictly below the threshold). The median comes from a histogram
  with 0.001-degree bins (linear inside the bin), i.e. it is exact to about 1e-3 degrees.
* offset: ``l1`` = mean |p - y| over the (dy, dx) entries of instance pixels, in pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtrl_align.vision.specs import DatasetSpec, TaskSpec

NORMAL_THRESHOLDS = (11.25, 22.5, 30.0)
ANGLE_BINS = 180_000


class SegmentationMeter:
    """Confusion matrix over a split. ``update(pred [B, H, W] int, target [B, H, W] int)``."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.confusion: Tensor | None = None

    def update(self, pred: Tensor, target: Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(
                f"segmentation prediction shape {tuple(pred.shape)} != "
                f"label shape {tuple(target.shape)}"
            )
        n = self.num_classes
        valid = (target >= 0) & (target < n)
        pred = pred.long()
        if bool(((pred[valid] < 0) | (pred[valid] >= n)).any()):
            raise ValueError(f"segmentation predictions must be class indices in [0, {n})")
        flat = target[valid].long() * n + pred[valid]
        counts = torch.bincount(flat, minlength=n * n).reshape(n, n)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def compute(self) -> dict[str, float]:
        if self.confusion is None:
            raise ValueError("no segmentation data was seen")
        conf = self.confusion.double()
        tp = conf.diag()
        union = conf.sum(0) + conf.sum(1) - tp
        present = union > 0
        miou = (tp[present] / union[present]).mean() if bool(present.any()) else conf.new_zeros(())
        total = conf.sum()
        acc = tp.sum() / total if float(total) > 0 else conf.new_zeros(())
        return {"miou": float(miou), "pixel_acc": float(acc)}


class DepthMeter:
    """Errors over valid pixels. ``update(pred [B, 1, H, W], target [B, 1, H, W])``."""

    def __init__(self) -> None:
        self.abs_sum = 0.0
        self.rel_sum = 0.0
        self.sq_sum = 0.0
        self.count = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} != label shape {tuple(target.shape)}"
            )
        valid = (target != 0) & torch.isfinite(target)
        diff = (pred[valid].double() - target[valid].double()).abs()
        self.abs_sum += diff.sum()
        self.rel_sum += (diff / target[valid].double().abs()).sum()
        self.sq_sum += (diff * diff).sum()
        self.count += int(valid.sum())

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("no valid depth/disparity pixel was seen (all labels are 0)")
        return {
            "abs_err": float(self.abs_sum) / self.count,
            "rel_err": float(self.rel_sum) / self.count,
            "mse": float(self.sq_sum) / self.count,
        }


class NormalMeter:
    """Angle errors over valid pixels. ``update(pred [B, 3, H, W], target [B, 3, H, W])``."""

    def __init__(self) -> None:
        self.angle_sum = 0.0
        self.count = 0
        self.within = [0] * len(NORMAL_THRESHOLDS)
        self.histogram: Tensor | None = None

    def update(self, pred: Tensor, target: Tensor) -> None:
        if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
            raise ValueError(
                f"normal prediction/label shapes must both be [B, 3, H, W], got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}"
            )
        valid = target.abs().sum(1) != 0
        unit = F.normalize(pred.double(), dim=1)
        cosine = (unit * target.double()).sum(1)[valid].clamp(-1.0, 1.0)
        angles = torch.rad2deg(torch.acos(cosine))
        self.angle_sum += angles.sum()
        self.count += int(angles.numel())
        for i, threshold in enumerate(NORMAL_THRESHOLDS):
            self.within[i] += int((angles < threshold).sum())
        bins = (angles * (ANGLE_BINS / 180.0)).long().clamp_(0, ANGLE_BINS - 1)
        counts = torch.bincount(bins, minlength=ANGLE_BINS)
        self.histogram = counts if self.histogram is None else self.histogram + counts

    def _median(self) -> float:
        assert self.histogram is not None
        cumulative = torch.cumsum(self.histogram, 0).double()
        half = self.count / 2.0
        index = int(
            torch.searchsorted(
                cumulative, torch.tensor(half, dtype=torch.float64, device=cumulative.device)
            )
        )
        before = float(cumulative[index - 1]) if index > 0 else 0.0
        inside = float(self.histogram[index])
        fraction = (half - before) / inside if inside > 0 else 0.5
        return (index + fraction) * 180.0 / ANGLE_BINS

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("no valid normal pixel was seen (all label vectors are zero)")
        out = {"mean_angle": float(self.angle_sum) / self.count, "median_angle": self._median()}
        for threshold, hits in zip(NORMAL_THRESHOLDS, self.within, strict=True):
            out[f"within_{threshold:g}"] = hits / self.count
        return out


class OffsetMeter:
    """Offset L1 over instance pixels. ``update(pred [B, 2, H, W], target [B, 2, H, W])``."""

    def __init__(self) -> None:
        self.abs_sum = 0.0
        self.count = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(
                f"offset prediction shape {tuple(pred.shape)} != label shape {tuple(target.shape)}"
            )
        valid = torch.isfinite(target)
        self.abs_sum += (pred[valid].double() - target[valid].double()).abs().sum()
        self.count += int(valid.sum())

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return {"l1": float("nan")}
        return {"l1": float(self.abs_sum) / self.count}


def make_meter(task: TaskSpec) -> SegmentationMeter | DepthMeter | NormalMeter | OffsetMeter:
    if task.kind == "segmentation":
        return SegmentationMeter(task.channels)
    if task.kind in ("depth", "disparity"):
        return DepthMeter()
    if task.kind == "normal":
        return NormalMeter()
    return OffsetMeter()


class MultiTaskMeter:
    """All metrics of a benchmark. Feed :meth:`update` with predictions in label format:
    segmentation as class indices [B, H, W] (or logits [B, C, H, W], argmax is taken),
    the other tasks as [B, C, H, W] tensors matching the labels."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self.meters = {task.name: make_meter(task) for task in spec.tasks}

    def update(self, predictions: dict[str, Tensor], labels: dict[str, Tensor]) -> None:
        for task in self.spec.tasks:
            pred = predictions[task.name]
            if task.kind == "segmentation" and pred.dim() == 4:
                pred = pred.argmax(1)
            self.meters[task.name].update(pred.detach(), labels[task.name].to(pred.device))

    def compute(self) -> dict[str, float]:
        """``{"<task>/<metric>": value}`` in the benchmark's report order (extras at the end)."""
        raw: dict[str, float] = {}
        for name, meter in self.meters.items():
            raw.update({f"{name}/{key}": value for key, value in meter.compute().items()})
        ordered = {m.key: raw[m.key] for m in self.spec.metrics if m.key in raw}
        ordered.update({k: v for k, v in raw.items() if k not in ordered})
        return ordered
