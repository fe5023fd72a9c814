"""Vision multi-task models: SegNet split, MTAN, dilated ResNet + PSP heads."""

from __future__ import annotations

from mtrl_align.vision.models.base import MultiTaskDenseModel
from mtrl_align.vision.models.resnet_psp import ResNetPSP
from mtrl_align.vision.models.segnet import MTAN, SegNetSplit
from mtrl_align.vision.specs import DatasetSpec

ARCHITECTURES = ("segnet", "mtan", "resnet_psp")

__all__ = [
    "ARCHITECTURES",
    "MTAN",
    "MultiTaskDenseModel",
    "ResNetPSP",
    "SegNetSplit",
    "build_model",
]


def build_model(model_config, spec: DatasetSpec) -> MultiTaskDenseModel:
    """The model named by ``model_config.arch`` for the tasks of ``spec``."""
    arch = model_config.arch
    if arch == "segnet":
        model = SegNetSplit(spec.tasks, model_config.width, model_config.num_stages)
    elif arch == "mtan":
        model = MTAN(spec.tasks, model_config.width, model_config.num_stages)
    elif arch == "resnet_psp":
        model = ResNetPSP(
            spec.tasks,
            width=model_config.width,
            layers=tuple(model_config.resnet_layers),
            block=model_config.resnet_block,
            bins=tuple(model_config.psp_bins),
            pretrained_path=model_config.pretrained_path,
        )
    else:
        raise ValueError(f"unknown model.arch '{arch}'; choose from: {', '.join(ARCHITECTURES)}")
    model.check_parameter_groups()
    return model
