"""Vision training: gradients go where they should, every aggregator runs, losses drop,
runs are deterministic and resume exactly."""

from __future__ import annotations

import json

import pytest
import torch

from mtrl_align import aggregation
from mtrl_align.checkpointing import CheckpointError
from mtrl_align.cli import main as cli_main
from mtrl_align.vision.config import load_vision_config
from mtrl_align.vision.losses import multitask_losses
from mtrl_align.vision.models import MTAN, ResNetPSP, SegNetSplit
from mtrl_align.vision.npy_dataset import NpyMultiTaskDataset
from mtrl_align.vision.specs import CITYSCAPES3, NYUV2
from mtrl_align.vision.synthetic_data import write_cityscapes_raw, write_npy_dataset
from mtrl_align.vision.trainer import load_resume_config, train
from mtrl_align.vision.update import MultiTaskGradient

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory):
    return write_npy_dataset(
        tmp_path_factory.mktemp("nyu"), "nyuv2", num_train=4, num_val=2, height=16, width=16
    )


def _batch(root, count=2):
    dataset = NpyMultiTaskDataset(root, "train", NYUV2)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(count)])
    return batch["image"], {name: batch[name] for name in NYUV2.task_names}


def _grads(params):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def test_uniform_on_parameters_equals_backprop_of_summed_loss(nyu_root):
    torch.manual_seed(0)
    model = MTAN(NYUV2.tasks, width=4, num_stages=2)
    images, labels = _batch(nyu_root)
    MultiTaskGradient(model, NYUV2, aggregation.make("uniform"), target="parameters")(
        images, labels
    )
    got = _grads(model.parameters())
    model.zero_grad()
    multitask_losses(NYUV2, model(images), labels).sum().backward()
    for a, b in zip(got, _grads(model.parameters()), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_task_parameters_receive_only_their_own_task_gradient(nyu_root):
    torch.manual_seed(0)
    model = MTAN(NYUV2.tasks, width=4, num_stages=2)
    images, labels = _batch(nyu_root)
    MultiTaskGradient(model, NYUV2, aggregation.make("aligned-mtl"))(images, labels)
    for index, task in enumerate(NYUV2.task_names):
        params = model.task_parameters()[task]
        got = _grads(params)
        losses = multitask_losses(NYUV2, model(images), labels)
        own = torch.autograd.grad(losses[index], params, allow_unused=True)
        for g, o, p in zip(got, own, params, strict=True):
            torch.testing.assert_close(
                g, o if o is not None else torch.zeros_like(p), rtol=1e-4, atol=1e-6
            )


def test_aligned_mtl_on_parameters_writes_J_transpose_weights(nyu_root):
    torch.manual_seed(0)
    model = SegNetSplit(NYUV2.tasks, width=4, num_stages=2)
    images, labels = _batch(nyu_root)
    agg = aggregation.make("aligned-mtl")
    MultiTaskGradient(model, NYUV2, agg)(images, labels)
    shared = model.shared_parameters()
    got = torch.cat([g.flatten() for g in _grads(shared)])
    losses = multitask_losses(NYUV2, model(images), labels)
    rows = []
    for t in range(len(NYUV2.tasks)):  # independent Jacobian: one autograd.grad per task
        grads = torch.autograd.grad(losses[t], shared, retain_graph=True)
        rows.append(torch.cat([g.flatten() for g in grads]))
    J = torch.stack(rows)
    torch.testing.assert_close(got, agg.last_weights.to(J.dtype) @ J, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("arch", ["segnet", "mtan"])
def test_ub_variant_backpropagates_weighted_losses_through_the_encoder(nyu_root, arch):
    torch.manual_seed(0)
    model = (SegNetSplit if arch == "segnet" else MTAN)(NYUV2.tasks, width=4, num_stages=2)
    images, labels = _batch(nyu_root)
    agg = aggregation.make("aligned-mtl-ub")
    updater = MultiTaskGradient(model, NYUV2, agg)
    assert updater.on_representation
    updater(images, labels)
    encoder = model.encoder_parameters()
    decoder = model.decoder_parameters()
    got_encoder, got_decoder = _grads(encoder), _grads(decoder)
    losses = multitask_losses(NYUV2, model(images), labels)
    weighted = torch.autograd.grad(
        (agg.last_weights.to(losses.dtype) * losses).sum(), encoder, retain_graph=True
    )
    plain = torch.autograd.grad(losses.sum(), decoder, allow_unused=True)
    for g, e in zip(got_encoder, weighted, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-3, atol=1e-6)
    for g, e, p in zip(got_decoder, plain, decoder, strict=True):
        torch.testing.assert_close(
            g, e if e is not None else torch.zeros_like(p), rtol=1e-3, atol=1e-6
        )


@pytest.mark.parametrize("method", aggregation.available())
def test_every_aggregator_runs_one_vision_step(nyu_root, method):
    torch.manual_seed(0)
    model = SegNetSplit(NYUV2.tasks, width=2, num_stages=2)
    images, labels = _batch(nyu_root)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    MultiTaskGradient(model, NYUV2, aggregation.make(method))(images, labels)
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.isfinite(grads).all() and grads.abs().sum() > 0
    optimizer.step()


@pytest.mark.parametrize(
    "method", ["uniform", "aligned-mtl", "aligned-mtl-ub", "dwa", "uncertainty"]
)
def test_short_training_lowers_every_task_loss(nyu_root, method):
    torch.manual_seed(0)
    model = SegNetSplit(NYUV2.tasks, width=8, num_stages=2)
    images, labels = _batch(nyu_root, count=4)
    updater = MultiTaskGradient(model, NYUV2, aggregation.make(method))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = []
    for _ in range(30):
        history.append(updater(images, labels).losses)
        optimizer.step()
    first, final = history[0], torch.stack(history[-3:]).mean(0)
    assert (final < 0.8 * first).all(), (first.tolist(), final.tolist())


def test_resnet_psp_trains_on_cityscapes3_representation(tmp_path):
    from mtrl_align.vision.cityscapes_raw import CityscapesRawDataset

    root = write_cityscapes_raw(tmp_path, num_train=2, num_val=1, height=32, width=64)
    dataset = CityscapesRawDataset(root, "train", image_size=(32, 64), label_downsample=8)
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])
    labels = {name: batch[name] for name in CITYSCAPES3.task_names}
    torch.manual_seed(0)
    model = ResNetPSP(CITYSCAPES3.tasks, width=4, layers=(1, 1, 1, 1), block="basic", bins=(1, 2))
    result = MultiTaskGradient(model, CITYSCAPES3, aggregation.make("mgda-ub"))(
        batch["image"], labels
    )
    assert result.losses.shape == (3,) and torch.isfinite(result.losses).all()
    assert all(p.grad is not None for p in model.encoder_parameters())


def _config(root, run_dir, *extra):
    return load_vision_config(
        None,
        [
            f"data.root={root}",
            "device=cpu",
            f"run_dir={run_dir}",
            "model.width=4",
            "model.num_stages=2",
            "train.epochs=2",
            "train.batch_size=2",
            "train.eval_batch_size=2",
            "aggregation.stats_every=1",
            "data.augment_scales=[1.0,1.5]",
            *extra,
        ],
    )


def _model_state(run_dir):
    return torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)["model"]


def test_training_run_is_deterministic_and_resumes_exactly(nyu_root, tmp_path):
    first = train(_config(nyu_root, tmp_path / "a", "aggregation.method=rlw"))
    second = train(_config(nyu_root, tmp_path / "b", "aggregation.method=rlw"))
    interrupted = train(
        _config(nyu_root, tmp_path / "c", "aggregation.method=rlw", "train.epochs=1")
    )
    resumed = train(load_resume_config(interrupted, ["train.epochs=2"]), resume_dir=interrupted)
    reference = _model_state(first)
    for other in (second, resumed):
        state = _model_state(other)
        for key in reference:
            torch.testing.assert_close(state[key], reference[key], rtol=0, atol=0)
    records = [json.loads(line) for line in (first / "metrics.jsonl").read_text().splitlines()]
    resumed_records = [
        json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["metrics"] for r in records] == [r["metrics"] for r in resumed_records]
    assert json.loads((first / "status.json").read_text())["state"] == "finished"
    assert (first / "summary.json").is_file() and any((first / "tb").iterdir())


def test_resume_refuses_a_changed_experiment(nyu_root, tmp_path):
    run = train(_config(nyu_root, tmp_path / "run", "train.epochs=1"))
    config_file = run / "config.yaml"
    config_file.write_text(config_file.read_text().replace("method: uniform", "method: pcgrad"))
    with pytest.raises(CheckpointError, match="method is 'uniform' there, 'pcgrad' here"):
        train(load_resume_config(run), resume_dir=run)
    with pytest.raises(ValueError, match="'optim.lr' cannot change when resuming"):
        load_resume_config(run, ["optim.lr=0.1"])


def test_cli_trains_from_a_shipped_config_and_rejects_typos(nyu_root, tmp_path, capsys):
    args = [
        "vision",
        "train",
        "configs/vision/nyuv2_segnet.yaml",
        f"data.root={nyu_root}",
        "device=cpu",
        f"run_dir={tmp_path / 'cli'}",
        "model.width=2",
        "model.num_stages=2",
        "train.epochs=1",
        "aggregation.method=aligned-mtl-ub",
    ]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "Delta_m task-weighted" in out and "semantic/miou" in out
    assert cli_main(args[:3] + ["aggregation.metod=pcgrad"]) == 2
    assert "did you mean 'aggregation.method'" in capsys.readouterr().err
    failed_run = tmp_path / "failed"
    assert cli_main(args[:3] + [f"data.root={tmp_path / 'nowhere'}", f"run_dir={failed_run}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not failed_run.exists()  # a start that fails on its dataset leaves no run directory
