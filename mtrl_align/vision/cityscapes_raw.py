"""Cityscapes 3-task (semantic 19 classes, instance centroid offsets, disparity) from raw folders.

Raw layout (as distributed by the Cityscapes website)::

    root/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png     RGB image, 2048x1024
    root/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png      label ids (uint8)
    root/gtFine/<split>/<city>/<stem>_gtFine_instanceIds.png   instance ids (int32)
    root/disparity/<split>/<city>/<stem>_disparity.png         disparity (uint16)

Targets, following the multi-task setup of Kendall et al. / Sener & Koltun used by Aligned-MTL:

* semantic: the 19 evaluation classes (official labelId -> trainId table), everything else -1.
* instance: for every pixel of an object instance (instanceId >= 1000 and a valid semantic
  class), the offset (dy, dx) from the pixel to its instance's centroid, computed at the RAW
  resolution and in raw pixels (so "L1 [px]" means pixels of the 2048x1024 image, as in the
  paper's table); other pixels are NaN.
* disparity: ``raw_png_value / disparity_scale``, 0 = invalid. The default scale 2729.068 is the
  normalisation of the reference setup (metric disparity in pixels would be (v - 1) / 256).

Images are resized to ``image_size`` (bilinear) and normalised with the ImageNet mean/std;
labels are resized with nearest neighbour to ``image_size / label_downsample``.
Decoding 2048x1024 PNGs is slow: pass ``cache_dir`` to store processed samples as ``.npz``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mtrl_align.vision.augment import Sample, TrainAugmentation
from mtrl_align.vision.npy_dataset import DatasetLayoutError
from mtrl_align.vision.specs import CITYSCAPES3

try:  # Pillow decodes the PNG files
    from PIL import Image
except ImportError:  # pragma: no cover - Pillow is a dependency of matplotlib
    Image = None

#: official Cityscapes labelId -> trainId for the 19 evaluation classes (others are ignored)
LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
DEFAULT_DISPARITY_SCALE = 2729.068
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_LABEL_LUT = np.full(256, -1, dtype=np.int64)
for _label_id, _train_id in LABEL_ID_TO_TRAIN_ID.items():
    _LABEL_LUT[_label_id] = _train_id


def _require_pillow() -> None:
    if Image is None:  # pragma: no cover
        raise ImportError("reading raw Cityscapes PNG files needs Pillow: pip install pillow")


def semantic_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """labelId map [H, W] (uint8) -> trainId map [H, W] int64 with -1 for ignored classes."""
    return _LABEL_LUT[np.asarray(label_ids, dtype=np.int64).clip(0, 255)]


def instance_offsets(instance_ids: np.ndarray, semantic: np.ndarray) -> np.ndarray:
    """Offsets [H, W, 2] (dy, dx) from each instance pixel to its instance centroid, NaN elsewhere.

    ``instance_ids`` [H, W]: Cityscapes instanceIds (>= 1000 for individual objects);
    ``semantic`` [H, W]: trainIds (pixels with -1 never count as instance pixels).
    """
    height, width = instance_ids.shape
    ids = np.asarray(instance_ids, dtype=np.int64).reshape(-1)
    valid = (ids >= 1000) & (np.asarray(semantic).reshape(-1) >= 0)
    offsets = np.full((height * width, 2), np.nan, dtype=np.float32)
    if not valid.any():
        return offsets.reshape(height, width, 2)
    rows, cols = np.divmod(np.arange(height * width, dtype=np.int64), width)
    unique, inverse = np.unique(ids[valid], return_inverse=True)
    counts = np.bincount(inverse, minlength=unique.size).astype(np.float64)
    centroid_y = np.bincount(inverse, weights=rows[valid], minlength=unique.size) / counts
    centroid_x = np.bincount(inverse, weights=cols[valid], minlength=unique.size) / counts
    offsets[valid, 0] = centroid_y[inverse] - rows[valid]
    offsets[valid, 1] = centroid_x[inverse] - cols[valid]
    return offsets.reshape(height, width, 2)


def _resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of [H, W] or [H, W, C] to size = (H', W') (pixel centres)."""
    height, width = array.shape[:2]
    rows = np.minimum(((np.arange(size[0]) + 0.5) * height / size[0]).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * width / size[1]).astype(np.int64), width - 1)
    return array[rows[:, None], cols[None, :]]


class CityscapesRawFiles:
    """The matched raw files of one split; checks that every image has its three label files."""

    def __init__(self, root: str | Path, split: str) -> None:
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            raise DatasetLayoutError(f"dataset root '{self.root}' does not exist")
        for folder in ("leftImg8bit", "gtFine", "disparity"):
            path = self.root / folder / split
            if not path.is_dir():
                raise DatasetLayoutError(
                    f"missing folder '{path}'; Cityscapes 3-task needs "
                    f"{self.root}/{{leftImg8bit,gtFine,disparity}}/{split}/<city>/*.png"
                )
        images = sorted((self.root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        if not images:
            raise DatasetLayoutError(
                f"no '*_leftImg8bit.png' images in '{self.root / 'leftImg8bit' / split}/<city>/'"
            )
        counts = {
            "leftImg8bit": len(images),
            "gtFine labelIds": len(list((self.root / "gtFine" / split).glob("*/*_labelIds.png"))),
            "gtFine instanceIds": len(
                list((self.root / "gtFine" / split).glob("*/*_instanceIds.png"))
            ),
            "disparity": len(list((self.root / "disparity" / split).glob("*/*_disparity.png"))),
        }
        if len(set(counts.values())) != 1:
            detail = ", ".join(f"{name}: {n}" for name, n in counts.items())
            raise DatasetLayoutError(
                f"mismatched file counts for split '{split}' in '{self.root}' ({detail})"
            )
        self.samples: list[dict[str, Path]] = []
        for image in images:
            stem = image.name[: -len("_leftImg8bit.png")]
            city = image.parent.name
            entry = {
                "image": image,
                "label": self.root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
                "instance": self.root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png",
                "disparity": self.root / "disparity" / split / city / f"{stem}_disparity.png",
            }
            for name, path in entry.items():
                if not path.is_file():
                    raise DatasetLayoutError(f"missing {name} file '{path}' for image '{image}'")
            self.samples.append(entry)

    def __len__(self) -> int:
        return len(self.samples)


def _read_png(path: Path, expected_size: tuple[int, int] | None) -> np.ndarray:
    _require_pillow()
    try:
        with Image.open(path) as handle:
            array = np.array(handle)
    except Exception as error:  # noqa: BLE001 - any decoding failure
        raise DatasetLayoutError(f"cannot read image file '{path}': {error}") from None
    if expected_size is not None and array.shape[:2] != expected_size:
        raise DatasetLayoutError(
            f"'{path}' is {array.shape[0]}x{array.shape[1]} but its image is "
            f"{expected_size[0]}x{expected_size[1]}"
        )
    return array


def process_raw_sample(
    files: dict[str, Path],
    image_size: tuple[int, int],
    label_size: tuple[int, int],
    disparity_scale: float,
) -> dict[str, np.ndarray]:
    """Decode one raw sample into arrays: image [H, W, 3] float32 in [0, 1] at ``image_size``;
    semantic [h, w] int64, instance [h, w, 2] and disparity [h, w] float32 at ``label_size``."""
    image = _read_png(files["image"], None)
    if image.ndim != 3 or image.shape[2] < 3:
        raise DatasetLayoutError(f"image '{files['image']}' has shape {image.shape}; expected RGB")
    raw_size = image.shape[:2]
    label_ids = _read_png(files["label"], raw_size)
    instance_ids = _read_png(files["instance"], raw_size)
    disparity_raw = _read_png(files["disparity"], raw_size)
    if label_ids.ndim != 2 or instance_ids.ndim != 2 or disparity_raw.ndim != 2:
        raise DatasetLayoutError(
            f"label files of '{files['image']}' must be single-channel PNGs "
            f"(got shapes {label_ids.shape}, {instance_ids.shape}, {disparity_raw.shape})"
        )
    semantic = semantic_train_ids(label_ids)
    offsets = instance_offsets(instance_ids, semantic)
    disparity = disparity_raw.astype(np.float32) / np.float32(disparity_scale)
    rgb = Image.fromarray(image[..., :3].astype(np.uint8)).resize(
        (image_size[1], image_size[0]), Image.BILINEAR
    )
    return {
        "image": np.asarray(rgb, dtype=np.float32) / 255.0,
        "semantic": _resize_nearest(semantic, label_size),
        "instance": _resize_nearest(offsets, label_size),
        "disparity": _resize_nearest(disparity, label_size),
    }


class CityscapesRawDataset(Dataset):
    """Cityscapes 3-task built from the raw folders; items ``{"image", "semantic", "instance",
    "disparity"}`` with image [3, H, W] (ImageNet-normalised) and labels at ``label_size``.

    Args:
        root: Cityscapes root with ``leftImg8bit/``, ``gtFine/``, ``disparity/``.
        split: ``train`` or ``val``.
        image_size: network input (H, W), default (256, 512) as in the paper.
        label_downsample: labels are at image_size / label_downsample (8 in the reference setup
            whose PSPNet predicts at stride 8; 1 = full input resolution).
        disparity_scale: raw disparity PNG values are divided by this.
        cache_dir: optional folder for processed samples (``<split>/<i>.npz``); its settings
            are recorded in ``cache.json`` and a mismatch is an error.
        augmentation, max_samples: as in ``NpyMultiTaskDataset``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        image_size: Sequence[int] = (256, 512),
        label_downsample: int = 8,
        disparity_scale: float = DEFAULT_DISPARITY_SCALE,
        cache_dir: str | Path | None = None,
        augmentation: TrainAugmentation | None = None,
        max_samples: int = 0,
    ) -> None:
        if len(image_size) != 2 or min(image_size) <= 0:
            raise ValueError(f"image_size must be [H, W] with positive entries, got {image_size}")
        if (
            label_downsample < 1
            or image_size[0] % label_downsample
            or image_size[1] % label_downsample
        ):
            raise ValueError(
                f"label_downsample={label_downsample} must be >= 1 and divide "
                f"image_size {list(image_size)}"
            )
        self.spec = CITYSCAPES3
        self.files = CityscapesRawFiles(root, split)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.label_size = (
            self.image_size[0] // label_downsample,
            self.image_size[1] // label_downsample,
        )
        self.disparity_scale = float(disparity_scale)
        self.augmentation = augmentation
        self.epoch = 0
        self.num_samples = len(self.files) if not max_samples else min(len(self.files), max_samples)
        self.cache_dir = None if not cache_dir else Path(cache_dir) / split
        if self.cache_dir is not None:
            self._check_cache_settings()

    def _cache_settings(self) -> dict:
        return {
            "image_size": list(self.image_size),
            "label_size": list(self.label_size),
            "disparity_scale": self.disparity_scale,
        }

    def _check_cache_settings(self) -> None:
        assert self.cache_dir is not None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        settings_file = self.cache_dir / "cache.json"
        wanted = self._cache_settings()
        if settings_file.is_file():
            stored = json.loads(settings_file.read_text())
            if stored != wanted:
                raise ValueError(
                    f"cache '{self.cache_dir}' was built with {stored}, not {wanted}; "
                    "use another cache_dir or delete it"
                )
        else:
            settings_file.write_text(json.dumps(wanted))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def load_arrays(
        self, index: int, label_size: tuple[int, int] | None = None
    ) -> dict[str, np.ndarray]:
        """Processed arrays of sample ``index`` (labels at ``label_size`` if given)."""
        if label_size is not None and label_size != self.label_size:
            return process_raw_sample(
                self.files.samples[index], self.image_size, label_size, self.disparity_scale
            )
        if self.cache_dir is not None:
            cached = self.cache_dir / f"{index}.npz"
            if cached.is_file():
                with np.load(cached) as data:
                    return {key: data[key] for key in data.files}
        arrays = process_raw_sample(
            self.files.samples[index], self.image_size, self.label_size, self.disparity_scale
        )
        if self.cache_dir is not None:
            tmp = self.cache_dir / f"{index}.tmp.npz"
            np.savez(tmp, **arrays)
            tmp.replace(self.cache_dir / f"{index}.npz")
        return arrays

    def load_labels(
        self, index: int, label_size: tuple[int, int] | None = None
    ) -> dict[str, Tensor]:
        """Labels of sample ``index``: semantic [h, w], instance [2, h, w], disparity [1, h, w]."""
        arrays = self.load_arrays(index, label_size)
        return _labels_to_tensors(arrays)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"sample index {index} out of range [0, {self.num_samples})")
        arrays = self.load_arrays(index)
        image = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arrays["image"], -1, 0)))
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        sample: Sample = {"image": (image - mean) / std}
        sample.update(_labels_to_tensors(arrays))
        if self.augmentation is not None:
            sample = self.augmentation(sample, index, self.epoch)
        return sample


def _labels_to_tensors(arrays: dict[str, np.ndarray]) -> dict[str, Tensor]:
    return {
        "semantic": torch.from_numpy(np.ascontiguousarray(arrays["semantic"]).astype(np.int64)),
        "instance": torch.from_numpy(np.ascontiguousarray(np.moveaxis(arrays["instance"], -1, 0))),
        "disparity": torch.from_numpy(np.ascontiguousarray(arrays["disparity"][None])),
    }
