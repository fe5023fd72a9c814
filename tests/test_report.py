"""``mtrl-align report``: numbers against numpy/scipy, protocol refusal, files, plots.

Run directories are written here in the training contract's format (config.yaml from the real
``TrainConfig``, eval.jsonl, status.json) with random success rates, so every number of the
report can be recomputed independently from those logs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import yaml

from envs.statistics import iqm_interval, mean_difference_interval, probability_of_improvement
from mtrl_align.cli import main as cli_main
from mtrl_align.config import TrainConfig
from mtrl_align.config_io import to_dict
from mtrl_align.sweep.grouping import group_runs
from mtrl_align.sweep.plots import success_curve
from mtrl_align.sweep.protocol import ProtocolMismatchError
from mtrl_align.sweep.report import build_report
from mtrl_align.sweep.runs import load_runs

TASKS = ["reach-v3", "push-v3", "pick-place-v3"]
BOOTSTRAP_SEED = 3  # not the default 0, so a report that ignores its seed fails
REPS = 10_000  # the resamples of every interval in a report (the statistics' default)
EPISODES = 50  # evaluation episodes per task: fine enough success rates that the
# bootstrap intervals move with their seed (with 10 they sit on a coarse lattice)
EVAL_STEPS = [1000, 2000, 3000]


def write_run(
    run_dir: Path,
    method: str,
    seed: int,
    success: np.ndarray,
    state: str = "finished",
    config_changes: dict | None = None,
    returns: np.ndarray | None = None,
    log_returns: bool = True,
) -> Path:
    """A run directory in the training contract's format.

    Args:
        success: success rates [evaluations, tasks] at ``EVAL_STEPS``.
        config_changes: dotted key -> value applied to the default config.
        returns: evaluation returns [evaluations, tasks] (default zeros).
        log_returns: False writes evaluations without returns (older logs, other peers).
    """
    returns = np.zeros_like(success) if returns is None else returns
    config = to_dict(TrainConfig())
    changes = {
        "seed": seed,
        "run_dir": str(run_dir),
        "aggregation.method": method,
        "env.tasks": list(TASKS),
        "env.max_episode_steps": 150,
        "train.total_env_steps": EVAL_STEPS[-1],
        "eval.every_env_steps": 1000,
        "eval.episodes_per_task": EPISODES,
        **(config_changes or {}),
    }
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with open(run_dir / "eval.jsonl", "w") as handle:
        for steps, rates, gains in zip(EVAL_STEPS[: len(success)], success, returns, strict=True):
            entry = {
                "env_steps": steps,
                "total_env_steps": steps * len(TASKS),
                "updates": steps,
                "mean_success": float(np.mean(rates)),
                "success": {t: float(r) for t, r in zip(TASKS, rates, strict=True)},
                "mean_return": float(np.mean(gains)),
                "returns": {t: float(g) for t, g in zip(TASKS, gains, strict=True)},
                "episodes_per_task": EPISODES,
                "wall_time_s": 1.0,
            }
            if not log_returns:
                del entry["mean_return"], entry["returns"]
            handle.write(json.dumps(entry) + "\n")
    status = {"state": state, "env_steps": EVAL_STEPS[len(success) - 1], "error": None}
    (run_dir / "status.json").write_text(json.dumps(status))
    return run_dir


def random_success(rng: np.random.Generator, evaluations: int = 3) -> np.ndarray:
    """Success rates that are multiples of 1/EPISODES, [evaluations, tasks]."""
    return rng.integers(0, EPISODES + 1, size=(evaluations, len(TASKS))) / EPISODES


def write_cagrad_rows(root: Path, rng: np.random.Generator, seeds: dict[float, tuple]) -> None:
    """CAGrad runs with random success, one row per c: ``{c: seeds of that row}``."""
    for c, row_seeds in seeds.items():
        for seed in row_seeds:
            write_run(
                root / f"c{c}" / f"seed_{seed}",
                "cagrad",
                seed,
                random_success(rng),
                config_changes={"aggregation.options": {"c": c}},
            )


@pytest.fixture
def sweep_dir(tmp_path: Path) -> tuple[Path, dict[str, dict[int, np.ndarray]]]:
    rng = np.random.default_rng(7)
    logs: dict[str, dict[int, np.ndarray]] = {}
    for method, seeds in (("aligned-mtl", [0, 1, 2, 3, 4]), ("uniform", [0, 1, 2])):
        logs[method] = {}
        for seed in seeds:
            success = random_success(rng)
            write_run(tmp_path / "sweep" / method / f"seed_{seed}", method, seed, success)
            logs[method][seed] = success
    return tmp_path / "sweep", logs


def _sem(x: np.ndarray) -> np.ndarray:
    return np.std(x, axis=0, ddof=1) / np.sqrt(x.shape[0])


@pytest.mark.parametrize("metric", ["final", "best"])
def test_numbers_match_independent_computation(sweep_dir, tmp_path, metric):
    root, logs = sweep_dir
    report = build_report(
        root, tmp_path / "out", metric=metric, with_plots=False, bootstrap_seed=BOOTSTRAP_SEED
    )
    rows = {row.label: row for row in report.rows}
    assert set(rows) == set(logs)
    with open(report.csv) as handle:
        csv_rows = {r["method"]: r for r in csv.DictReader(handle)}
    for method, per_seed in logs.items():
        # the evaluation each metric reports, picked with numpy: last row, or argmax of the mean
        scores = np.stack(
            [
                s[-1] if metric == "final" else s[np.argmax(s.mean(axis=1))]
                for s in per_seed.values()
            ]
        )  # [seeds, tasks]
        row = rows[method]
        assert row.seeds == sorted(per_seed)
        for t, task in enumerate(TASKS):
            assert row.per_task[task].mean == pytest.approx(scores[:, t].mean())
            assert row.per_task[task].sem == pytest.approx(_sem(scores)[t])
        seed_means = scores.mean(axis=1)
        assert row.mean_success.mean == pytest.approx(seed_means.mean())
        assert row.mean_success.sem == pytest.approx(_sem(seed_means[:, None])[0])
        assert row.iqm == pytest.approx(scipy.stats.trim_mean(scores, 0.25, axis=None))
        # the interval is the stratified IQM bootstrap of these scores (seeds in order, tasks
        # as columns) with the report's seed and resamples
        expected = iqm_interval(scores, confidence=0.95, reps=REPS, seed=BOOTSTRAP_SEED)
        assert row.iqm_ci == pytest.approx(expected, abs=1e-12)
        assert row.iqm_ci[0] < row.iqm < row.iqm_ci[1]
        # the CSV carries the same numbers
        line = csv_rows[method]
        assert int(line["num_seeds"]) == len(per_seed)
        assert float(line["mean_success"]) == pytest.approx(seed_means.mean())
        assert float(line[f"{TASKS[1]}_sem"]) == pytest.approx(_sem(scores)[1])
        assert line["metric"] == metric
        assert int(line["episode_length"]) == 150
        assert int(line["env_steps_per_task"]) == EVAL_STEPS[-1]


def test_markdown_states_protocol_metric_and_numbers(sweep_dir, tmp_path):
    root, logs = sweep_dir
    report = build_report(root, tmp_path / "out", metric="best", with_plots=False)
    text = report.markdown.read_text()
    assert f"MT10 (3 tasks: {', '.join(TASKS)}), reward v2, 150-step episodes" in text
    assert f"{EVAL_STEPS[-1]:,} env steps per task" in text
    assert f"{EPISODES} evaluation episodes per task" in text
    assert "best evaluation over training" in text and "--metric best" in text
    for row in report.rows:
        assert f"| {row.label} | {len(row.seeds)} | {row.mean_success.mean:.3f} ± " in text
        task = TASKS[0]
        assert f"{row.per_task[task].mean:.3f} ± {row.per_task[task].sem:.3f}" in text


def test_different_protocols_are_refused(sweep_dir, tmp_path):
    root, _ = sweep_dir
    rng = np.random.default_rng(0)
    other = root / "uniform" / "seed_9"
    write_run(other, "uniform", 9, random_success(rng), config_changes={"env.reward_version": "v1"})
    with pytest.raises(ProtocolMismatchError, match="reward version differs") as error:
        build_report(root, tmp_path / "out", with_plots=False)
    assert str(other) in str(error.value)
    # the CLI turns it into one line and exit code 2
    assert cli_main(["report", str(root), "--out", str(tmp_path / "out2")]) == 2


def test_other_training_length_and_task_set_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    write_run(tmp_path / "a", "uniform", 0, random_success(rng))
    write_run(
        tmp_path / "b",
        "pcgrad",
        0,
        random_success(rng),
        config_changes={"train.total_env_steps": 5000},
    )
    with pytest.raises(ProtocolMismatchError, match="env steps per task differs"):
        build_report(tmp_path, with_plots=False)


def test_unfinished_runs_are_left_out_and_listed(sweep_dir, tmp_path):
    root, logs = sweep_dir
    rng = np.random.default_rng(3)
    running = write_run(
        root / "uniform" / "seed_5", "uniform", 5, random_success(rng, 2), state="running"
    )
    just_started = write_run(
        root / "uniform" / "seed_6", "uniform", 6, random_success(rng, 1), state="running"
    )
    report = build_report(root, tmp_path / "out", with_plots=False)
    uniform = next(r for r in report.rows if r.label == "uniform")
    assert uniform.seeds == sorted(logs["uniform"])
    # named by their folders under the report's input, not by this machine's absolute path
    names = [str(run.relative_to(root)) for run in (running, just_started)]
    assert sorted(report.excluded) == [
        f"{names[0]} (running or interrupted, 2 evaluations)",
        f"{names[1]} (running or interrupted, 1 evaluation)",
    ]
    markdown = report.markdown.read_text()
    assert all(f"- {name} (" in markdown for name in names) and str(root) not in markdown


def test_same_method_other_settings_get_own_rows(tmp_path):
    write_cagrad_rows(tmp_path, np.random.default_rng(4), {0.4: (0, 1), 0.9: (0, 1)})
    report = build_report(tmp_path, with_plots=False)
    labels = sorted(row.label for row in report.rows)
    assert labels == ["cagrad (aggregation.options.c=0.4)", "cagrad (aggregation.options.c=0.9)"]
    assert all(row.seeds == [0, 1] for row in report.rows)


def test_duplicate_seed_is_refused(tmp_path):
    rng = np.random.default_rng(5)
    write_run(tmp_path / "one", "uniform", 3, random_success(rng))
    write_run(tmp_path / "two", "uniform", 3, random_success(rng))
    with pytest.raises(ValueError, match="same config and seed 3"):
        build_report(tmp_path, with_plots=False)


def test_eval_log_damage(tmp_path):
    rng = np.random.default_rng(6)
    run = write_run(tmp_path / "r", "uniform", 0, random_success(rng))
    log = run / "eval.jsonl"
    lines = log.read_text().splitlines()
    # a run killed while writing leaves a truncated last line: ignored
    log.write_text("\n".join(lines) + '\n{"env_steps": 40')
    (record,) = load_runs(tmp_path)
    assert [e.env_steps for e in record.evaluations] == EVAL_STEPS
    # a broken line in the middle is an error naming the file and line
    log.write_text("\n".join([lines[0], "{oops", *lines[1:]]))
    with pytest.raises(ValueError, match=r"eval\.jsonl:2 is not valid JSON"):
        load_runs(tmp_path)


def test_no_finished_runs_and_missing_folder(tmp_path):
    rng = np.random.default_rng(8)
    write_run(tmp_path / "r", "uniform", 0, random_success(rng, 1), state="failed")
    with pytest.raises(ValueError, match="no finished runs"):
        build_report(tmp_path, with_plots=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_report(tmp_path / "nowhere")


def test_curves_and_plot_files(sweep_dir, tmp_path):
    root, logs = sweep_dir
    report = build_report(root, tmp_path / "out")
    groups = {g.label: g for g in group_runs(load_runs(root))}
    steps, mean, sem = success_curve(groups["aligned-mtl"])
    curves = np.stack([s.mean(axis=1) for s in logs["aligned-mtl"].values()])  # [seeds, evals]
    np.testing.assert_allclose(steps, EVAL_STEPS)
    np.testing.assert_allclose(mean, curves.mean(axis=0))
    np.testing.assert_allclose(sem, _sem(curves))
    assert [p.name for p in report.plots] == ["success_curves.png", "success_intervals.png"]
    for path in report.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_report_cli_prints_table(sweep_dir, tmp_path, capsys):
    root, _ = sweep_dir
    out = tmp_path / "cli"
    assert cli_main(["report", str(root), "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "| Method | Seeds | Mean success (± SEM) | IQM [95% CI] |" in printed
    assert (out / "report.md").is_file() and (out / "report.csv").is_file()


def test_comparison_with_the_baseline(sweep_dir, tmp_path):
    from rliable import metrics

    root, logs = sweep_dir
    report = build_report(
        root,
        tmp_path / "out",
        with_plots=False,
        with_stability=False,
        bootstrap_seed=BOOTSTRAP_SEED,
    )
    (comparison,) = report.comparisons  # default baseline: the single uniform row
    assert comparison.label == "aligned-mtl" and comparison.seeds == 5
    final = {m: np.stack([s[-1] for s in per_seed.values()]) for m, per_seed in logs.items()}
    ours, base = final["aligned-mtl"], final["uniform"]
    assert comparison.difference == pytest.approx(ours.mean() - base.mean())  # equal seed weights
    assert comparison.improvement == pytest.approx(metrics.probability_of_improvement(ours, base))
    # the intervals are the statistics functions' with the report's seed and resamples
    _, expected = mean_difference_interval(
        ours.mean(axis=1), base.mean(axis=1), confidence=0.95, reps=REPS, seed=BOOTSTRAP_SEED
    )
    assert comparison.difference_ci == pytest.approx(expected, abs=1e-12)
    _, expected = probability_of_improvement(
        ours, base, confidence=0.95, reps=REPS, seed=BOOTSTRAP_SEED
    )
    assert comparison.improvement_ci == pytest.approx(expected, abs=1e-12)
    low, high = comparison.difference_ci
    assert low < comparison.difference < high
    expected = "inside the interval" if low <= 0 <= high else ("higher" if low > 0 else "lower")
    assert comparison.reading == expected
    text = report.markdown.read_text()
    assert "## Differences from uniform" in text
    assert f"| aligned-mtl | 5 | {comparison.difference:+.3f} [{low:+.3f}, {high:+.3f}] |" in text
    # the same row, named by its full label, gives the same numbers
    again = build_report(
        root,
        tmp_path / "again",
        with_plots=False,
        with_stability=False,
        baseline="uniform",
        bootstrap_seed=BOOTSTRAP_SEED,
    )
    assert again.comparisons == report.comparisons
    none = build_report(root, tmp_path / "none", with_plots=False, with_comparison=False)
    assert none.comparisons == [] and "## Differences" not in none.markdown.read_text()


def test_baseline_choice_and_too_few_seeds(tmp_path):
    write_cagrad_rows(tmp_path, np.random.default_rng(8), {0.4: (0, 1, 2), 0.9: (0, 1)})
    kwargs = {"with_plots": False, "with_stability": False}
    # no uniform row: the default leaves a note, a named baseline must exist
    text = build_report(tmp_path, tmp_path / "a", **kwargs).markdown.read_text()
    assert "No comparison: baseline 'uniform' matches no row" in text
    with pytest.raises(ValueError, match=r"baseline 'uniform' matches no row; rows: 'cagrad \("):
        build_report(tmp_path, tmp_path / "b", baseline="uniform", **kwargs)
    with pytest.raises(ValueError, match="baseline 'cagrad' matches 2 rows"):
        build_report(tmp_path, tmp_path / "c", baseline="cagrad", **kwargs)
    report = build_report(
        tmp_path, tmp_path / "d", baseline="cagrad (aggregation.options.c=0.4)", **kwargs
    )
    (comparison,) = report.comparisons
    assert comparison.label == "cagrad (aggregation.options.c=0.9)"
    assert comparison.difference_ci is None and comparison.improvement is None
    assert comparison.reading.startswith("n/a (needs >= 3 seeds")


def test_report_cli_baseline(sweep_dir, tmp_path, capsys):
    root, _ = sweep_dir
    args = ["report", str(root), "--out", str(tmp_path / "cli"), "--no-plots", "--no-stability"]
    assert cli_main([*args, "--baseline", "aligned-mtl"]) == 0
    assert "## Differences from aligned-mtl" in capsys.readouterr().out
    assert cli_main([*args, "--baseline", "nope"]) != 0
    assert "baseline 'nope' matches no row" in capsys.readouterr().err


def test_baseline_named_by_settings_its_label_leaves_out(tmp_path):
    """``uniform (agent.variant=shared)`` names the shared row before any multi-head row exists,
    and never a row of another variant that happens to be labelled ``uniform``."""
    rng = np.random.default_rng(9)
    kwargs = {"with_plots": False, "with_stability": False}
    for seed in (0, 1, 2):
        write_run(tmp_path / "shared" / f"u{seed}", "uniform", seed, random_success(rng))
        write_run(tmp_path / "shared" / f"p{seed}", "pcgrad", seed, random_success(rng))
    shared = "uniform (agent.variant=shared)"
    report = build_report(tmp_path / "shared", tmp_path / "r1", baseline=shared, **kwargs)
    assert [r.label for r in report.rows] == ["pcgrad", "uniform"]
    (comparison,) = report.comparisons
    assert comparison.label == "pcgrad"
    with pytest.raises(ValueError, match=r"'uniform \(agent.variant=multi-head\)' matches no row"):
        build_report(
            tmp_path / "shared",
            tmp_path / "r2",
            baseline="uniform (agent.variant=multi-head)",
            **kwargs,
        )
    # only multi-head uniform runs: their row is labelled 'uniform' too, and is not 'shared'
    for seed in (0, 1, 2):
        write_run(
            tmp_path / "mh" / f"u{seed}",
            "uniform",
            seed,
            random_success(rng),
            config_changes={"agent.variant": "multi-head"},
        )
    with pytest.raises(ValueError, match=r"'uniform \(agent.variant=shared\)' matches no row"):
        build_report(tmp_path / "mh", tmp_path / "r3", baseline=shared, **kwargs)
    # both variants: the labels name the variant and the exact label is taken
    both = build_report(tmp_path, tmp_path / "r4", baseline=shared, **kwargs)
    assert shared in [r.label for r in both.rows]
    assert {c.label for c in both.comparisons} == {"pcgrad", "uniform (agent.variant=multi-head)"}


def test_last3_metric_is_the_mean_of_the_last_three_evaluations(tmp_path):
    rng = np.random.default_rng(11)
    success = {seed: rng.uniform(size=(3, len(TASKS))) for seed in (0, 1, 2)}
    for seed, rates in success.items():
        write_run(tmp_path / "runs" / "uniform" / f"seed_{seed}", "uniform", seed, rates)
    report = build_report(tmp_path / "runs", tmp_path / "out", metric="last3", with_plots=False)
    (row,) = report.rows
    per_seed = np.stack([success[s].mean(0) for s in (0, 1, 2)])  # [seeds, tasks]
    np.testing.assert_allclose(row.per_seed_scores, per_seed)
    for t, task in enumerate(TASKS):
        assert row.per_task[task].mean == pytest.approx(per_seed[:, t].mean())
    assert row.mean_success.mean == pytest.approx(per_seed.mean())
    assert row.reported_env_steps == [EVAL_STEPS[-1]] * 3
    assert "mean of the last three evaluations" in report.markdown.read_text()


@pytest.mark.parametrize("metric", ["final", "best", "last3"])
def test_per_task_returns_come_from_the_reported_evaluations(tmp_path, metric):
    rng = np.random.default_rng(11)
    logs = {}
    for seed in range(3):
        success, returns = random_success(rng), rng.uniform(0, 1500, size=(3, len(TASKS)))
        write_run(tmp_path / "sweep" / f"seed_{seed}", "pcgrad", seed, success, returns=returns)
        logs[seed] = (success, returns)
    report = build_report(tmp_path / "sweep", tmp_path / "out", metric=metric, with_plots=False)
    (row,) = report.rows
    if metric == "final":
        picked = np.stack([r[-1] for _, r in logs.values()])
    elif metric == "best":
        picked = np.stack([r[np.argmax(s.mean(axis=1))] for s, r in logs.values()])
    else:
        picked = np.stack([r.mean(axis=0) for _, r in logs.values()])  # 3 evaluations
    for t, task in enumerate(TASKS):
        assert row.per_task_return[task].mean == pytest.approx(picked[:, t].mean())
        assert row.per_task_return[task].sem == pytest.approx(_sem(picked)[t])
    text = report.markdown.read_text()
    assert "## Per-task return (mean ± SEM over seeds)" in text
    assert f"{picked[:, 0].mean():.1f} ± {_sem(picked)[0]:.1f}" in text
    with open(report.csv) as handle:
        (line,) = csv.DictReader(handle)
    assert float(line[f"{TASKS[2]}_return_mean"]) == pytest.approx(picked[:, 2].mean())


def test_runs_without_returns_get_no_return_table(tmp_path):
    rng = np.random.default_rng(12)
    for seed in range(2):
        write_run(tmp_path / "sweep" / f"seed_{seed}", "pcgrad", seed, random_success(rng),
                  log_returns=seed == 0)  # fmt: skip
    report = build_report(tmp_path / "sweep", tmp_path / "out", with_plots=False)
    assert report.rows[0].per_task_return == {}
    assert "Per-task return" not in report.markdown.read_text()


def test_folder_labels_name_the_seed_folders_and_keep_the_settings(tmp_path, capsys):
    """``--labels folders``: each row is the folder of its seed directories under the root; the
    settings that set it apart from its method's other rows go to the "Runs" list; the same
    numbers as the settings labels, row for row."""
    rng = np.random.default_rng(11)
    kwargs = {"with_plots": False, "with_stability": False}
    rows = [
        ("big", "uniform", {"agent.critic_hidden": [256, 256]}),
        ("small", "uniform", {"agent.critic_hidden": [64, 64]}),
        ("small", "pcgrad", None),
    ]
    for seed in (0, 1, 2):
        for folder, method, changes in rows:
            run_dir = tmp_path / "runs" / folder / method / f"seed_{seed}"
            write_run(run_dir, method, seed, random_success(rng), config_changes=changes)
    root = tmp_path / "runs"
    by_settings = build_report(root, tmp_path / "s", **kwargs)
    by_folder = build_report(
        root, tmp_path / "f", labels="folders", baseline="small/uniform", **kwargs
    )
    assert [r.label for r in by_folder.rows] == ["big/uniform", "small/pcgrad", "small/uniform"]
    settings_of = {
        "big/uniform": "uniform (agent.critic_hidden=[256,256])",
        "small/uniform": "uniform (agent.critic_hidden=[64,64])",
        "small/pcgrad": "pcgrad",
    }
    numbers = {r.label: (r.seeds, r.mean_success) for r in by_settings.rows}
    for row in by_folder.rows:
        assert (row.seeds, row.mean_success) == numbers[settings_of[row.label]]
    assert {r.label: r.detail for r in by_folder.rows} == {
        "big/uniform": "agent.critic_hidden=[256,256]",
        "small/uniform": "agent.critic_hidden=[64,64]",
        "small/pcgrad": "",
    }
    text = by_folder.markdown.read_text()
    assert "## Differences from small/uniform" in text
    assert "- big/uniform: seeds 0, 1, 2; evaluations at" in text
    assert "; uniform with agent.critic_hidden=[256,256]" in text
    assert {c.label for c in by_folder.comparisons} == {"big/uniform", "small/pcgrad"}
    # the command line takes the same choice
    args = ["report", str(root), "--out", str(tmp_path / "cli"), "--no-plots", "--no-stability"]
    assert cli_main([*args, "--labels", "folders", "--baseline", "small/uniform"]) == 0
    assert "| small/pcgrad | 3 |" in capsys.readouterr().out


def test_folder_labels_keep_rows_that_share_a_folder_apart(tmp_path):
    rng = np.random.default_rng(12)
    for seed in (0, 1):
        for name, hidden in (("a", [64, 64]), ("b", [256, 256])):
            write_run(
                tmp_path / "mixed" / f"{name}{seed}",
                "uniform",
                seed,
                random_success(rng),
                config_changes={"agent.critic_hidden": hidden},
            )
    groups = group_runs(load_runs(tmp_path), labels="folders", root=tmp_path)
    assert sorted(g.label for g in groups) == sorted(
        [
            "mixed [uniform (agent.critic_hidden=[64,64])]",
            "mixed [uniform (agent.critic_hidden=[256,256])]",
        ]
    )


def test_folder_labels_bad_input(tmp_path):
    write_run(tmp_path / "in" / "seed_0", "uniform", 0, random_success(np.random.default_rng(13)))
    runs = load_runs(tmp_path)
    with pytest.raises(
        ValueError, match="unknown row labels 'paths'; choose from: settings, folders"
    ):
        group_runs(runs, labels="paths", root=tmp_path)
    with pytest.raises(ValueError, match="need the report root"):
        group_runs(runs, labels="folders")
    with pytest.raises(ValueError, match="is not under the report root"):
        group_runs(runs, labels="folders", root=tmp_path / "elsewhere")
