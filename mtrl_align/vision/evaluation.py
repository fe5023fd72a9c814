"""Score a model on a split, or score saved predictions, with whole-split metrics and Delta_m.

Saved predictions (``mtrl-align vision eval``) use the label layout: one folder per task named
like the label folder (nyuv2: ``label, depth, normal``; cityscapes2: ``label_7, depth``;
cityscapes3: ``semantic, instance, disparity``) holding ``<i>.npy`` for every sample i of the
evaluation split (same order as the labels; for cityscapes3 the sorted raw file names).
Arrays are channel-last like the labels: segmentation [H, W] class indices, depth/disparity
[H, W] or [H, W, 1], normals [H, W, 3], instance offsets [H, W, 2]. For cityscapes3 the labels
are built at the resolution of the predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mtrl_align.vision.cityscapes_raw import CityscapesRawDataset
from mtrl_align.vision.delta_m import delta_m
from mtrl_align.vision.losses import match_label_size
from mtrl_align.vision.metrics import MultiTaskMeter
from mtrl_align.vision.models.base import MultiTaskDenseModel
from mtrl_align.vision.npy_dataset import (
    DatasetLayoutError,
    NpyMultiTaskDataset,
    expected_label_shapes,
    label_to_tensor,
    list_indexed_npy,
)
from mtrl_align.vision.specs import DatasetSpec, get_dataset_spec


@torch.no_grad()
def evaluate_model(
    model: MultiTaskDenseModel,
    dataset: Dataset,
    spec: DatasetSpec,
    batch_size: int,
    device: torch.device,
    num_workers: int = 0,
) -> dict[str, float]:
    """Metrics of ``model`` over all of ``dataset`` (eval mode; outputs resized to the labels)."""
    was_training = model.training
    model.eval()
    meter = MultiTaskMeter(spec)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    try:
        for batch in loader:
            images = batch["image"].to(device, non_blocking=True)
            labels = {name: batch[name].to(device, non_blocking=True) for name in spec.task_names}
            outputs = model(images)
            outputs = {
                name: match_label_size(outputs[name], labels[name]) for name in spec.task_names
            }
            meter.update(outputs, labels)
    finally:
        model.train(was_training)
    return meter.compute()


def _prediction_tensor(
    spec: DatasetSpec, task_name: str, path: Path, label_shape: tuple[int, ...]
) -> torch.Tensor:
    task = spec.task(task_name)
    try:
        array = np.load(path)
    except Exception as error:  # noqa: BLE001
        raise DatasetLayoutError(f"cannot read prediction file '{path}': {error}") from None
    accepted = expected_label_shapes(task, *label_shape)
    if tuple(array.shape) not in accepted:
        raise DatasetLayoutError(
            f"prediction '{path}' has shape {tuple(array.shape)}; expected "
            f"{' or '.join(str(list(a)) for a in accepted)} (the label layout)"
        )
    if task.kind == "segmentation" and array.dtype.kind not in "iu":
        if (
            array.dtype.kind != "f"
            or not np.all(np.isfinite(array))
            or not np.all(array == np.round(array))
        ):
            raise DatasetLayoutError(f"prediction '{path}' must hold integer class indices")
    if task.kind != "segmentation" and not np.all(np.isfinite(array)):
        raise DatasetLayoutError(f"prediction '{path}' contains NaN or inf")
    return label_to_tensor(task, array)


def evaluate_predictions(
    dataset_name: str, root: str | Path, predictions: str | Path, split: str = "val"
) -> dict[str, float]:
    """Whole-split metrics of saved predictions (layout in the module docstring)."""
    spec = get_dataset_spec(dataset_name)
    predictions = Path(predictions)
    if not predictions.is_dir():
        raise FileNotFoundError(f"predictions folder '{predictions}' does not exist")
    counts = {task.folder: list_indexed_npy(predictions / task.folder) for task in spec.tasks}
    if spec.name == "cityscapes3":
        labels_source = CityscapesRawDataset(root, split, label_downsample=1)
    else:
        labels_source = NpyMultiTaskDataset(root, split, spec)
    expected = len(labels_source)
    wrong = {folder: n for folder, n in counts.items() if n != expected}
    if wrong:
        detail = ", ".join(f"{folder}: {n}" for folder, n in wrong.items())
        raise DatasetLayoutError(
            f"prediction file counts in '{predictions}' do not match the {expected} samples of "
            f"split '{split}' ({detail})"
        )
    meter = MultiTaskMeter(spec)
    for index in range(expected):
        if spec.name == "cityscapes3":
            first = np.load(predictions / spec.tasks[0].folder / f"{index}.npy", mmap_mode="r")
            label_size = tuple(first.shape[:2])
            labels = labels_source.load_labels(index, label_size=label_size)
        else:
            labels = labels_source.load_labels(index)
        preds = {}
        for task in spec.tasks:
            label = labels[task.name]
            shape = tuple(label.shape[-2:])
            preds[task.name] = _prediction_tensor(
                spec, task.name, predictions / task.folder / f"{index}.npy", shape
            )
        meter.update(
            {name: p.unsqueeze(0) for name, p in preds.items()},
            {name: t.unsqueeze(0) for name, t in labels.items()},
        )
    return meter.compute()


def report(
    metrics: dict[str, float], spec: DatasetSpec, baselines: dict[str, float] | None = None
) -> dict:
    """Metrics plus Delta_m in both conventions, as one JSON-able dict."""
    result = {"dataset": spec.name, "metrics": dict(metrics)}
    result.update(delta_m(metrics, spec, baselines).to_dict())
    result["baselines"] = dict(baselines) if baselines else dict(spec.baselines)
    return result


def format_report(result: dict) -> str:
    """Human-readable table of :func:`report`'s output."""
    lines = [f"dataset: {result['dataset']}"]
    width = max(len(k) for k in result["metrics"])
    for key, value in result["metrics"].items():
        base = result["baselines"].get(key)
        change = result["relative_changes"].get(key)
        extra = f"   baseline {base:.4f}   change {change:+.2f} %" if base is not None else ""
        lines.append(f"  {key:<{width}}  {value:.4f}{extra}")
    lines.append(
        f"Delta_m task-weighted:   {result['delta_m_task_weighted']:+.2f} %  "
        "(mean over tasks of each task's mean relative change; lower is better)"
    )
    lines.append(
        f"Delta_m metric-weighted: {result['delta_m_metric_weighted']:+.2f} %  "
        "(mean relative change over all metrics; lower is better)"
    )
    return "\n".join(lines)


@torch.no_grad()
def save_predictions(
    model: MultiTaskDenseModel,
    dataset: Dataset,
    spec: DatasetSpec,
    out_dir: str | Path,
    device: torch.device,
) -> Path:
    """Write ``model``'s predictions on ``dataset`` in the layout ``vision eval`` reads
    (segmentation as int64 class indices, the rest channel-last float32, at label size)."""
    out_dir = Path(out_dir)
    for task in spec.tasks:
        (out_dir / task.folder).mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        for index in range(len(dataset)):
            sample = dataset[index]
            outputs = model(sample["image"].unsqueeze(0).to(device))
            for task in spec.tasks:
                pred = match_label_size(
                    outputs[task.name], sample[task.name].unsqueeze(0).to(device)
                )[0]
                if task.kind == "segmentation":
                    array = pred.argmax(0).cpu().numpy().astype(np.int64)
                else:
                    array = np.moveaxis(pred.cpu().numpy().astype(np.float32), 0, -1)
                np.save(out_dir / task.folder / f"{index}.npy", array)
    finally:
        model.train(was_training)
    return out_dir
