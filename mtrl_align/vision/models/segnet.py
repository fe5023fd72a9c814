"""SegNet backbone, the SegNet "split" multi-task model and MTAN (Liu et al., CVPR 2019).

The backbone is a VGG-16-style encoder (stages of 2, 2, 3, 3, 3 convolutions, channel widths
w, 2w, 4w, 8w, 8w, max-pooling with indices) and a mirrored decoder (max-unpooling with the
encoder's indices). With w = 64 and 5 stages it is the SegNet of the MTAN / CAGrad / Nash-MTL
benchmarks; ``width`` and ``num_stages`` shrink it for tests and CPU runs.

* :class:`SegNetSplit`: shared encoder-decoder, one head per task (3x3 conv + 1x1 conv);
  shared representation = the decoder's last feature map [B, w, H, W].
* :class:`MTAN`: the same backbone plus, per task, soft attention masks at every encoder and
  decoder stage; shared 3x3 convolutions between attention stages (as in MTAN). The task
  branches read the backbone at every stage, so the shared representation is the list of all
  stage tensors the branches read (for each encoder stage: first conv output and stage
  output; for each decoder stage: unpooled input and stage output).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mtrl_align.vision.models.base import MultiTaskDenseModel, conv_bn_relu, finalize_output
from mtrl_align.vision.specs import TaskSpec

CONVS_PER_STAGE = (2, 2, 3, 3, 3)
WIDTH_MULTIPLIERS = (1, 2, 4, 8, 8)


def stage_channels(width: int, num_stages: int) -> list[int]:
    if not 1 <= num_stages <= len(CONVS_PER_STAGE):
        raise ValueError(f"num_stages must be in [1, {len(CONVS_PER_STAGE)}], got {num_stages}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    return [width * m for m in WIDTH_MULTIPLIERS[:num_stages]]


class SegNetBackbone(nn.Module):
    """Encoder-decoder returning every stage tensor (see :meth:`forward`)."""

    def __init__(self, width: int = 64, num_stages: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        self.channels = stage_channels(width, num_stages)
        self.enc_first = nn.ModuleList()
        self.enc_rest = nn.ModuleList()
        previous = in_channels
        for stage, channels in enumerate(self.channels):
            self.enc_first.append(conv_bn_relu(previous, channels))
            self.enc_rest.append(
                nn.Sequential(
                    *[conv_bn_relu(channels, channels) for _ in range(CONVS_PER_STAGE[stage] - 1)]
                )
            )
            previous = channels
        # decoder stage k maps channels[k] -> channels[k-1] (stage 0 keeps channels[0])
        self.dec_first = nn.ModuleList()
        self.dec_rest = nn.ModuleList()
        for stage, channels in enumerate(self.channels):
            out = self.channels[stage - 1] if stage > 0 else channels
            self.dec_first.append(conv_bn_relu(channels, out))
            self.dec_rest.append(
                nn.Sequential(*[conv_bn_relu(out, out) for _ in range(CONVS_PER_STAGE[stage] - 1)])
            )

    def forward(self, images: Tensor) -> dict[str, list[Tensor]]:
        """Stage tensors: ``enc_first[k]``, ``enc_out[k]`` (encoder stage k, before pooling),
        ``up[k]``, ``dec_out[k]`` (decoder stage k, k from deepest to 0; lists are indexed by
        stage). ``dec_out[0]`` [B, w, H, W] is the final shared feature map."""
        enc_first, enc_out, indices, sizes = [], [], [], []
        x = images
        for first, rest in zip(self.enc_first, self.enc_rest, strict=True):
            a = first(x)
            b = rest(a)
            enc_first.append(a)
            enc_out.append(b)
            sizes.append(b.shape[-2:])
            x, idx = F.max_pool2d(b, kernel_size=2, stride=2, return_indices=True)
            indices.append(idx)
        num = len(self.channels)
        up: list[Tensor] = [images] * num
        dec_out: list[Tensor] = [images] * num
        for stage in reversed(range(num)):
            u = F.max_unpool2d(x, indices[stage], kernel_size=2, stride=2, output_size=sizes[stage])
            x = self.dec_rest[stage](self.dec_first[stage](u))
            up[stage] = u
            dec_out[stage] = x
        return {"enc_first": enc_first, "enc_out": enc_out, "up": up, "dec_out": dec_out}


class TaskHead(nn.Module):
    """3x3 conv-BN-ReLU then a 1x1 conv to the task's channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = conv_bn_relu(in_channels, in_channels)
        self.out = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x))


class SegNetSplit(MultiTaskDenseModel):
    """Shared SegNet encoder-decoder with one :class:`TaskHead` per task."""

    def __init__(self, tasks: Sequence[TaskSpec], width: int = 64, num_stages: int = 5) -> None:
        super().__init__(tasks)
        self.backbone = SegNetBackbone(width, num_stages)
        self.heads = nn.ModuleDict({t.name: TaskHead(width, t.channels) for t in self.tasks})

    def encode(self, images: Tensor) -> list[Tensor]:
        return [self.backbone(images)["dec_out"][0]]

    def decode(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        (shared,) = features
        return {t.name: finalize_output(t, self.heads[t.name](shared)) for t in self.tasks}

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {name: list(head.parameters()) for name, head in self.heads.items()}


class AttentionMask(nn.Module):
    """MTAN soft mask: 1x1 conv-BN-ReLU, 1x1 conv-BN, sigmoid."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=1),
            nn.BatchNorm2d(out_channels),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class TaskAttention(nn.Module):
    """One task's attention masks (all encoder and decoder stages) and its head."""

    def __init__(self, channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.encoder_masks = nn.ModuleList(
            [AttentionMask(c if k == 0 else 2 * c, c) for k, c in enumerate(channels)]
        )
        self.decoder_masks = nn.ModuleList()
        for k, c in enumerate(channels):
            out = channels[k - 1] if k > 0 else c
            self.decoder_masks.append(AttentionMask(c + out, out))
        self.head = TaskHead(channels[0], out_channels)


class MTAN(MultiTaskDenseModel):
    """Multi-Task Attention Network on the SegNet backbone."""

    def __init__(self, tasks: Sequence[TaskSpec], width: int = 64, num_stages: int = 5) -> None:
        super().__init__(tasks)
        self.backbone = SegNetBackbone(width, num_stages)
        channels = self.backbone.channels
        self.num_stages = len(channels)
        # shared convolutions between attention stages
        # (encoder: c_k -> c_{k+1}; decoder: c_k -> c_{k-1})
        self.encoder_att_convs = nn.ModuleList(
            [
                conv_bn_relu(c, channels[min(k + 1, len(channels) - 1)])
                for k, c in enumerate(channels)
            ]
        )
        self.decoder_att_convs = nn.ModuleList(
            [conv_bn_relu(c, channels[k - 1] if k > 0 else c) for k, c in enumerate(channels)]
        )
        self.attention = nn.ModuleDict(
            {t.name: TaskAttention(channels, t.channels) for t in self.tasks}
        )

    def encode(self, images: Tensor) -> list[Tensor]:
        stages = self.backbone(images)
        return stages["enc_first"] + stages["enc_out"] + stages["up"] + stages["dec_out"]

    def decode(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        n = self.num_stages
        if len(features) != 4 * n:
            raise ValueError(f"MTAN.decode expects {4 * n} stage tensors, got {len(features)}")
        enc_first, enc_out = features[:n], features[n : 2 * n]
        up, dec_out = features[2 * n : 3 * n], features[3 * n :]
        outputs = {}
        for task in self.tasks:
            branch = self.attention[task.name]
            x: Tensor | None = None
            for k in range(n):
                mask_input = enc_first[k] if x is None else torch.cat([enc_first[k], x], dim=1)
                masked = branch.encoder_masks[k](mask_input) * enc_out[k]
                x = F.max_pool2d(self.encoder_att_convs[k](masked), kernel_size=2, stride=2)
            for k in reversed(range(n)):
                x = F.interpolate(x, size=up[k].shape[-2:], mode="bilinear", align_corners=False)
                x = self.decoder_att_convs[k](x)
                x = branch.decoder_masks[k](torch.cat([up[k], x], dim=1)) * dec_out[k]
            outputs[task.name] = finalize_output(task, branch.head(x))
        return outputs

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def shared_decoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder_att_convs.parameters()) + list(self.decoder_att_convs.parameters())

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {name: list(branch.parameters()) for name, branch in self.attention.items()}
