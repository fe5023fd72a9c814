"""Write small generated datasets in each on-disk format (for tests, demos and smoke runs).

The real NYUv2/Cityscapes cannot be downloaded here, so these writers produce the exact file
layouts the loaders read, with labels that are simple per-pixel functions of the image (so a
network can learn them and a short training lowers every loss). They are NOT a benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtrl_align.vision.specs import get_dataset_spec


def _smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1]: a few random blobs (piecewise smooth, like a scene)."""
    coarse = rng.random((max(2, height // 8), max(2, width // 8), 3))
    rows = np.minimum(np.arange(height) * coarse.shape[0] // height, coarse.shape[0] - 1)
    cols = np.minimum(np.arange(width) * coarse.shape[1] // width, coarse.shape[1] - 1)
    return coarse[rows[:, None], cols[None, :]].astype(np.float32)


def _labels_from_image(
    image: np.ndarray, dataset: str, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    spec = get_dataset_spec(dataset)
    out: dict[str, np.ndarray] = {}
    for task in spec.tasks:
        if task.kind == "segmentation":
            label = np.minimum((image[..., 0] * task.channels).astype(np.int64), task.channels - 1)
            label[rng.random(label.shape) < 0.05] = -1
            out[task.folder] = label.astype(np.float32) if dataset == "nyuv2" else label
        elif task.kind in ("depth", "disparity"):
            depth = (0.5 + 2.0 * image[..., 1:2]).astype(np.float32)
            depth[rng.random(depth.shape) < 0.05] = 0.0
            out[task.folder] = depth
        elif task.kind == "normal":
            normal = np.stack(
                [image[..., 2] - 0.5, image[..., 1] - 0.5, np.full_like(image[..., 0], 0.7)], -1
            )
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            normal[rng.random(normal.shape[:2]) < 0.05] = 0.0
            out[task.folder] = normal.astype(np.float32)
    return out


def write_npy_dataset(
    root: str | Path,
    dataset: str = "nyuv2",
    num_train: int = 4,
    num_val: int = 3,
    height: int = 32,
    width: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``root/{train,val}/{image,<label folders>}/<i>.npy`` for nyuv2 or cityscapes2."""
    if dataset not in ("nyuv2", "cityscapes2"):
        raise ValueError(f"npy layout exists for nyuv2 and cityscapes2, not '{dataset}'")
    root = Path(root)
    rng = np.random.default_rng(seed)
    spec = get_dataset_spec(dataset)
    for split, count in (("train", num_train), ("val", num_val)):
        for folder in ["image"] + [t.folder for t in spec.tasks]:
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image = _smooth_image(rng, height, width)
            np.save(root / split / "image" / f"{index}.npy", image)
            for folder, array in _labels_from_image(image, dataset, rng).items():
                np.save(root / split / folder / f"{index}.npy", array)
    return root


def write_cityscapes_raw(
    root: str | Path,
    num_train: int = 2,
    num_val: int = 2,
    height: int = 64,
    width: int = 128,
    seed: int = 0,
    city: str = "testcity",
) -> Path:
    """Write raw-format Cityscapes PNGs (leftImg8bit, gtFine labelIds/instanceIds, disparity)."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    label_ids = np.array([7, 8, 11, 21, 23, 0, 24, 26])  # road, sidewalk, ..., person, car
    for split, count in (("train", num_train), ("val", num_val)):
        for folder in ("leftImg8bit", "gtFine", "disparity"):
            (root / folder / split / city).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            stem = f"{city}_{index:06d}_000019"
            image = _smooth_image(rng, height, width)
            labels = label_ids[
                np.minimum((image[..., 0] * len(label_ids)).astype(int), len(label_ids) - 1)
            ]
            instances = labels.astype(np.int32).copy()
            for class_id in (24, 26):  # two instances per thing class: left and right half
                mask = labels == class_id
                instances[mask] = (
                    class_id * 1000
                    + (np.arange(width)[None, :] >= width // 2).repeat(height, 0)[mask]
                )
            disparity = (1 + image[..., 1] * 20000).astype(np.uint16)
            disparity[rng.random(disparity.shape) < 0.05] = 0
            Image.fromarray((image * 255).astype(np.uint8)).save(
                root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            )
            Image.fromarray(labels.astype(np.uint8)).save(
                root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
            )
            Image.fromarray(instances.astype(np.uint16)).save(
                root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png"
            )
            Image.fromarray(disparity).save(
                root / "disparity" / split / city / f"{stem}_disparity.png"
            )
    return root
