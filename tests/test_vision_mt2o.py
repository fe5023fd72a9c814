"""NYUv2 / Cityscapes as MT2O problems: protocol compliance and a tiny MT2O run."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from mtrl_align.mt2o.problems import check_problem
from mtrl_align.mt2o.problems import make_problem as make_mt2o_problem
from mtrl_align.vision.synthetic_data import write_npy_dataset

TINY = {"width": 4, "num_stages": 2, "batch_size": 2, "eval_batch_size": 3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu")
    return write_npy_dataset(root, "nyuv2", num_train=4, num_val=3, height=16, width=16)


def test_nyuv2_problem_follows_the_protocol(nyu_root):
    problem = make_mt2o_problem("nyuv2", root=str(nyu_root), **TINY)
    check_problem(problem)
    assert problem.task_names == ("semantic", "depth", "normal")
    a = problem.build_model(torch.Generator().manual_seed(5))
    b = problem.build_model(torch.Generator().manual_seed(5))
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, msg=name)
    batch = problem.train_batch(0, torch.Generator().manual_seed(0), torch.device("cpu"))
    params = dict(a.named_parameters())
    buffers = dict(a.named_buffers())

    def forward(*inputs):
        return functional_call(a, (params, buffers), inputs)

    losses = problem.task_losses(forward, batch)
    assert losses.shape == (3,) and torch.isfinite(losses).all()
    grads = torch.autograd.grad(losses.sum(), list(params.values()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    values = problem.evaluate(a, torch.device("cpu"))
    assert values.shape == (3,)
    # default reference point: 1.1 x the validation losses of the seed-0 initial model
    reference = problem.evaluate(problem.build_model(torch.Generator().manual_seed(0)), "cpu")
    torch.testing.assert_close(
        torch.tensor(problem.reference_point, dtype=torch.float64), (1.1 * reference).double()
    )


def test_validation_losses_do_not_depend_on_eval_batch_size(nyu_root):
    one = make_mt2o_problem("nyuv2", root=str(nyu_root), **{**TINY, "eval_batch_size": 1})
    three = make_mt2o_problem("nyuv2", root=str(nyu_root), **TINY)
    model = one.build_model(torch.Generator().manual_seed(1))
    torch.testing.assert_close(one.evaluate(model, "cpu"), three.evaluate(model, "cpu"))


def test_bad_options_are_named(nyu_root):
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['widht'\]"):
        make_mt2o_problem("nyuv2", root=str(nyu_root), widht=4)
    with pytest.raises(ValueError, match="needs root="):
        make_mt2o_problem("cityscapes2")
    with pytest.raises(ValueError, match="reference_point needs 3 entries"):
        make_mt2o_problem("nyuv2", root=str(nyu_root), reference_point=[1.0, 2.0], **TINY)


def test_tiny_nyuv2_runs_through_mt2o_and_gains_hypervolume(nyu_root):
    from mtrl_align.mt2o.optimizer import MT2OConfig, run_mt2o

    problem = make_mt2o_problem("nyuv2", root=str(nyu_root), **TINY)
    result = run_mt2o(problem, MT2OConfig(subproblems=3, steps=6, eval_every=3, lr=1e-2))
    assert result.losses.shape == (3, 3, 3)  # [evaluations, subproblems, tasks]
    assert result.hypervolume[-1] > result.hypervolume[0] > 0
