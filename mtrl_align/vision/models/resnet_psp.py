"""A dilated ResNet encoder with one pyramid-pooling (PSP) decoder per task.

This is the PSPNet-style multi-task model of the Cityscapes 3-task benchmark (Sener & Koltun;
Aligned-MTL Table 1): a ResNet whose last two stages use dilation 2 and 4 instead of striding
(output stride 8), and for every task a pyramid pooling module (average pooling into 1x1, 2x2,
3x3, 6x6 bins, 1x1 reduction, upsampling, concatenation) followed by 3x3 conv-BN-ReLU, dropout
and a 1x1 classifier. Outputs are at 1/8 of the input resolution.

Module names follow the usual ResNet layout (``conv1, bn1, layer1..layer4``, blocks with
``conv1/bn1/conv2/bn2[/conv3/bn3]`` and ``downsample.0/.1``) so an ImageNet checkpoint with
these keys can be loaded through ``model.pretrained_path`` (torchvision itself is not needed).
The pyramid branches use no normalisation (1x1 pooled maps break BatchNorm at batch size 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mtrl_align.vision.models.base import MultiTaskDenseModel, conv_bn_relu, finalize_output
from mtrl_align.vision.specs import TaskSpec


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int,
        dilation: int,
        downsample: nn.Module | None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, channels, 3, stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(
            channels, channels, 3, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int,
        dilation: int,
        downsample: nn.Module | None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(
            channels, channels, 3, stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class DilatedResNet(nn.Module):
    """ResNet with output stride 8 (layer3 dilation 2, layer4 dilation 4)."""

    def __init__(
        self, layers: Sequence[int] = (3, 4, 6, 3), block: str = "bottleneck", width: int = 64
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown ResNet block '{block}'; choose from: {', '.join(BLOCKS)}")
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"resnet_layers must be 4 positive block counts, got {list(layers)}")
        block_type = BLOCKS[block]
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.in_channels = width
        settings = [(width, 1, 1), (2 * width, 2, 1), (4 * width, 1, 2), (8 * width, 1, 4)]
        for index, ((channels, stride, dilation), count) in enumerate(
            zip(settings, layers, strict=True)
        ):
            setattr(
                self,
                f"layer{index + 1}",
                self._make_layer(block_type, channels, count, stride, dilation),
            )
        self.out_channels = self.in_channels

    def _make_layer(
        self, block_type: type, channels: int, count: int, stride: int, dilation: int
    ) -> nn.Sequential:
        out_channels = channels * block_type.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self.in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        # the first block of a dilated stage uses half the dilation (as in dilated ResNets)
        blocks = [block_type(self.in_channels, channels, stride, max(1, dilation // 2), downsample)]
        self.in_channels = out_channels
        blocks += [block_type(out_channels, channels, 1, dilation, None) for _ in range(count - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class PyramidPoolingHead(nn.Module):
    """PSP decoder: pyramid pooling over ``bins``, fuse, classify to ``out_channels``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        reduced = max(1, in_channels // len(bins))
        self.bins = tuple(bins)
        self.branches = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(in_channels, reduced, 1), nn.ReLU(inplace=True))
                for _ in self.bins
            ]
        )
        hidden = max(8, in_channels // 4)
        self.fuse = conv_bn_relu(in_channels + reduced * len(self.bins), hidden)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(
                branch(F.adaptive_avg_pool2d(x, b)), size=size, mode="bilinear", align_corners=False
            )
            for b, branch in zip(self.bins, self.branches, strict=True)
        ]
        return self.classifier(self.dropout(self.fuse(torch.cat([x, *pooled], dim=1))))


class ResNetPSP(MultiTaskDenseModel):
    """Dilated ResNet encoder (shared representation = its output) + one PSP head per task."""

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        width: int = 64,
        layers: Sequence[int] = (3, 4, 6, 3),
        block: str = "bottleneck",
        bins: Sequence[int] = (1, 2, 3, 6),
        pretrained_path: str = "",
    ) -> None:
        super().__init__(tasks)
        self.encoder = DilatedResNet(layers, block, width)
        if pretrained_path:
            load_encoder_weights(self.encoder, pretrained_path)
        channels = self.encoder.out_channels
        self.heads = nn.ModuleDict(
            {t.name: PyramidPoolingHead(channels, t.channels, bins) for t in self.tasks}
        )

    def encode(self, images: Tensor) -> list[Tensor]:
        return [self.encoder(images)]

    def decode(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        (shared,) = features
        return {t.name: finalize_output(t, self.heads[t.name](shared)) for t in self.tasks}

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {name: list(head.parameters()) for name, head in self.heads.items()}


def load_encoder_weights(encoder: DilatedResNet, path: str | Path) -> None:
    """Load ResNet weights (a state dict, possibly under ``state_dict``) into ``encoder``;
    classifier keys (``fc.*``) are skipped, every encoder key must be present with its shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained encoder weights '{path}' do not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise ValueError(f"pretrained weights '{path}' lack encoder keys, e.g. {missing[:3]}")
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(
                f"pretrained weight '{key}' in '{path}' has shape {tuple(value.shape)}, "
                f"the encoder needs {tuple(own[key].shape)} (check resnet_layers/block/width)"
            )
    encoder.load_state_dict({k: v for k, v in state.items() if k in own})
