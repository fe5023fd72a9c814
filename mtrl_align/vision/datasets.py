"""Build the dataset of a config (any benchmark) with one call."""

from __future__ import annotations

from torch.utils.data import Dataset

from mtrl_align.vision.augment import TrainAugmentation
from mtrl_align.vision.cityscapes_raw import CityscapesRawDataset
from mtrl_align.vision.config import DataConfig
from mtrl_align.vision.npy_dataset import DatasetLayoutError, NpyMultiTaskDataset
from mtrl_align.vision.specs import get_dataset_spec

__all__ = ["DatasetLayoutError", "build_dataset"]


def build_dataset(data: DataConfig, split: str, train: bool, seed: int = 0) -> Dataset:
    """The dataset of ``data.dataset`` for ``split``; augmentation only when ``train`` and
    ``data.augment``. Items are dicts ``{"image": [3, H, W], <task>: label tensor}``."""
    spec = get_dataset_spec(data.dataset)
    if not data.root:
        raise ValueError(
            "data.root is empty; set it to the dataset folder (data.root=/path/to/data)"
        )
    augmentation = (
        TrainAugmentation(spec, seed, data.augment_scales) if train and data.augment else None
    )
    limit = data.max_train_samples if train else data.max_eval_samples
    if spec.name == "cityscapes3":
        return CityscapesRawDataset(
            data.root,
            split,
            image_size=data.image_size,
            label_downsample=data.label_downsample,
            disparity_scale=data.disparity_scale,
            cache_dir=data.cache_dir or None,
            augmentation=augmentation,
            max_samples=limit,
        )
    return NpyMultiTaskDataset(data.root, split, spec, augmentation=augmentation, max_samples=limit)
