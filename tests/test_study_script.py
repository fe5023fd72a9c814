"""scripts/study_mt10_cpu_efficient.sh end to end, at a toy size (one seed, 300 env steps).

The script is the study's only entry point: it trains the efficient critic with three methods
and MT-SAC, archives the finished runs and writes two reports (every row against MT-SAC, and
the efficient rows against their uniform row). This checks that it does so, that the reports
read the archived evaluations (recomputed here from eval.jsonl), and that it resumes: with the
run folders gone, a second call restores them from the archive and trains nothing.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "study_mt10_cpu_efficient.sh"
METHODS = ("uniform", "aligned-mtl", "pcgrad")
TOY = [
    "train.total_env_steps=300",
    "train.warmup_env_steps=100",
    "train.batch_size_per_task=8",
    "train.buffer_capacity=1000",
    "train.log_every_updates=50",
    "eval.every_env_steps=100",
    "eval.episodes_per_task=1",
    "env.max_episode_steps=50",
    "agent.critic_hidden=[16]",
    "agent.actor_hidden=[16]",
]


def _run_study(tmp: Path) -> str:
    env = dict(os.environ)
    env.update(
        SWEEPS=str(tmp / "sweeps"),
        RESULTS=str(tmp / "results"),
        SEEDS="0",
        FIRST_STUDY="",
        MT_SAC_ARCHIVE=str(tmp / "mt_sac_archive"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    done = subprocess.run(
        ["bash", str(SCRIPT), "--workers", "2", *TOY],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    return log


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("study")
    first = _run_study(tmp)
    folders = [_report_dir(f, last3) for f in ("", "aggregators") for last3 in (False, True)]
    reports = {f / "report.csv": (tmp / f / "report.csv").read_text() for f in folders}
    shutil.rmtree(tmp / "sweeps")
    second = _run_study(tmp)
    return {"tmp": tmp, "first": first, "second": second, "reports_first": reports}


def _report_dir(folder: str, last3: bool) -> Path:
    """A report's folder relative to the test's: RESULTS[/folder][/report_last3]."""
    return Path("results", folder, "report_last3" if last3 else "")


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as f:
        return {row["method"]: row for row in csv.DictReader(f)}


def _archived_runs(tmp: Path) -> dict[str, Path]:
    runs = {f"efficient/{m}": tmp / "results/runs/efficient" / m / "seed_0" for m in METHODS}
    runs["mt-sac/uniform"] = tmp / "mt_sac_archive/uniform/seed_0"
    return runs


def test_every_run_is_trained_with_its_own_config_and_archived(study):
    assert study["first"].count("finished after") == len(METHODS) + 1
    for label, run in _archived_runs(study["tmp"]).items():
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "finished", label
        assert (run / "scalars.jsonl").stat().st_size > 0, label
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["aggregation"]["method"] == label.split("/")[1]
        assert config["train"]["total_env_steps"] == 300
        # the efficient rows run configs/mt10_cpu_efficient.yaml, MT-SAC the study config
        efficient = label.startswith("efficient/")
        assert (config["agent"]["critic_loss"] == "c51") == efficient, label


@pytest.mark.parametrize("last3", [False, True], ids=["final", "last3"])
def test_reports_read_the_archived_evaluations_against_their_baselines(study, last3):
    tmp = study["tmp"]
    main_dir, aggregators_dir = (
        tmp / _report_dir("", last3),
        tmp / _report_dir("aggregators", last3),
    )
    main = _rows(main_dir / "report.csv")
    aggregators = _rows(aggregators_dir / "report.csv")
    runs = _archived_runs(tmp)
    assert set(main) == set(runs)
    # the aggregators report is made under efficient/: its rows are the methods' folders
    assert set(aggregators) == set(METHODS)
    main_md = (main_dir / "report.md").read_text()
    aggregators_md = (aggregators_dir / "report.md").read_text()
    assert "Baseline: mt-sac/uniform" in main_md
    assert "Baseline: uniform" in aggregators_md
    for label, run in runs.items():
        evaluations = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
        used = evaluations[-3:] if last3 else evaluations[-1:]
        assert len(evaluations) >= 3
        tables = [main[label]]
        if label.startswith("efficient/"):
            method = label.split("/")[1]
            tables.append(aggregators[method])
        for row in tables:
            for task in used[-1]["returns"]:
                expected = np.mean([e["returns"][task] for e in used])
                assert float(row[f"{task}_return_mean"]) == pytest.approx(expected), (label, task)
            expected_success = np.mean([e["mean_success"] for e in used])
            assert float(row["mean_success"]) == pytest.approx(expected_success), label


def test_a_second_call_restores_the_archive_and_trains_nothing(study):
    second = study["second"]
    assert "finished after" not in second
    assert f"{len(METHODS)} to skip" in second and "1 to skip" in second
    for name, text in study["reports_first"].items():
        assert (study["tmp"] / name).read_text() == text, name
