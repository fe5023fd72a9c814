"""Sweep planning, run-state detection and config checks (no training here)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import yaml

from mtrl_align.cli import build_parser
from mtrl_align.config import load_train_config
from mtrl_align.config_io import to_dict
from mtrl_align.sweep.launch import train_command
from mtrl_align.sweep.local_backend import pool_size
from mtrl_align.sweep.plan import parse_methods, parse_seeds, plan_sweep, split_overrides
from mtrl_align.sweep.runner import check_specs, resolve_run_config, run_sweep
from mtrl_align.sweep.state import Action, RunState, RunStatus, decide_action, read_status


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "device": "cpu",
                "env": {"tasks": ["reach-v3", "push-v3"], "max_episode_steps": 20},
                "train": {"total_env_steps": 40},
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0:10", list(range(10))),
        ("0:10:3", [0, 3, 6, 9]),
        ("7", [7]),
        ("4,1,7", [1, 4, 7]),
        ("0:3, 10, 20:22", [0, 1, 2, 10, 20, 21]),
    ],
)
def test_parse_seeds(spec, expected):
    assert parse_seeds(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("5:3", "is empty"),
        ("a:b", "bad seed spec 'a:b'"),
        ("1,2,1", r"\[1\] given more than once"),
        ("-2:1", "non-negative"),
        ("0:4:0", "positive step"),
        ("", "empty --seeds"),
    ],
)
def test_parse_seeds_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_seeds(spec)


def test_parse_methods():
    assert parse_methods("uniform, pcgrad,aligned-mtl") == ["uniform", "pcgrad", "aligned-mtl"]
    assert parse_methods(None) is None
    with pytest.raises(ValueError, match="more than once"):
        parse_methods("uniform,uniform")
    with pytest.raises(ValueError, match="empty --methods"):
        parse_methods(" , ")


def test_split_overrides():
    shared, per_method = split_overrides(
        ["train.total_env_steps=100", "cagrad:aggregation.options.c=0.9"], ["uniform", "cagrad"]
    )
    assert shared == ["train.total_env_steps=100"]
    assert per_method == {"uniform": [], "cagrad": ["aggregation.options.c=0.9"]}
    with pytest.raises(ValueError, match="method 'pcgrad', which is not in this sweep"):
        split_overrides(["pcgrad:aggregation.options.c=1"], ["uniform"])
    with pytest.raises(ValueError, match="set by the sweep itself"):
        split_overrides(["seed=3"], ["uniform"])
    with pytest.raises(ValueError, match="not of the form"):
        split_overrides(["train.total_env_steps"], ["uniform"])


def test_plan_gives_each_run_its_method_seed_dir_and_options(config_file, tmp_path):
    specs = plan_sweep(
        config_file,
        [0, 2],
        ["uniform", "cagrad"],
        tmp_path / "out",
        ["eval.episodes_per_task=3", "cagrad:aggregation.options.c=0.9"],
    )
    assert [s.name for s in specs] == [
        "uniform/seed_0",
        "uniform/seed_2",
        "cagrad/seed_0",
        "cagrad/seed_2",
    ]
    for spec in specs:
        # what training will load for this run (the real config loader)
        config = load_train_config(spec.config_path, list(spec.overrides))
        assert config.seed == spec.seed
        assert config.aggregation.method == spec.method
        assert Path(config.run_dir) == tmp_path / "out" / spec.method / f"seed_{spec.seed}"
        assert config.eval.episodes_per_task == 3
        assert config.train.progress_bar is False
        assert config.aggregation.options == ({"c": 0.9} if spec.method == "cagrad" else {})
        assert config.train.total_env_steps == 40  # from the YAML
        command = train_command(spec, Action.START)
        assert command[1:5] == ["-m", "mtrl_align.cli", "train", str(config_file.resolve())]
        assert train_command(spec, Action.RESUME)[-2:] == ["--resume", str(spec.run_dir)]


def _write_status(run_dir: Path, state: str | None, checkpoint: bool, error: str | None = None):
    run_dir.mkdir(parents=True, exist_ok=True)
    if state is not None:
        (run_dir / "status.json").write_text(
            json.dumps({"state": state, "env_steps": 20, "error": error})
        )
    if checkpoint:
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "latest.pt").write_bytes(b"x")


@pytest.mark.parametrize(
    ("state", "checkpoint", "expected_state", "action", "action_retry"),
    [
        (None, False, RunState.NEW, Action.START, Action.START),
        ("finished", True, RunState.FINISHED, Action.SKIP, Action.SKIP),
        ("running", True, RunState.INTERRUPTED, Action.RESUME, Action.RESUME),
        ("running", False, RunState.INTERRUPTED, Action.START, Action.START),
        (None, True, RunState.INTERRUPTED, Action.RESUME, Action.RESUME),
        ("failed", True, RunState.FAILED, Action.SKIP, Action.RESUME),
        ("failed", False, RunState.FAILED, Action.SKIP, Action.START),
    ],
)
def test_state_detection_and_action(
    tmp_path, state, checkpoint, expected_state, action, action_retry
):
    run_dir = tmp_path / "run"
    _write_status(run_dir, state, checkpoint, error="boom" if state == "failed" else None)
    status = read_status(run_dir)
    assert status.state is expected_state
    assert status.has_checkpoint is checkpoint
    assert decide_action(status) is action
    assert decide_action(status, retry_failed=True) is action_retry
    if state == "failed":
        assert status.error == "boom"


def test_unreadable_status_counts_as_failed(tmp_path):
    (tmp_path / "status.json").write_text("{not json")
    status = read_status(tmp_path)
    assert status.state is RunState.FAILED and "unreadable" in status.error
    assert read_status(tmp_path / "missing") == RunStatus(RunState.NEW)


def test_check_specs_refuses_run_dir_with_other_config(config_file, tmp_path):
    specs = plan_sweep(config_file, [0], ["uniform"], tmp_path / "out")
    check_specs(specs)  # nothing on disk yet
    saved = resolve_run_config(specs[0])
    specs[0].run_dir.mkdir(parents=True)
    saved["device"] = "cuda"  # run-time settings may differ
    (specs[0].run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    check_specs(specs)
    saved["train"]["total_env_steps"] = 999
    (specs[0].run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ValueError, match=r"train\.total_env_steps: 999 there, 40 here"):
        check_specs(specs)


def test_check_specs_names_run_with_bad_config(config_file, tmp_path):
    specs = plan_sweep(config_file, [0], ["uniform"], tmp_path / "out", ["train.total_env_step=5"])
    with pytest.raises(
        ValueError, match="run uniform/seed_0: .*did you mean 'train.total_env_steps'"
    ):
        check_specs(specs)
    specs = plan_sweep(config_file, [0], ["not-a-method"], tmp_path / "out")
    with pytest.raises(ValueError, match="not-a-method"):
        check_specs(specs)


def test_resolved_config_is_a_plain_dict(config_file, tmp_path):
    (spec,) = plan_sweep(config_file, [1], ["uniform"], tmp_path / "out")
    assert resolve_run_config(spec) == to_dict(load_train_config(config_file, list(spec.overrides)))


def test_pool_size():
    workers, threads = pool_size(num_runs=3, workers=2)
    assert workers == 2 and threads >= 1
    assert pool_size(num_runs=1)[0] == 1
    assert pool_size(num_runs=8, gpus=["0", "1"], runs_per_gpu=2)[0] == 4
    with pytest.raises(ValueError, match="--workers must be at least 1"):
        pool_size(3, workers=0)


def test_cli_accepts_overrides_between_options(config_file):
    args = build_parser().parse_args(
        ["sweep", str(config_file), "--seeds", "0:2", "a.b=1", "--methods", "x,y", "c=2"]
    )
    assert args.overrides == ["a.b=1", "c=2"]
    assert args.seeds == "0:2" and args.methods == "x,y" and args.backend == "local"


def test_run_of_a_live_submitit_job_is_left_alone(config_file, tmp_path):
    out = tmp_path / "out"
    (spec,) = plan_sweep(config_file, [0], ["uniform"], out)
    _write_status(spec.run_dir, "running", checkpoint=True)  # looks interrupted on disk ...
    (out / "submitit").mkdir()
    jobs = {spec.name: {"job_id": str(os.getpid()), "cluster": "local"}}  # ... but its job lives
    (out / "submitit" / "jobs.json").write_text(json.dumps(jobs))
    printed = io.StringIO()
    summary = run_sweep([spec], out, stream=printed)
    (outcome,) = summary.outcomes
    assert (outcome.action, outcome.state) == ("skip", "active")
    assert f"still running as job {os.getpid()}" in printed.getvalue()


def test_run_that_crashed_before_writing_anything_stays_listed(config_file, tmp_path):
    out = tmp_path / "out"
    (spec,) = plan_sweep(config_file, [0], ["uniform"], out)
    out.mkdir()
    earlier = {"runs": [{"name": spec.name, "state": "failed", "error": "bad option 'x'"}]}
    (out / "sweep_summary.json").write_text(json.dumps(earlier))
    printed = io.StringIO()
    summary = run_sweep([spec], out, stream=printed)
    (outcome,) = summary.outcomes
    assert (outcome.action, outcome.state, outcome.error) == ("skip", "failed", "bad option 'x'")
    assert (
        "failed before, not rerun (--retry-failed reruns it): bad option 'x'" in printed.getvalue()
    )
    # the summary written now still knows it, so the next sweep lists it too
    assert json.loads((out / "sweep_summary.json").read_text())["runs"][0]["state"] == "failed"


def test_error_of_a_crashed_run_is_the_last_log_line_of_its_last_attempt(tmp_path):
    from mtrl_align.sweep.launch import _error_from_log

    log = tmp_path / "run.log"
    log.write_text(
        "\n=== 2026-01-01 10:00:00 start: [...]\nerror: first attempt\n"
        "\n=== 2026-01-01 11:00:00 resume: [...]\n"
        "/x/box.py:297: UserWarning: precision lowered\n  gym.logger.warn(\n"
        "Traceback (most recent call last):\nValueError: bad thing\n"
    )
    error = _error_from_log(1, log)
    assert error.splitlines() == [
        "ValueError: bad thing (exit code 1)",
        "Traceback (most recent call last):",
    ]
