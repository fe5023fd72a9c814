"""Reports at a given number of env steps, and the ``last3`` metric, against the eval.jsonl
lines read directly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtrl_align.sweep.report import build_report

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT / "docs/results/mt10_cpu_study/runs/shared/uniform"


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]


def _shorten(run_dir: Path, steps: int, state: str) -> None:
    """Make a copied run end at ``steps`` (config, evaluations, status)."""
    kept = [line for line in _lines(run_dir) if line["env_steps"] <= steps]
    (run_dir / "eval.jsonl").write_text("".join(json.dumps(line) + "\n" for line in kept))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["train"]["total_env_steps"] = steps
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    status = {"state": state, "env_steps": steps, "error": None}
    (run_dir / "status.json").write_text(json.dumps(status))


@pytest.fixture
def mixed_runs(tmp_path: Path) -> Path:
    """Seeds 0, 1 at 100k (finished); seed 2 a 50k run; seed 3 stopped at 40k."""
    runs = tmp_path / "runs"
    for seed in range(4):
        shutil.copytree(ARCHIVE / f"seed_{seed}", runs / f"seed_{seed}")
    _shorten(runs / "seed_2", 50_000, "finished")
    _shorten(runs / "seed_3", 40_000, "interrupted")
    return runs


def test_report_at_steps_reads_each_run_at_that_evaluation(mixed_runs, tmp_path):
    report = build_report(
        mixed_runs, tmp_path / "out", with_plots=False, with_stability=False, at_env_steps=50_000
    )
    (row,) = report.rows
    assert row.seeds == [0, 1, 2]  # seed 3 never reached 50k
    expected = [
        next(
            e["mean_success"] for e in _lines(mixed_runs / f"seed_{s}") if e["env_steps"] == 50_000
        )
        for s in (0, 1, 2)
    ]
    assert row.per_seed_mean == pytest.approx(expected)
    assert row.reported_env_steps == [50_000] * 3
    assert report.protocol.env_steps == 50_000
    assert any("seed_3" in line for line in report.excluded)


def test_runs_left_out_say_why(mixed_runs, tmp_path):
    report = build_report(
        mixed_runs, tmp_path / "out", with_plots=False, with_stability=False, at_env_steps=100_000
    )
    (row,) = report.rows
    assert row.seeds == [0, 1]
    notes = {line.split(" (")[0].rsplit("/", 1)[-1]: line for line in report.excluded}
    assert set(notes) == {"seed_2", "seed_3"}
    assert "finished at 50,000 env steps, before 100,000" in notes["seed_2"]
    # seed 3 stopped at 40k unfinished: its state and evaluations, not "finished at"
    assert "finished at" not in notes["seed_3"] and "4 evaluations" in notes["seed_3"]


def test_without_at_steps_runs_of_other_lengths_are_refused(mixed_runs, tmp_path):
    with pytest.raises(ValueError, match="protocol|env steps"):
        build_report(mixed_runs, tmp_path / "out", with_plots=False, with_stability=False)


def test_last3_is_the_mean_of_the_last_three_evaluations(mixed_runs, tmp_path):
    report = build_report(
        mixed_runs,
        tmp_path / "out",
        metric="last3",
        with_plots=False,
        with_stability=False,
        at_env_steps=50_000,
    )
    (row,) = report.rows
    for seed, scores in zip(row.seeds, row.per_seed_scores, strict=True):
        lines = [e for e in _lines(mixed_runs / f"seed_{seed}") if e["env_steps"] <= 50_000][-3:]
        assert [e["env_steps"] for e in lines] == [30_000, 40_000, 50_000]
        table = np.array([[e["success"][t] for t in row.tasks] for e in lines])
        np.testing.assert_allclose(scores, table.mean(axis=0))
