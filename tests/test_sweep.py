"""Real sweeps of a tiny training: local pool and submitit's local executor.

One local sweep (two methods x two seeds, plus a third method whose runs crash on a bad
override) is shared by the tests of this module; it is checked run by run, re-run (everything
skipped, failures still listed), reported, compared with a submitit sweep of the same runs
(same seed and config -> identical evaluation logs), and one run is killed and resumed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtrl_align.cli import main as cli_main
from mtrl_align.sweep.launch import execute_run, run_environment, train_command
from mtrl_align.sweep.plan import plan_sweep
from mtrl_align.sweep.report import build_report
from mtrl_align.sweep.runner import SUMMARY_FILE, run_sweep
from mtrl_align.sweep.state import Action

METHODS = ["uniform", "pcgrad"]
SEEDS = [0, 1]
TASKS = ["reach-v3", "push-v3"]
# A typo in a task name given for one method only: those runs crash, the others must not care.
CRASH = ["cagrad:env.tasks=[reach-v3,reach-v33]"]

TINY = {
    "device": "cpu",
    "num_threads": 1,
    "env": {"benchmark": "MT10", "tasks": TASKS, "max_episode_steps": 20},
    "agent": {"actor_hidden": [16], "critic_hidden": [16]},
    "train": {
        "total_env_steps": 40,
        "warmup_env_steps": 10,
        "batch_size_per_task": 8,
        "buffer_capacity": 1000,
    },
    "eval": {"every_env_steps": 20, "episodes_per_task": 1},
}


def _evaluations(run_dir: Path) -> list[dict]:
    """Evaluation records without their wall-clock and CPU times (the only fields allowed to
    differ)."""
    lines = (run_dir / "eval.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        record.pop("wall_time_s")
        record.pop("cpu_time_s")
    return records


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory, tiny_config) -> tuple[Path, int, str]:
    """Run ``mtrl-align sweep`` on the local backend; returns (sweep dir, exit code, output)."""
    out = tmp_path_factory.mktemp("sweeps") / "local"
    code, printed = _run_sweep(
        tiny_config, [*METHODS, "cagrad"], *CRASH, "--out", str(out), "--workers", "2"
    )
    return out, code, printed


def _run_sweep(config: Path, methods: list[str], *options: str) -> tuple[int, str]:
    """``mtrl-align sweep CONFIG --seeds 0:2 --methods M,.. OPTIONS``; (exit code, stdout)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli_main(
            ["sweep", str(config), "--seeds", "0:2", "--methods", ",".join(methods), *options]
        )
    return code, printed.getvalue()


def test_local_sweep_trains_every_run_and_lists_the_crashed_ones(local_sweep):
    out, code, printed = local_sweep
    assert code == 1  # not all runs finished
    summary = {r["name"]: r for r in json.loads((out / SUMMARY_FILE).read_text())["runs"]}
    assert len(summary) == 6
    for method in METHODS:
        for seed in SEEDS:
            run = summary[f"{method}/seed_{seed}"]
            assert run["state"] == "finished" and run["action"] == "start", run
            run_dir = out / method / f"seed_{seed}"
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
            assert (config["aggregation"]["method"], config["seed"]) == (method, seed)
            assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
            assert [r["env_steps"] for r in _evaluations(run_dir)] == [20, 40]
    for seed in SEEDS:
        crashed = summary[f"cagrad/seed_{seed}"]
        assert crashed["state"] == "failed"
        assert "reach-v33" in crashed["error"]
        assert f"failed: cagrad/seed_{seed}" in printed
        assert Path(crashed["log_path"]).is_file()
    # different seeds of one method really are different runs
    runs = [_evaluations(out / "uniform" / f"seed_{s}") for s in SEEDS]
    assert runs[0][-1]["returns"] != runs[1][-1]["returns"]


def test_rerun_skips_finished_and_keeps_listing_failures(local_sweep, tiny_config):
    out, _, _ = local_sweep
    logs = {p: p.read_text() for p in (out / "logs").iterdir()}
    specs = plan_sweep(tiny_config, SEEDS, [*METHODS, "cagrad"], out, CRASH)
    printed = io.StringIO()
    summary = run_sweep(specs, out, stream=printed)
    assert [o.action for o in summary.outcomes] == ["skip"] * 6
    assert len(summary.with_state("finished")) == 4
    assert sorted(o.name for o in summary.with_state("failed")) == [
        "cagrad/seed_0",
        "cagrad/seed_1",
    ]
    assert "failed before, not rerun" in printed.getvalue()
    assert {p: p.read_text() for p in (out / "logs").iterdir()} == logs  # nothing launched
    # a changed setting is refused instead of being mixed into the old runs
    changed = plan_sweep(tiny_config, SEEDS, METHODS, out, ["agent.gamma=0.9"])
    with pytest.raises(ValueError, match=r"agent\.gamma: 0\.99 there, 0\.9 here"):
        run_sweep(changed, out, stream=io.StringIO())


def test_report_of_the_sweep_equals_numpy_on_the_logs(local_sweep, tmp_path):
    out, _, _ = local_sweep
    for metric in ("final", "best"):
        report = build_report(out, tmp_path / metric, metric=metric, with_plots=False)
        assert report.protocol.tasks == tuple(TASKS)
        assert report.protocol.episode_length == 20 and report.protocol.env_steps == 40
        rows = {row.label: row for row in report.rows}
        assert sorted(rows) == sorted(METHODS)
        for method in METHODS:
            scores = []
            for seed in SEEDS:
                records = _evaluations(out / method / f"seed_{seed}")
                means = [r["mean_success"] for r in records]
                chosen = records[-1] if metric == "final" else records[int(np.argmax(means))]
                scores.append([chosen["success"][t] for t in TASKS])
            scores = np.array(scores)  # [seeds, tasks]
            row = rows[method]
            assert row.seeds == SEEDS
            seed_means = scores.mean(axis=1)
            assert row.mean_success.mean == pytest.approx(seed_means.mean())
            assert row.mean_success.sem == pytest.approx(seed_means.std(ddof=1) / np.sqrt(2))
            for t, task in enumerate(TASKS):
                assert row.per_task[task].mean == pytest.approx(scores[:, t].mean())


def test_submitit_local_executor_gives_the_same_runs(local_sweep, tiny_config, tmp_path):
    pytest.importorskip("submitit")
    out, _, _ = local_sweep
    code, printed = _run_sweep(
        tiny_config,
        list(METHODS),
        "--backend",
        "submitit",
        "--cluster",
        "local",
        "--cpus-per-run",
        "1",
        "--timeout-min",
        "10",
        "--out",
        str(tmp_path / "slurm"),
    )
    assert code == 0, printed
    summary = json.loads((tmp_path / "slurm" / SUMMARY_FILE).read_text())["runs"]
    assert all(r["state"] == "finished" and r["extra"]["job_id"] for r in summary)
    assert any((tmp_path / "slurm" / "submitit").iterdir())  # submitit's job files
    for method in METHODS:
        for seed in SEEDS:
            # same seed and config -> the same evaluations, whichever backend ran it
            here = _evaluations(tmp_path / "slurm" / method / f"seed_{seed}")
            assert here == _evaluations(out / method / f"seed_{seed}")


def test_ray_local_mode_gives_the_same_runs(local_sweep, tiny_config, tmp_path):
    pytest.importorskip("ray")  # optional extra: mtrl-align[ray]
    out, _, _ = local_sweep
    code, printed = _run_sweep(
        tiny_config,
        list(METHODS),
        "--backend",
        "ray",
        "--cpus-per-run",
        "1",
        "--out",
        str(tmp_path / "ray"),
    )
    assert code == 0, printed
    summary = json.loads((tmp_path / "ray" / SUMMARY_FILE).read_text())["runs"]
    assert all(r["state"] == "finished" for r in summary)
    for method in METHODS:
        for seed in SEEDS:
            here = _evaluations(tmp_path / "ray" / method / f"seed_{seed}")
            assert here == _evaluations(out / method / f"seed_{seed}")


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(local_sweep, tiny_config, tmp_path):
    out, _, _ = local_sweep
    (spec,) = plan_sweep(
        tiny_config, [0], ["uniform"], tmp_path / "resume", ["train.total_env_steps=60"]
    )
    spec.run_dir.parent.mkdir(parents=True)
    # start the training ourselves and kill it hard (like a lost node) after its first checkpoint
    process = subprocess.Popen(
        train_command(spec, Action.START),
        env=run_environment(threads=1),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (spec.run_dir / "checkpoints" / "latest.pt").is_file():
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert json.loads((spec.run_dir / "status.json").read_text())["state"] == "running"
    outcome = execute_run(spec, threads=1)
    assert (outcome.action, outcome.state) == ("resume", "finished"), outcome.error
    records = _evaluations(spec.run_dir)
    assert [r["env_steps"] for r in records] == [20, 40, 60]
    # the resumed run continues exactly where the uninterrupted one went
    assert records[:2] == _evaluations(out / "uniform" / "seed_0")
