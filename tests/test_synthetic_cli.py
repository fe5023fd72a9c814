"""The ``synthetic`` and ``mt2o`` sub-commands end to end (few steps)."""

from __future__ import annotations

import json

import pytest

from mtrl_align.cli import main


def test_synthetic_command_writes_json_and_plot(tmp_path, capsys):
    out = tmp_path / "run.json"
    plot = tmp_path / "run.png"
    code = main(
        [
            "synthetic",
            "--method",
            "aligned-mtl",
            "--init",
            "0,0",
            "--task-weights",
            "0.3,0.7",
            "--steps",
            "40",
            "--lr",
            "1e-3",
            "--json",
            str(out),
            "--plot",
            str(plot),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["steps"] == 40 and len(data["theta"]) == 2 and len(data["losses"]) == 2
    assert len(data["trajectory"]["theta"]) == len(data["trajectory"]["steps"])
    assert plot.stat().st_size > 10_000
    assert "optimum of 0.3*L1 + 0.7*L2" in capsys.readouterr().out


def test_synthetic_command_runs_all_paper_starts_without_init(tmp_path):
    out = tmp_path / "all.json"
    assert main(["synthetic", "--method", "uniform", "--steps", "5", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 5 and "theta" not in data


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["synthetic", "--init", "1"], "--init"),
        (["synthetic", "--task-weights=-1,2"], "--task-weights"),
        (["synthetic", "--method", "cagard", "--steps", "1"], "unknown aggregator"),
        (["mt2o", "--problem", "bogus"], "unknown MT2O problem"),
        (["mt2o", "--subproblems", "1"], "subproblems"),
        (["mt2o", "--option", "novalue"], "KEY=VALUE"),
    ],
)
def test_bad_input_gives_one_line_error(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_mt2o_command_prints_summary_and_writes_outputs(tmp_path, capsys):
    out, plot = tmp_path / "mt2o.json", tmp_path / "mt2o.png"
    code = main(
        [
            "mt2o",
            "--problem",
            "synthetic",
            "--subproblems",
            "4",
            "--steps",
            "30",
            "--lr",
            "0.3",
            "--json",
            str(out),
            "--plot",
            str(plot),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "baseline final hypervolume" in text and "MT2O" in text
    data = json.loads(out.read_text())
    assert len(data["mt2o"]["hypervolume"]) == len(data["mt2o"]["eval_steps"])
    assert data["target_hypervolume"] == data["baseline"]["hypervolume"][-1]
    assert plot.stat().st_size > 10_000
