"""Config schema of ``mtrl-align vision train`` (one dataclass; YAML files in configs/vision/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtrl_align.config_io import load_config


@dataclass
class DataConfig:
    dataset: str = "nyuv2"
    """Benchmark: nyuv2 | cityscapes2 | cityscapes3."""
    root: str = ""
    """Dataset root (npy layout for nyuv2/cityscapes2, raw Cityscapes folders for cityscapes3)."""
    train_split: str = "train"
    """Split folder used for training."""
    eval_split: str = "val"
    """Split folder used for evaluation."""
    augment: bool = True
    """Random scale-crop (scales below) and horizontal flip on the training split."""
    augment_scales: list[float] = field(default_factory=lambda: [1.0, 1.2, 1.5])
    """Zoom factors of the random scale-crop (1.0 = no crop)."""
    image_size: list[int] = field(default_factory=lambda: [256, 512])
    """cityscapes3 only: network input [H, W]."""
    label_downsample: int = 8
    """cityscapes3 only: labels at image_size / label_downsample (8 = PSPNet output stride)."""
    disparity_scale: float = 2729.068
    """cityscapes3 only: raw disparity PNG values are divided by this."""
    cache_dir: str = ""
    """cityscapes3 only: folder for processed samples (empty = decode PNGs every time)."""
    num_workers: int = 0
    """DataLoader worker processes."""
    max_train_samples: int = 0
    """Use only the first N training samples (0 = all)."""
    max_eval_samples: int = 0
    """Use only the first N evaluation samples (0 = all)."""


@dataclass
class ModelConfig:
    arch: str = "segnet"
    """segnet (SegNet split) | mtan | resnet_psp."""
    width: int = 64
    """Base channel width (64 = the published SegNet/MTAN/ResNet)."""
    num_stages: int = 5
    """segnet/mtan: encoder stages (5 = VGG-16 layout); input H and W must divide 2**stages."""
    resnet_layers: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    """resnet_psp: blocks per stage ([3, 4, 6, 3] with bottleneck = ResNet-50)."""
    resnet_block: str = "bottleneck"
    """resnet_psp: basic | bottleneck."""
    psp_bins: list[int] = field(default_factory=lambda: [1, 2, 3, 6])
    """resnet_psp: pyramid pooling bin sizes."""
    pretrained_path: str = ""
    """resnet_psp: optional ImageNet ResNet state dict for the encoder."""


@dataclass
class AggregationConfig:
    method: str = "uniform"
    """Aggregator name from mtrl_align.aggregation.available()."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword options of the aggregator (free-form), e.g. {c: 0.4} for cagrad."""
    target: str = "auto"
    """Where per-task gradients are taken: parameters (shared weights) | representation (shared
    features, the UB variants) | auto (representation for UB methods, else parameters)."""
    task_weights: list[float] = field(default_factory=list)
    """Pre-defined task weights w (empty = 1 per task)."""
    weight_task_specific: bool = False
    """Scale each task's own parameters' gradient by the task weight the method chose."""
    stats_every: int = 50
    """Log gradient statistics (kappa, GMS, min cosine, norm ratio) every N steps (0 = never)."""


@dataclass
class OptimConfig:
    lr: float = 1e-4
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    lr_milestones: list[int] = field(default_factory=lambda: [100])
    """Epochs after which the learning rate is multiplied by lr_gamma."""
    lr_gamma: float = 0.5
    """Learning-rate factor at each milestone."""
    grad_clip: float = 0.0
    """Clip the global gradient norm to this (0 = off)."""


@dataclass
class TrainSection:
    epochs: int = 200
    """Training epochs."""
    batch_size: int = 2
    """Training batch size."""
    eval_batch_size: int = 4
    """Evaluation batch size (metrics do not depend on it)."""
    eval_every: int = 1
    """Evaluate every N epochs (and after the last one)."""
    average_last: int = 10
    """summary.json also reports the mean metrics of the last N evaluations."""
    steps_per_epoch: int = 0
    """Cap on optimizer steps per epoch (0 = the whole training split)."""
    log_every: int = 10
    """Write training losses to TensorBoard every N steps."""


@dataclass
class VisionConfig:
    seed: int = 0
    """Seed of weights, data order and augmentation."""
    device: str = "auto"
    """cpu | cuda | cuda:N | auto."""
    run_dir: str = ""
    """Run directory (default runs/vision_<dataset>_<arch>_<method>_s<seed>_<time>)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSection = field(default_factory=TrainSection)
    baselines: dict[str, float] = field(default_factory=dict)
    """Single-task baselines for Delta_m, {"<task>/<metric>": value}; empty = dataset defaults."""


FREE_PREFIXES = ("aggregation.options", "baselines")


def load_vision_config(path: str | Path | None, overrides: list[str] | None = None) -> VisionConfig:
    """A :class:`VisionConfig` from a YAML file and ``key=value`` overrides."""
    return load_config(VisionConfig, path, overrides, free_prefixes=FREE_PREFIXES)
