"""What each vision benchmark contains: its tasks, label folders, metrics and default baselines.

Everything dataset-specific that the loaders, losses, metrics and Delta_m need is declared here
once, so adding a benchmark means adding one :class:`DatasetSpec`.

Task kinds and their tensors (in memory, one sample, channel-first):

* ``segmentation``: class indices int64 [H, W], ``-1`` = ignored pixel.
* ``depth``: float32 [1, H, W], ``0`` = invalid pixel (no depth measured).
* ``disparity``: float32 [1, H, W], ``0`` = invalid pixel; grows when objects come closer.
* ``normal``: float32 [3, H, W] unit vectors, all-zero vector = invalid pixel.
* ``offset``: float32 [2, H, W] (dy, dx) from a pixel to its instance centroid in pixels,
  ``NaN`` = pixel belongs to no instance.
"""

from __future__ import annotations

from dataclasses import dataclass

TASK_KINDS = ("segmentation", "depth", "disparity", "normal", "offset")


@dataclass(frozen=True)
class TaskSpec:
    """One dense prediction task of a benchmark."""

    name: str
    """Task name used in configs, logs and prediction folders (e.g. ``semantic``)."""
    kind: str
    """One of :data:`TASK_KINDS`; decides the loss, the metrics and the augmentation rule."""
    channels: int
    """Output channels of the task head (classes for segmentation)."""
    folder: str
    """Label folder name on disk (also the prediction folder name for ``vision eval``)."""


@dataclass(frozen=True)
class MetricSpec:
    """One reported metric; ``key`` is ``<task>/<metric>``."""

    key: str
    higher_is_better: bool

    @property
    def task(self) -> str:
        return self.key.split("/", 1)[0]


@dataclass(frozen=True)
class DatasetSpec:
    """A benchmark: tasks, metrics (in report order) and default single-task baselines."""

    name: str
    tasks: tuple[TaskSpec, ...]
    metrics: tuple[MetricSpec, ...]
    baselines: dict[str, float]
    """Default single-task baselines for Delta_m (metric key -> value); see the docstring of
    each constant for the source."""
    baseline_source: str

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(task.name for task in self.tasks)

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise ValueError(
            f"unknown task '{name}' for {self.name}; choose from: {', '.join(self.task_names)}"
        )

    def metric(self, key: str) -> MetricSpec:
        for metric in self.metrics:
            if metric.key == key:
                return metric
        raise ValueError(
            f"unknown metric '{key}' for {self.name}; choose from: "
            f"{', '.join(m.key for m in self.metrics)}"
        )


_SEG = (MetricSpec("semantic/miou", True), MetricSpec("semantic/pixel_acc", True))
_DEPTH = (MetricSpec("depth/abs_err", False), MetricSpec("depth/rel_err", False))
_NORMAL = (
    MetricSpec("normal/mean_angle", False),
    MetricSpec("normal/median_angle", False),
    MetricSpec("normal/within_11.25", True),
    MetricSpec("normal/within_22.5", True),
    MetricSpec("normal/within_30", True),
)

NYUV2 = DatasetSpec(
    name="nyuv2",
    tasks=(
        TaskSpec("semantic", "segmentation", 13, "label"),
        TaskSpec("depth", "depth", 1, "depth"),
        TaskSpec("normal", "normal", 3, "normal"),
    ),
    metrics=_SEG + _DEPTH + _NORMAL,
    baselines={
        "semantic/miou": 0.3830,
        "semantic/pixel_acc": 0.6376,
        "depth/abs_err": 0.6754,
        "depth/rel_err": 0.2780,
        "normal/mean_angle": 25.01,
        "normal/median_angle": 19.21,
        "normal/within_11.25": 0.3014,
        "normal/within_22.5": 0.5720,
        "normal/within_30": 0.6915,
    },
    baseline_source="single-task SegNet/MTAN baselines used by MTAN, CAGrad, Nash-MTL, Aligned-MTL",
)

CITYSCAPES2 = DatasetSpec(
    name="cityscapes2",
    tasks=(
        TaskSpec("semantic", "segmentation", 7, "label_7"),
        # The MTAN-preprocessed "depth" is inverse depth (disparity-like); values used as stored.
        TaskSpec("depth", "disparity", 1, "depth"),
    ),
    metrics=_SEG + _DEPTH,
    baselines={
        "semantic/miou": 0.7401,
        "semantic/pixel_acc": 0.9316,
        "depth/abs_err": 0.0125,
        "depth/rel_err": 27.77,
    },
    baseline_source="single-task MTAN baselines, Aligned-MTL paper Table 4 (from CAGrad)",
)

CITYSCAPES3 = DatasetSpec(
    name="cityscapes3",
    tasks=(
        TaskSpec("semantic", "segmentation", 19, "semantic"),
        TaskSpec("instance", "offset", 2, "instance"),
        TaskSpec("disparity", "disparity", 1, "disparity"),
    ),
    metrics=(
        _SEG[0],
        _SEG[1],
        MetricSpec("instance/l1", False),
        MetricSpec("disparity/abs_err", False),
        MetricSpec("disparity/mse", False),
    ),
    baselines={"semantic/miou": 0.6673, "instance/l1": 10.55, "disparity/mse": 0.33},
    baseline_source="single-task PSPNet baselines, Aligned-MTL paper Table 1",
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (NYUV2, CITYSCAPES2, CITYSCAPES3)}


def get_dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` called ``name``; unknown names list the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset '{name}'; choose from: {', '.join(DATASETS)}") from None
