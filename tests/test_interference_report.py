"""``mtrl-align report``'s task-interference section against numpy: per-run means of the logged
cosine matrices over training (and its last 20%), then the mean over seeds."""

from __future__ import annotations

import numpy as np
from test_report import TASKS, write_run

from mtrl_align.interference import matrix_from_scalars, pair_scalars
from mtrl_align.sweep.archive import is_archived_key, write_scalars
from mtrl_align.sweep.report import build_report

STEPS = [500, 1500, 2500, 3000]  # total 3000 env steps: the last 20% starts at 2400


def random_cosines(rng: np.random.Generator) -> np.ndarray:
    upper = np.triu(rng.uniform(-1, 1, (len(TASKS), len(TASKS))), 1)
    return upper + upper.T + np.eye(len(TASKS))


def test_matrix_round_trip_and_archive_keys():
    matrix = random_cosines(np.random.default_rng(0))
    scalars = pair_scalars("critic", matrix)
    assert set(scalars) == {
        "interference/critic/0_1",
        "interference/critic/0_2",
        "interference/critic/1_2",
    }
    assert all(is_archived_key(key) for key in scalars)
    np.testing.assert_allclose(matrix_from_scalars(scalars, "critic", len(TASKS)), matrix)
    assert matrix_from_scalars(scalars, "actor", len(TASKS)) is None


def write_pcgrad_runs(root, rng: np.random.Generator, steps: list[int]) -> dict[int, np.ndarray]:
    """Seeds 0 and 1 of pcgrad under ``root``, each with random critic cosine matrices logged
    at ``steps`` (scalars.jsonl); returns them per seed, [steps, T, T]."""
    success = rng.uniform(size=(3, len(TASKS)))
    logged = {}
    for seed in (0, 1):
        run_dir = write_run(root / "pcgrad" / f"seed_{seed}", "pcgrad", seed, success)
        matrices = [random_cosines(rng) for _ in steps]
        rows = [
            {"step": step, **pair_scalars("critic", m)}
            for step, m in zip(steps, matrices, strict=True)
        ]
        rows[0]["aggregation/critic/kappa"] = 3.0  # other keys are ignored
        write_scalars(run_dir / "scalars.jsonl", rows)
        logged[seed] = np.stack(matrices)
    return logged


def interference_cells(report) -> list[str]:
    """The cells of the pcgrad row of the report's task-interference table."""
    text = report.markdown.read_text()
    section = text[text.index("## Task interference") :]
    row = next(line for line in section.splitlines() if line.startswith("| pcgrad"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_interference_section_averages_over_training_then_seeds(tmp_path):
    logged = write_pcgrad_runs(tmp_path / "runs", np.random.default_rng(3), STEPS)
    report = build_report(tmp_path / "runs", tmp_path / "out", with_comparison=False)
    whole = np.mean([logged[s].mean(0) for s in (0, 1)], axis=0)
    last = np.mean([logged[s][2:].mean(0) for s in (0, 1)], axis=0)
    i, j = np.triu_indices(len(TASKS), 1)
    cells = interference_cells(report)
    assert cells[1] == "2"
    assert float(cells[2]) == round(float(whole[i, j].mean()), 3)
    assert float(cells[3]) == round(float(last[i, j].mean()), 3)
    k = int(np.argmin(whole[i, j]))
    assert cells[4] == f"{TASKS[i[k]]} / {TASKS[j[k]]} ({whole[i, j][k]:.2f})"
    assert cells[5:] == ["n/a", "n/a", "n/a"]  # no actor matrices logged
    assert (tmp_path / "out" / "interference.png").is_file()
    assert "interference.png" in [p.name for p in report.plots]


def test_report_at_steps_reads_the_scalars_up_to_those_steps(tmp_path):
    """``at_env_steps=2000`` of 3000-step runs: the interference means take only the matrices
    logged at or before 2000 steps (the last 20% is then 1600-2000)."""
    steps = [500, 1500, 1900, 2500, 3000]
    logged = write_pcgrad_runs(tmp_path / "runs", np.random.default_rng(4), steps)
    report = build_report(
        tmp_path / "runs", tmp_path / "out", with_comparison=False, at_env_steps=2000
    )
    whole = np.mean([logged[s][:3].mean(0) for s in (0, 1)], axis=0)
    last = np.mean([logged[s][2:3].mean(0) for s in (0, 1)], axis=0)
    i, j = np.triu_indices(len(TASKS), 1)
    cells = interference_cells(report)
    assert float(cells[2]) == round(float(whole[i, j].mean()), 3)
    assert float(cells[3]) == round(float(last[i, j].mean()), 3)
