"""Datasets in the common preprocessed ``.npy`` layout (NYUv2 and Cityscapes 2-task, as MTAN).

Layout: ``root/<split>/<folder>/<i>.npy`` for i = 0..N-1, one folder for the image and one per
task (``image, label, depth, normal`` for NYUv2; ``image, label_7, depth`` for Cityscapes).
Arrays are channel-last: image [H, W, 3] float in [0, 1], label [H, W] (class index, -1 ignored),
depth [H, W] or [H, W, 1] (0 = invalid), normal [H, W, 3] (zero vector = invalid).

The constructor checks the whole layout up front (folders, file names and counts, array
shapes via the ``.npy`` headers, which is cheap) so that a broken dataset fails at once with a
message naming the file, not halfway through an epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mtrl_align.vision.augment import Sample, TrainAugmentation
from mtrl_align.vision.specs import DatasetSpec, TaskSpec


class DatasetLayoutError(ValueError):
    """A dataset folder that does not have the expected layout."""


def list_indexed_npy(folder: Path) -> int:
    """Number N of files in ``folder``, which must be exactly ``0.npy .. (N-1).npy``."""
    if not folder.is_dir():
        raise DatasetLayoutError(f"missing dataset folder '{folder}'")
    indices = []
    for path in folder.iterdir():
        if path.suffix != ".npy":
            continue
        if not path.stem.isdigit():
            raise DatasetLayoutError(
                f"unexpected file '{path}': files must be named <index>.npy (0.npy, 1.npy, ...)"
            )
        indices.append(int(path.stem))
    if not indices:
        raise DatasetLayoutError(f"dataset folder '{folder}' holds no .npy files")
    indices.sort()
    expected = list(range(len(indices)))
    if indices != expected:
        missing = sorted(set(expected) - set(indices))
        first = missing[0] if missing else indices[-1]
        raise DatasetLayoutError(
            f"files in '{folder}' must be numbered 0..{len(indices) - 1} without gaps; "
            f"'{folder / f'{first}.npy'}' is missing"
        )
    return len(indices)


def npy_shape(path: Path) -> tuple[int, ...]:
    """Shape of an ``.npy`` array read from its header only."""
    try:
        return tuple(np.load(path, mmap_mode="r").shape)
    except Exception as error:  # noqa: BLE001 - any failure means unreadable
        raise DatasetLayoutError(f"cannot read array file '{path}': {error}") from None


def expected_label_shapes(task: TaskSpec, height: int, width: int) -> list[tuple[int, ...]]:
    """Accepted on-disk (channel-last) shapes of one label of ``task``."""
    if task.kind == "segmentation":
        return [(height, width)]
    if task.kind in ("depth", "disparity"):
        return [(height, width), (height, width, 1)]
    return [(height, width, task.channels)]


def label_to_tensor(task: TaskSpec, array: np.ndarray) -> Tensor:
    """A channel-last label array as the in-memory tensor of its kind (see ``specs``)."""
    if task.kind == "segmentation":
        labels = np.asarray(array)
        if labels.dtype.kind == "f":
            labels = np.where(np.isfinite(labels), labels, -1)
        out = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))
        return out.clamp_(min=-1)
    data = np.asarray(array, dtype=np.float32)
    if data.ndim == 2:
        data = data[..., None]
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(data, -1, 0)))


class NpyMultiTaskDataset(Dataset):
    """One split of a ``.npy``-layout benchmark; items are ``{"image": [3, H, W], task: ...}``.

    Args:
        root: dataset root holding ``<split>/``.
        split: ``train`` or ``val`` (any sub-folder name).
        spec: the benchmark (:data:`~mtrl_align.vision.specs.NYUV2` or ``CITYSCAPES2``).
        augmentation: optional :class:`TrainAugmentation` (training only).
        max_samples: use only the first ``max_samples`` samples (0 = all).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        spec: DatasetSpec,
        augmentation: TrainAugmentation | None = None,
        max_samples: int = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.spec = spec
        self.augmentation = augmentation
        self.epoch = 0
        if not self.root.is_dir():
            raise DatasetLayoutError(f"dataset root '{self.root}' does not exist")
        split_dir = self.root / split
        if not split_dir.is_dir():
            raise DatasetLayoutError(
                f"missing split folder '{split_dir}'; {spec.name} expects "
                f"{self.root}/<split>/{{{','.join(self.folders)}}}/<i>.npy"
            )
        counts = {folder: list_indexed_npy(split_dir / folder) for folder in self.folders}
        if len(set(counts.values())) != 1:
            detail = ", ".join(f"{folder}: {n}" for folder, n in counts.items())
            raise DatasetLayoutError(
                f"mismatched file counts in '{split_dir}' ({detail}); every folder needs one "
                "file per sample"
            )
        self.num_samples = counts["image"]
        if max_samples:
            self.num_samples = min(self.num_samples, max_samples)
        self.image_shape = self._check_shapes(split_dir)

    @property
    def folders(self) -> list[str]:
        return ["image"] + [task.folder for task in self.spec.tasks]

    def _check_shapes(self, split_dir: Path) -> tuple[int, int]:
        reference: tuple[int, int] | None = None
        for index in range(self.num_samples):
            image_path = split_dir / "image" / f"{index}.npy"
            shape = npy_shape(image_path)
            if len(shape) != 3 or shape[2] != 3:
                raise DatasetLayoutError(
                    f"image '{image_path}' has shape {shape}; expected [H, W, 3] (channel-last)"
                )
            if reference is None:
                reference = (shape[0], shape[1])
            elif shape[:2] != reference:
                raise DatasetLayoutError(
                    f"image '{image_path}' is {shape[0]}x{shape[1]} but sample 0 is "
                    f"{reference[0]}x{reference[1]}; all images of a split must share one size"
                )
            for task in self.spec.tasks:
                path = split_dir / task.folder / f"{index}.npy"
                accepted = expected_label_shapes(task, *reference)
                label_shape = npy_shape(path)
                if label_shape not in accepted:
                    raise DatasetLayoutError(
                        f"label '{path}' has shape {label_shape}; expected "
                        f"{' or '.join(str(list(a)) for a in accepted)} to match its image"
                    )
        assert reference is not None
        return reference

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (call before each training epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def load_labels(self, index: int) -> dict[str, Tensor]:
        """The labels of sample ``index`` as tensors (no augmentation)."""
        split_dir = self.root / self.split
        return {
            task.name: label_to_tensor(task, np.load(split_dir / task.folder / f"{index}.npy"))
            for task in self.spec.tasks
        }

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"sample index {index} out of range [0, {self.num_samples})")
        image = np.load(self.root / self.split / "image" / f"{index}.npy").astype(np.float32)
        sample: Sample = {
            "image": torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0)))
        }
        sample.update(self.load_labels(index))
        if self.augmentation is not None:
            sample = self.augmentation(sample, index, self.epoch)
        return sample
