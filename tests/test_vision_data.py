"""Vision datasets: on-disk layouts, clear errors naming the file, augmentation rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrl_align.vision.augment import TrainAugmentation, horizontal_flip, scale_crop
from mtrl_align.vision.cityscapes_raw import (
    CityscapesRawDataset,
    instance_offsets,
    semantic_train_ids,
)
from mtrl_align.vision.npy_dataset import DatasetLayoutError, NpyMultiTaskDataset
from mtrl_align.vision.specs import CITYSCAPES2, CITYSCAPES3, NYUV2
from mtrl_align.vision.synthetic_data import write_cityscapes_raw, write_npy_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("spec", [NYUV2, CITYSCAPES2], ids=lambda s: s.name)
def test_npy_loader_reads_files_in_channel_first_form(tmp_path, spec):
    root = write_npy_dataset(tmp_path, spec.name, num_train=3, num_val=2, height=16, width=24)
    dataset = NpyMultiTaskDataset(root, "train", spec)
    assert len(dataset) == 3
    sample = dataset[2]
    raw_image = np.load(root / "train" / "image" / "2.npy")
    np.testing.assert_array_equal(sample["image"].numpy(), np.moveaxis(raw_image, -1, 0))
    for task in spec.tasks:
        raw = np.load(root / "train" / task.folder / "2.npy")
        got = sample[task.name].numpy()
        if task.kind == "segmentation":
            assert sample[task.name].dtype == torch.int64 and got.shape == (16, 24)
            np.testing.assert_array_equal(got, raw.astype(np.int64))
        else:
            expected = raw if raw.ndim == 3 else raw[..., None]
            np.testing.assert_array_equal(got, np.moveaxis(expected, -1, 0))


def test_missing_folder_is_named(tmp_path):
    root = write_npy_dataset(tmp_path, "nyuv2", num_train=2, num_val=1, height=8, width=8)
    for path in (root / "train" / "normal").iterdir():
        path.unlink()
    (root / "train" / "normal").rmdir()
    with pytest.raises(DatasetLayoutError, match=r"missing dataset folder '.*train/normal'"):
        NpyMultiTaskDataset(root, "train", NYUV2)
    with pytest.raises(DatasetLayoutError, match="missing split folder"):
        NpyMultiTaskDataset(root, "test", NYUV2)


def test_mismatched_counts_and_gaps_are_reported(tmp_path):
    root = write_npy_dataset(tmp_path, "cityscapes2", num_train=3, num_val=1, height=8, width=8)
    (root / "train" / "depth" / "2.npy").unlink()
    with pytest.raises(DatasetLayoutError, match=r"mismatched file counts .*depth: 2"):
        NpyMultiTaskDataset(root, "train", CITYSCAPES2)
    (root / "train" / "depth" / "1.npy").rename(root / "train" / "depth" / "5.npy")
    with pytest.raises(DatasetLayoutError, match=r"depth/1\.npy' is missing"):
        NpyMultiTaskDataset(root, "train", CITYSCAPES2)


def test_wrong_shape_names_the_file(tmp_path):
    root = write_npy_dataset(tmp_path, "nyuv2", num_train=2, num_val=1, height=8, width=8)
    np.save(root / "train" / "normal" / "1.npy", np.zeros((8, 8, 2), np.float32))
    with pytest.raises(DatasetLayoutError, match=r"normal/1\.npy' has shape \(8, 8, 2\)"):
        NpyMultiTaskDataset(root, "train", NYUV2)
    np.save(root / "train" / "normal" / "1.npy", np.zeros((8, 8, 3), np.float32))
    np.save(root / "train" / "image" / "0.npy", np.zeros((3, 8, 8), np.float32))
    with pytest.raises(DatasetLayoutError, match=r"image/0\.npy' has shape \(3, 8, 8\)"):
        NpyMultiTaskDataset(root, "train", NYUV2)


def test_semantic_train_ids_follow_the_official_table():
    label_ids = np.array([[7, 8, 0, 33], [26, 255, 24, 6]], dtype=np.uint8)
    np.testing.assert_array_equal(semantic_train_ids(label_ids), [[0, 1, -1, 18], [13, -1, 11, -1]])


def test_instance_offsets_match_a_per_instance_loop():
    rng = np.random.default_rng(0)
    ids = rng.choice([0, 7, 24001, 24002, 26000, 26005], size=(9, 11)).astype(np.int32)
    semantic = semantic_train_ids(np.where(ids >= 1000, ids // 1000, ids))
    semantic[0, 0] = -1  # an instance pixel with an ignored class does not count
    got = instance_offsets(ids, semantic)
    expected = np.full((9, 11, 2), np.nan)
    for instance in np.unique(ids[ids >= 1000]):
        mask = (ids == instance) & (semantic >= 0)
        ys, xs = np.nonzero(mask)
        for y, x in zip(ys, xs, strict=True):
            expected[y, x] = (ys.mean() - y, xs.mean() - x)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_cityscapes_raw_loader_builds_three_tasks(tmp_path):
    root = write_cityscapes_raw(tmp_path, num_train=2, num_val=1, height=32, width=64)
    dataset = CityscapesRawDataset(root, "train", image_size=(16, 32), label_downsample=2)
    sample = dataset[1]
    assert sample["image"].shape == (3, 16, 32)
    assert sample["semantic"].shape == (8, 16) and sample["semantic"].dtype == torch.int64
    assert sample["instance"].shape == (2, 8, 16)
    assert sample["disparity"].shape == (1, 8, 16)
    assert int(sample["semantic"].max()) < CITYSCAPES3.task("semantic").channels
    # a raw pixel's disparity: png value / scale, 0 stays invalid
    from PIL import Image

    raw = np.array(Image.open(dataset.files.samples[1]["disparity"]))
    values = set(
        np.round(sample["disparity"].numpy().ravel() * dataset.disparity_scale).astype(int)
    )
    assert values <= set(raw.ravel().astype(int))


def test_cityscapes_raw_cache_returns_the_same_arrays(tmp_path):
    root = write_cityscapes_raw(tmp_path / "raw", num_train=1, num_val=1, height=32, width=64)
    plain = CityscapesRawDataset(root, "val", image_size=(16, 32), label_downsample=1)[0]
    cached = CityscapesRawDataset(
        root, "val", image_size=(16, 32), label_downsample=1, cache_dir=tmp_path / "c"
    )
    first, second = cached[0], cached[0]
    for key in plain:
        torch.testing.assert_close(first[key], plain[key], equal_nan=True)
        torch.testing.assert_close(second[key], plain[key], equal_nan=True)
    with pytest.raises(ValueError, match="was built with"):
        CityscapesRawDataset(
            root, "val", image_size=(8, 16), label_downsample=1, cache_dir=tmp_path / "c"
        )


def test_cityscapes_raw_errors_name_missing_files(tmp_path):
    root = write_cityscapes_raw(tmp_path, num_train=2, num_val=1, height=16, width=32)
    with pytest.raises(DatasetLayoutError, match=r"missing folder '.*leftImg8bit/test'"):
        CityscapesRawDataset(root, "test")
    (root / "disparity" / "train").rename(root / "disparity" / "other")
    with pytest.raises(DatasetLayoutError, match=r"missing folder '.*disparity/train'"):
        CityscapesRawDataset(root, "train")
    (root / "disparity" / "other").rename(root / "disparity" / "train")
    victim = next((root / "disparity" / "train").glob("*/*_disparity.png"))
    victim.unlink()
    with pytest.raises(DatasetLayoutError, match="mismatched file counts .*disparity: 1"):
        CityscapesRawDataset(root, "train")


def test_flip_twice_is_identity_and_negates_x_components(tmp_path):
    root = write_npy_dataset(tmp_path, "nyuv2", num_train=1, num_val=1, height=8, width=8)
    sample = NpyMultiTaskDataset(root, "train", NYUV2)[0]
    flipped = horizontal_flip(sample, NYUV2)
    torch.testing.assert_close(flipped["normal"][0], -torch.flip(sample["normal"][0], dims=[-1]))
    torch.testing.assert_close(flipped["normal"][1:], torch.flip(sample["normal"][1:], dims=[-1]))
    again = horizontal_flip(flipped, NYUV2)
    for key in sample:
        torch.testing.assert_close(again[key], sample[key])
    offsets = {"instance": torch.randn(2, 4, 4)}
    mirrored = horizontal_flip(offsets, CITYSCAPES3)["instance"]
    torch.testing.assert_close(mirrored[1], -torch.flip(offsets["instance"][1], dims=[-1]))


def test_scale_crop_rescales_geometry_labels():
    depth = torch.full((1, 8, 8), 3.0)
    sample = {
        "image": torch.rand(3, 8, 8),
        "depth": depth,
        "semantic": torch.zeros(8, 8, dtype=torch.int64),
    }
    out = scale_crop(sample, NYUV2, scale=2.0, top=0.0, left=0.0)
    torch.testing.assert_close(out["depth"], depth / 2.0)
    city = scale_crop({"disparity": torch.full((1, 4, 4), 0.5)}, CITYSCAPES3, 2.0, 0.5, 0.5)
    torch.testing.assert_close(city["disparity"], torch.full((1, 4, 4), 1.0))
    labels = torch.arange(64).reshape(8, 8)
    cropped = scale_crop({"semantic": labels}, NYUV2, 2.0, 0.0, 0.0)["semantic"]
    assert set(cropped.unique().tolist()) <= set(labels[:4, :4].flatten().tolist())


def test_augmentation_depends_only_on_seed_epoch_and_index(tmp_path):
    root = write_npy_dataset(tmp_path, "nyuv2", num_train=2, num_val=1, height=16, width=16)
    augmentation = TrainAugmentation(NYUV2, seed=3)
    dataset = NpyMultiTaskDataset(root, "train", NYUV2, augmentation=augmentation)
    dataset.set_epoch(4)
    first = dataset[1]
    _ = dataset[0]
    second = dataset[1]
    for key in first:
        torch.testing.assert_close(first[key], second[key])
    with pytest.raises(ValueError, match="scales must be >= 1.0"):
        TrainAugmentation(NYUV2, seed=0, scales=[0.5])
