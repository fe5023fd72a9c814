"""``mtrl-align archive`` / ``restore`` and the report's stability tables (no training).

Fake run directories are written in the training contract's format: config.yaml resolved from
the study config by the sweep's own planner, eval.jsonl, status.json, and TensorBoard events
written with ``SummaryWriter`` under the logger's keys. Everything lives under ``tmp_path``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtrl_align.cli import main as cli_main
from mtrl_align.sweep.archive import (
    SCALARS_FILE,
    ArchiveError,
    archive_runs,
    read_scalars,
    read_tb_scalars,
    restore_runs,
    run_scalars,
)
from mtrl_align.sweep.plan import plan_sweep
from mtrl_align.sweep.report import build_report
from mtrl_align.sweep.runner import check_specs, resolve_run_config, run_sweep
from mtrl_align.sweep.state import Action, RunState, decide_action, read_status

ROOT = Path(__file__).resolve().parents[1]
STUDY_CONFIG = ROOT / "configs" / "mt10_cpu_study_v1.yaml"
TASKS = ["reach-v3", "push-v3", "pick-place-v3"]
TOTAL = 1000  # train.total_env_steps of the fake runs
LOG_STEPS = list(range(100, TOTAL + 1, 100))  # 10 logged updates; the last 2 are the last 20%
STAT_KEYS = [f"aggregation/{n}/{s}" for n in ("critic", "actor") for s in ("kappa", "min_cos")]


def _specs(sweep: Path, methods=("uniform", "pcgrad"), seeds=(0, 1)):
    overrides = ["train.total_env_steps=1000", "eval.every_env_steps=500"]
    return plan_sweep(STUDY_CONFIG, list(seeds), list(methods), sweep, overrides)


def write_fake_run(
    spec, rng: np.random.Generator, state: str = "finished", tb: bool = True
) -> dict[str, np.ndarray]:
    """A run directory for ``spec``; returns the logged stability values per key [steps]."""
    run_dir = spec.run_dir
    run_dir.mkdir(parents=True)
    config = resolve_run_config(spec)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with open(run_dir / "eval.jsonl", "w") as handle:
        for i, steps in enumerate((500, 1000)):
            rates = rng.integers(0, 21, size=len(TASKS)) / 20
            entry = {
                "env_steps": steps,
                "mean_success": float(rates.mean()),
                "success": dict(zip(TASKS, rates.tolist(), strict=True)),
                "episodes_per_task": 20,
                "wall_time_s": 1800.0 * (i + 1) + 100.0 * spec.seed,
            }
            if spec.seed == 0:  # seed 1 as a run from before cpu_time_s was logged
                entry["cpu_time_s"] = 1500.0 * (i + 1)
                entry["machine"] = f"CPU {i}, 2 CPUs"  # resumed on another machine
            handle.write(json.dumps(entry) + "\n")
    (run_dir / "status.json").write_text(
        json.dumps({"state": state, "env_steps": 1000, "error": None})
    )
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "latest.pt").write_bytes(b"not archived")
    values = {
        "aggregation/critic/kappa": rng.lognormal(3.0, 1.0, len(LOG_STEPS)),
        "aggregation/actor/kappa": rng.lognormal(2.0, 1.0, len(LOG_STEPS)),
        "aggregation/critic/min_cos": rng.uniform(-1, 1, len(LOG_STEPS)),
        "aggregation/actor/min_cos": rng.uniform(-1, 1, len(LOG_STEPS)),
        "aggregation/critic/gms": rng.uniform(0, 1, len(LOG_STEPS)),
        "losses/critic_mean": rng.uniform(0, 5, len(LOG_STEPS)),
    }
    values["aggregation/actor/kappa"][3] = math.inf  # a rank-deficient Jacobian
    if tb:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
        for i, step in enumerate(LOG_STEPS):
            for key, series in values.items():
                writer.add_scalar(key, float(series[i]), step)
            writer.add_scalar("losses/critic/reach-v3", 1.0, step)  # per task: not archived
            writer.add_scalar("perf/update_ms", 20.0 + i, step + 7)
        writer.close()
    return {k: v.astype(np.float32).astype(float) for k, v in values.items()}


@pytest.fixture
def sweep(tmp_path):
    rng = np.random.default_rng(0)
    sweep_dir = tmp_path / "sweep"
    specs = _specs(sweep_dir)
    logged = {spec.name: write_fake_run(spec, rng) for spec in specs}
    return sweep_dir, specs, logged


def test_tb_scalars_keep_the_stability_keys_only(sweep):
    _, specs, logged = sweep
    rows = read_tb_scalars(specs[0].run_dir / "tb")
    keys = set().union(*rows) - {"step"}
    assert keys == set(logged[specs[0].name]) | {"perf/update_ms"}
    by_step = {row["step"]: row for row in rows}
    for key, series in logged[specs[0].name].items():
        got = np.array([by_step[s][key] for s in LOG_STEPS])
        np.testing.assert_allclose(got, series, rtol=1e-6)
    assert [by_step[s + 7]["perf/update_ms"] for s in LOG_STEPS[:2]] == [20.0, 21.0]


def test_tb_scalars_of_a_resumed_run_drop_the_interrupted_tail_quietly(tmp_path, caplog):
    """A resumed run: session 1 logged steps 100-1000 and was killed; the checkpoint was at
    500, so session 2 starts with ``purge_step=501`` (what the training loop does) and logs
    at 550-950. Session 1's steps 600-1000 must be gone, and the expected purge must not warn.
    """
    from torch.utils.tensorboard import SummaryWriter

    key = "aggregation/critic/kappa"
    first = {step: float(step) for step in LOG_STEPS}  # session 1, interrupted
    second = {step - 50: -float(step) for step in LOG_STEPS if step > 500}  # session 2
    writer = SummaryWriter(str(tmp_path / "tb"))
    for step, value in first.items():
        writer.add_scalar(key, value, step)
    writer.close()
    writer = SummaryWriter(str(tmp_path / "tb"), purge_step=501)
    for step, value in second.items():
        writer.add_scalar(key, value, step)
    writer.close()
    level_before = logging.getLogger("tensorboard").level
    with caplog.at_level(logging.WARNING):
        rows = read_tb_scalars(tmp_path / "tb")
    expected = {**{s: v for s, v in first.items() if s <= 500}, **second}
    assert {row["step"]: row[key] for row in rows} == expected
    assert not [r for r in caplog.records if r.name.startswith("tensorboard")]
    assert logging.getLogger("tensorboard").level == level_before  # restored after reading


def test_archive_restore_round_trip_and_sweep_skips(sweep, tmp_path):
    sweep_dir, specs, logged = sweep
    # a run still training is not archived
    running = _specs(sweep_dir, methods=("cagrad",), seeds=(0,))[0]
    write_fake_run(running, np.random.default_rng(1), state="running")
    archive = tmp_path / "archive"
    result = archive_runs(sweep_dir, archive)
    assert sorted(result.copied) == sorted(s.name for s in specs)
    assert result.not_finished == ["cagrad/seed_0 (interrupted)"]
    for spec in specs:
        stored = archive / spec.name
        assert sorted(p.name for p in stored.iterdir()) == [
            "config.yaml",
            "eval.jsonl",
            SCALARS_FILE,
            "status.json",
        ]
        for name in ("config.yaml", "eval.jsonl", "status.json"):
            assert (stored / name).read_bytes() == (spec.run_dir / name).read_bytes()
        # strict JSON (inf written as a string) that reads back to the TB values
        text = (stored / SCALARS_FILE).read_text()
        assert "Infinity" not in text and '"inf"' in text
        assert read_scalars(stored / SCALARS_FILE) == read_tb_scalars(spec.run_dir / "tb")
    assert not (archive / "cagrad").exists()
    # archiving again changes nothing
    again = archive_runs(sweep_dir, archive)
    assert again.copied == [] and sorted(again.up_to_date) == sorted(s.name for s in specs)

    # a new machine: an empty sweep folder
    fresh = tmp_path / "fresh"
    restored = restore_runs(archive, fresh)
    assert sorted(restored.restored) == sorted(s.name for s in specs)
    assert restore_runs(archive, fresh).already_there == restored.restored
    new_specs = _specs(fresh)
    for spec in new_specs:
        assert not (spec.run_dir / "checkpoints").exists() and not (spec.run_dir / "tb").exists()
        status = read_status(spec.run_dir)
        assert status.state is RunState.FINISHED and not status.has_checkpoint
        assert decide_action(status) is Action.SKIP
    check_specs(new_specs)  # same config (run_dir may differ): no refusal
    stream = io.StringIO()
    summary = run_sweep(new_specs, fresh, backend="local", stream=stream)
    assert "0 to start, 0 to resume, 4 to skip" in stream.getvalue()
    assert summary.all_finished and all(o.action == "skip" for o in summary.outcomes)
    # a seed not in the archive is still started
    more = _specs(fresh, seeds=(0, 1, 2))
    stream = io.StringIO()
    run_sweep(more, fresh, dry_run=True, stream=stream)
    assert "2 to start, 0 to resume, 4 to skip" in stream.getvalue()

    # the report reads the restored runs (scalars.jsonl, no TensorBoard)
    report = build_report(fresh, tmp_path / "report", with_plots=False)
    assert {row.label for row in report.stability} == {"pcgrad", "uniform"}
    assert all(row.seeds_with_scalars == [0, 1] for row in report.stability)


def test_cli_archive_restore(sweep, tmp_path, capsys):
    sweep_dir, specs, _ = sweep
    archive = tmp_path / "archive"
    assert cli_main(["archive", str(sweep_dir), str(archive)]) == 0
    assert "4 copied, 0 up to date, 0 not finished" in capsys.readouterr().out
    assert cli_main(["restore", str(archive), str(tmp_path / "new")]) == 0
    assert "4 restored, 0 already there" in capsys.readouterr().out


def test_refusals(sweep, tmp_path, capsys):
    sweep_dir, specs, _ = sweep
    archive = tmp_path / "archive"
    archive_runs(sweep_dir, archive)

    # the sweep folder holds, at an archived run's place, a run with another config
    other = tmp_path / "other"
    spec = _specs(other, methods=("uniform",), seeds=(0,))[0]
    spec.run_dir.mkdir(parents=True)
    config = resolve_run_config(spec)
    config["train"]["batch_size_per_task"] = 64
    (spec.run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ArchiveError, match="another config.*batch_size_per_task"):
        restore_runs(archive, other)
    assert not (other / "pcgrad").exists()  # refused before copying anything
    # ... and through the CLI: one line, exit code 2
    assert cli_main(["restore", str(archive), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtrl-align restore: error:") and "\n" not in err

    # the same config, but unfinished there: not overwritten
    (spec.run_dir / "config.yaml").write_text(yaml.safe_dump(resolve_run_config(spec)))
    (spec.run_dir / "status.json").write_text(json.dumps({"state": "running", "env_steps": 5}))
    with pytest.raises(ArchiveError, match="unfinished run"):
        restore_runs(archive, other)

    # an archive that holds an unfinished run
    bad_archive = tmp_path / "bad_archive"
    restore_runs(archive, tmp_path / "tmp_copy")
    archive_runs(tmp_path / "tmp_copy", bad_archive)
    (bad_archive / "uniform" / "seed_1" / "status.json").write_text(
        json.dumps({"state": "running", "env_steps": 10})
    )
    with pytest.raises(ArchiveError, match="not finished"):
        restore_runs(bad_archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()

    # archiving a run whose archived copy has another config
    stored = archive / "pcgrad" / "seed_0" / "config.yaml"
    changed = yaml.safe_load(stored.read_text())
    changed["agent"]["critic_hidden"] = [64, 64]
    stored.write_text(yaml.safe_dump(changed))
    with pytest.raises(ArchiveError, match="archive run .*another config"):
        archive_runs(sweep_dir, archive)

    # overlapping folders
    with pytest.raises(ArchiveError, match="must not contain"):
        archive_runs(sweep_dir, sweep_dir / "archive")
    # a live sweep on the folder that would receive runs
    target = tmp_path / "live"
    target.mkdir()
    import os
    import socket

    (target / ".sweep.lock").write_text(
        json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": 0})
    )
    with pytest.raises(ArchiveError, match="is running on"):
        restore_runs(archive, target)


def test_stability_table_against_numpy(sweep, tmp_path):
    sweep_dir, specs, logged = sweep
    report = build_report(sweep_dir, tmp_path / "out")
    rows = {row.label: row for row in report.stability}
    last = np.array(LOG_STEPS) >= 0.8 * TOTAL
    for method in ("uniform", "pcgrad"):
        row = rows[method]
        assert row.seeds == [0, 1] and row.seeds_with_scalars == [0, 1]
        for key in STAT_KEYS:
            network, stat = key.split("/")[1:]
            per_seed = [logged[f"{method}/seed_{s}"][key] for s in (0, 1)]
            whole = [np.median(v) for v in per_seed]
            tail = [np.median(v[last]) for v in per_seed]
            got = row.whole[(network, stat)]
            assert got.median == pytest.approx(np.median(whole), rel=1e-6, abs=1e-6)
            assert (got.low, got.high) == pytest.approx(
                (min(whole), max(whole)), rel=1e-6, abs=1e-6
            )
            got = row.last[(network, stat)]
            assert got.median == pytest.approx(np.median(tail), rel=1e-6, abs=1e-6)
            assert (got.low, got.high) == pytest.approx((min(tail), max(tail)), rel=1e-6, abs=1e-6)
        # wall time: last evaluation's wall_time_s, hours
        assert row.wall_time_h == pytest.approx([1.0, (3600 + 100) / 3600])
        assert row.cpu_time_h[0] == pytest.approx(3000 / 3600) and math.isnan(row.cpu_time_h[1])
        assert row.machines == ["CPU 0, 2 CPUs", "CPU 1, 2 CPUs", "not logged"]
        assert row.update_ms.median == pytest.approx(24.5)
    text = report.markdown.read_text()
    wall_cell = f"{(1 + 3700 / 3600) / 2:.2f} [1.00, {3700 / 3600:.2f}]"
    cpu_cell = f"{3000 / 3600:.2f} [{3000 / 3600:.2f}, {3000 / 3600:.2f}] (1 of 2 seeds)"
    assert f"| {wall_cell} | s0: 1.00, s1: {3700 / 3600:.2f} | {cpu_cell} |" in text
    assert "| CPU 0, 2 CPUs; CPU 1, 2 CPUs; not logged |" in text
    csv_rows = list(csv.DictReader(open(tmp_path / "out" / "stability.csv")))
    assert [float(r["cpu_time_h_mean"]) for r in csv_rows] == pytest.approx([3000 / 3600] * 2)
    assert "## Gradient stability during training" in text and "### Critic" in text
    assert "## Wall time and speed per run" in text
    assert "stability.png" in [p.name for p in report.plots]
    png = tmp_path / "out" / "stability.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and 5_000 < png.stat().st_size < 200_000
    assert (tmp_path / "out" / "stability.csv").is_file()
    # TB events and the archived scalars.jsonl give the same table
    archive = tmp_path / "archive"
    archive_runs(sweep_dir, archive)
    from_archive = build_report(archive, tmp_path / "out2", with_plots=False)
    for a, b in zip(report.stability, from_archive.stability, strict=True):
        assert a.whole == b.whole and a.last == b.last


def test_runs_without_scalars_get_no_stability_plot(tmp_path):
    rng = np.random.default_rng(2)
    spec = _specs(tmp_path / "s", methods=("uniform",), seeds=(0,))[0]
    write_fake_run(spec, rng, tb=False)
    assert run_scalars(spec.run_dir) is None
    report = build_report(tmp_path / "s", tmp_path / "out")
    assert [p.name for p in report.plots] == ["success_curves.png", "success_intervals.png"]
    assert "No run has stability scalars" in report.markdown.read_text()
    result = archive_runs(tmp_path / "s", tmp_path / "a")
    assert result.without_scalars == ["uniform/seed_0"]
    assert not (tmp_path / "a" / "uniform" / "seed_0" / SCALARS_FILE).exists()


def test_config_keys_added_later_count_as_defaults(sweep, tmp_path):
    """A run saved before a config key existed is still the same run (skipped, same row)."""
    sweep_dir, specs, _ = sweep
    old = specs[0]  # uniform/seed_0
    config = yaml.safe_load((old.run_dir / "config.yaml").read_text())
    removed = config["agent"].pop("num_experts", "absent")
    assert removed is None  # a key added (default None) after the running sweep started
    (old.run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    check_specs(specs)  # not refused as "another config"
    archive = tmp_path / "archive"
    archive_runs(sweep_dir, archive)
    fresh = tmp_path / "fresh"
    restore_runs(archive, fresh)
    stream = io.StringIO()
    run_sweep(_specs(fresh), fresh, dry_run=True, stream=stream)
    assert "0 to start, 0 to resume, 4 to skip" in stream.getvalue()
    report = build_report(fresh, tmp_path / "report", with_plots=False)
    assert {row.label: row.seeds for row in report.rows} == {"pcgrad": [0, 1], "uniform": [0, 1]}
    # a real difference is still one
    config["agent"]["num_experts"] = 4
    (old.run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ValueError, match="num_experts"):
        check_specs(specs)


def test_study_archive_is_not_git_ignored():
    """The study script archives finished runs into git; an ignore rule there loses them.

    ``runs/`` (not ``/runs/``) in .gitignore once matched docs/results/.../runs/ as well, and
    every archived run vanished with the machine.
    """
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    archived = "docs/results/mt10_cpu_study/runs/shared/uniform/seed_0/eval.jsonl"
    local = "runs/sweeps/mt10_cpu_study/shared/uniform/seed_0/eval.jsonl"
    verdicts = {
        path: subprocess.run(
            ["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False
        ).returncode
        for path in (archived, local)
    }
    assert verdicts == {archived: 1, local: 0}, f"0 = ignored, 1 = tracked: {verdicts}"
