"""Vision models: output shapes, parameter groups, and the encode/decode boundary."""

from __future__ import annotations

import pytest
import torch

from mtrl_align.vision.config import ModelConfig
from mtrl_align.vision.models import MTAN, ResNetPSP, SegNetSplit, build_model
from mtrl_align.vision.models.resnet_psp import DilatedResNet, load_encoder_weights
from mtrl_align.vision.specs import CITYSCAPES3, NYUV2

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(arch):
    if arch == "segnet":
        return SegNetSplit(NYUV2.tasks, width=4, num_stages=3), NYUV2, 1
    if arch == "mtan":
        return MTAN(NYUV2.tasks, width=4, num_stages=3), NYUV2, 1
    return (
        ResNetPSP(CITYSCAPES3.tasks, width=4, layers=(1, 1, 1, 1), block="bottleneck", bins=(1, 2)),
        CITYSCAPES3,
        8,
    )


@pytest.mark.parametrize("arch", ["segnet", "mtan", "resnet_psp"])
def test_outputs_have_task_channels_and_unit_normals(arch):
    torch.manual_seed(0)
    model, spec, stride = _tiny(arch)
    outputs = model(torch.rand(2, 3, 24, 40))
    for task in spec.tasks:
        assert outputs[task.name].shape == (2, task.channels, 24 // stride, 40 // stride)
    if "normal" in outputs:
        norms = outputs["normal"].norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))


@pytest.mark.parametrize("arch", ["segnet", "mtan", "resnet_psp"])
def test_decode_reads_the_encoder_only_through_the_representation(arch):
    """Gradients of decode(detached features) reach no encoder parameter, every decoder one."""
    torch.manual_seed(0)
    model, spec, _ = _tiny(arch)
    features = [f.detach().requires_grad_(True) for f in model.encode(torch.rand(2, 3, 16, 16))]
    outputs = model.decode(features)
    sum(o.float().square().mean() for o in outputs.values()).backward()
    assert all(p.grad is None for p in model.encoder_parameters())
    assert all(p.grad is not None for p in model.decoder_parameters())
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in features)


def test_each_task_branch_depends_only_on_its_task():
    torch.manual_seed(0)
    model = MTAN(NYUV2.tasks, width=4, num_stages=2)
    outputs = model(torch.rand(1, 3, 16, 16))
    outputs["depth"].sum().backward()
    for task, params in model.task_parameters().items():
        touched = any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        assert touched == (task == "depth"), task


def test_published_sizes_at_full_width():
    segnet = build_model(ModelConfig(arch="segnet"), NYUV2)
    count = sum(p.numel() for p in segnet.parameters())
    assert 24.5e6 < count < 25.5e6  # SegNet split: ~25M in the MTAN/CAGrad benchmarks
    encoder = DilatedResNet((3, 4, 6, 3), "bottleneck", 64)
    assert 23.0e6 < sum(p.numel() for p in encoder.parameters()) < 23.6e6  # ResNet-50 without fc


def test_pretrained_encoder_weights_load_and_mismatches_are_named(tmp_path):
    torch.manual_seed(0)
    source = DilatedResNet((1, 1, 1, 1), "basic", 4)
    state = {**source.state_dict(), "fc.weight": torch.zeros(3, 3)}
    torch.save(state, tmp_path / "w.pt")
    model = ResNetPSP(
        CITYSCAPES3.tasks,
        width=4,
        layers=(1, 1, 1, 1),
        block="basic",
        pretrained_path=str(tmp_path / "w.pt"),
    )
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[key], value)
    with pytest.raises(ValueError, match=r"has shape .*\(check resnet_layers/block/width\)"):
        load_encoder_weights(DilatedResNet((1, 1, 1, 1), "basic", 8), tmp_path / "w.pt")
    with pytest.raises(ValueError, match="unknown model.arch 'pspnet'"):
        build_model(ModelConfig(arch="pspnet"), NYUV2)
