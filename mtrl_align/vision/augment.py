"""Training augmentation for dense multi-task samples: random scale-crop and horizontal flip.

Each label kind is transformed so that it stays correct for the new image:

* scale-crop by factor ``s`` (a crop of 1/s of the image, resized back) makes the scene look
  ``s`` times closer: depth is divided by ``s``; disparity and instance offsets (in pixels) are
  multiplied by ``s``; labels, depth, normals and offsets are resized with nearest neighbour so
  invalid markers (``-1``, ``0``, ``NaN``) never mix with valid values.
* a horizontal flip negates the x component of normals and of instance offsets.

Randomness comes from a generator seeded by ``(seed, epoch, index)``, so a sample's
augmentation does not depend on batch size, worker count or visiting order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mtrl_align.vision.specs import DatasetSpec

Sample = dict[str, Tensor]


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator whose stream depends only on ``(seed, epoch, index)``."""
    mixed = ((seed * 1_000_003 + epoch) * 1_000_033 + index) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def _resize(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """Resize a [C, H, W] (or [H, W]) tensor to ``size`` = (H', W')."""
    squeeze = x.dim() == 2
    batch = x[None, None] if squeeze else x[None]
    if mode == "nearest":
        out = F.interpolate(batch.float(), size=size, mode="nearest").to(x.dtype)
    else:
        out = F.interpolate(batch, size=size, mode="bilinear", align_corners=False)
    return out[0, 0] if squeeze else out[0]


def scale_crop(sample: Sample, spec: DatasetSpec, scale: float, top: float, left: float) -> Sample:
    """Crop the window of relative size 1/scale at relative position (top, left) in [0, 1]
    (fractions of the free margin) from every tensor and resize it back to its own size."""
    out: Sample = {}
    kinds = {task.name: task.kind for task in spec.tasks}
    for key, value in sample.items():
        height, width = value.shape[-2:]
        crop_h, crop_w = max(1, round(height / scale)), max(1, round(width / scale))
        y0 = round(top * (height - crop_h))
        x0 = round(left * (width - crop_w))
        window = value[..., y0 : y0 + crop_h, x0 : x0 + crop_w]
        if key == "image":
            out[key] = _resize(window, (height, width), "bilinear")
            continue
        kind = kinds.get(key)
        resized = _resize(window, (height, width), "nearest")
        if kind == "depth":
            resized = resized / scale
        elif kind in ("disparity", "offset"):
            resized = resized * scale
        out[key] = resized
    return out


def horizontal_flip(sample: Sample, spec: DatasetSpec) -> Sample:
    """Mirror every tensor left-right; x components of normals and offsets change sign."""
    kinds = {task.name: task.kind for task in spec.tasks}
    out: Sample = {}
    for key, value in sample.items():
        flipped = torch.flip(value, dims=[-1])
        kind = kinds.get(key)
        if kind == "normal":
            flipped = flipped.clone()
            flipped[0] = -flipped[0]
        elif kind == "offset":
            flipped = flipped.clone()
            flipped[1] = -flipped[1]
        out[key] = flipped
    return out


class TrainAugmentation:
    """Random scale-crop (one of ``scales``) then a random horizontal flip (p = 0.5)."""

    def __init__(
        self,
        spec: DatasetSpec,
        seed: int,
        scales: Sequence[float] = (1.0, 1.2, 1.5),
        flip: bool = True,
    ) -> None:
        if not scales or any(s < 1.0 for s in scales):
            raise ValueError(f"augmentation scales must be >= 1.0, got {list(scales)}")
        self.spec = spec
        self.seed = seed
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip

    def __call__(self, sample: Sample, index: int, epoch: int) -> Sample:
        gen = sample_generator(self.seed, epoch, index)
        draws = torch.rand(4, generator=gen)
        scale = self.scales[int(draws[0] * len(self.scales)) % len(self.scales)]
        if scale > 1.0:
            sample = scale_crop(sample, self.spec, scale, float(draws[1]), float(draws[2]))
        if self.flip and float(draws[3]) < 0.5:
            sample = horizontal_flip(sample, self.spec)
        return sample
