"""The peer training driver without JAX: a fake peer python that writes evaluations the way
the generated runner does; the run directory must read as a run next to ours in a report."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from mtrl_align.bench import jax_peer_training as peer_training
from mtrl_align.sweep.report import build_report
from mtrl_align.sweep.runs import load_run
from mtrl_align.sweep.state import RunState

ROOT = Path(__file__).resolve().parents[1]
OUR_RUN = ROOT / "docs/results/mt10_cpu_study/runs/shared/uniform/seed_0"

FAKE_PYTHON = """\
#!{python}
import json, os, sys
runner, spec = sys.argv[1], json.loads(sys.argv[2])
assert os.path.exists(runner), runner
mode = os.environ.get("FAKE_PEER_MODE", "ok")
if mode == "fail":
    print("Traceback: boom")
    sys.exit(3)
tasks = json.loads(os.environ["FAKE_PEER_TASKS"])
stop = spec["steps_per_task"] // 2 if mode == "short" else spec["steps_per_task"]
for at in range(spec["eval_every"], stop + 1, spec["eval_every"]):
    rate = (spec["seed"] + 1) * at / (10 * spec["steps_per_task"])
    line = {{"env_steps": at, "total_env_steps": 10 * at, "updates": at,
            "mean_success": rate, "success": {{t: rate for t in tasks}},
            "mean_return": 1.0, "returns": {{t: 1.0 for t in tasks}},
            "episodes_per_task": spec["eval_episodes"], "wall_time_s": 1.0}}
    with open(spec["eval_file"], "a") as f:
        f.write(json.dumps(line) + "\\n")
print("threads", os.environ.get("OMP_NUM_THREADS"))
status_file = os.path.join(os.path.dirname(spec["eval_file"]), "status.json")
print("status while training:", json.load(open(status_file))["state"])
versions = {{name: "9.9." + name for name in spec["packages"]}}
print("PEER_DONE " + json.dumps({{"env_steps": stop, "versions": versions}}))
"""


@pytest.fixture
def fake_peer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    peer = tmp_path / "metaworld-algorithms"
    (peer / "metaworld_algorithms").mkdir(parents=True)
    python = tmp_path / "fake_python"
    python.write_text(FAKE_PYTHON.format(python=sys.executable))
    python.chmod(0o755)
    tasks = list(json.loads((OUR_RUN / "eval.jsonl").read_text().splitlines()[0])["success"])
    monkeypatch.setenv("FAKE_PEER_TASKS", json.dumps(tasks))
    return peer, python


def test_a_finished_peer_run_reads_as_a_run_and_is_skipped_after(fake_peer, tmp_path):
    peer, python = fake_peer
    budget = peer_training.PeerBudget(steps_per_task=100_000, eval_every=10_000, eval_episodes=20)
    run_dir = tmp_path / "runs" / "reference" / "seed_1"
    assert peer_training.train_reference(peer, str(python), run_dir, 1, budget) == "finished"
    run = load_run(run_dir)
    assert run.state is RunState.FINISHED
    assert run.method == peer_training.METHOD_LABEL and run.seed == 1
    assert [e.env_steps for e in run.evaluations] == list(range(10_000, 100_001, 10_000))
    log = (run_dir / "peer.log").read_text()
    assert "threads 1" in log  # one thread, as our study
    assert "status while training: running" in log  # as our runs say while they train
    # the peer venv's package versions, as its runner reported them, are in config.yaml
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["reference"]["versions"] == {
        name: "9.9." + name for name in peer_training.PEER_PACKAGES
    }
    assert peer_training.train_reference(peer, str(python), run_dir, 1, budget) == "skipped"
    other = peer_training.PeerBudget(steps_per_task=50_000)
    with pytest.raises(peer_training.PeerTrainingError, match="another config"):
        peer_training.train_reference(peer, str(python), run_dir, 1, other)


def test_report_puts_the_peer_next_to_our_runs(fake_peer, tmp_path):
    peer, python = fake_peer
    runs = tmp_path / "runs"
    shutil.copytree(OUR_RUN, runs / "ours" / "seed_0")
    budget = peer_training.PeerBudget()
    for seed in (0, 1):
        peer_training.train_reference(
            peer, str(python), runs / "ref" / f"seed_{seed}", seed, budget
        )
    report = build_report(runs, tmp_path / "report", with_plots=False, with_stability=False)
    labels = {row.label: row for row in report.rows}
    assert set(labels) == {"uniform", peer_training.METHOD_LABEL}
    reference = labels[peer_training.METHOD_LABEL]
    # the fake's final success is (seed + 1) / 10 in every task
    assert reference.per_seed_mean == pytest.approx([0.1, 0.2])
    ours = json.loads((OUR_RUN / "eval.jsonl").read_text().splitlines()[-1])["mean_success"]
    assert labels["uniform"].per_seed_mean == pytest.approx([ours])


@pytest.mark.parametrize("mode", ["fail", "short"])
def test_failed_or_short_peer_runs_are_marked_failed(fake_peer, tmp_path, monkeypatch, mode):
    peer, python = fake_peer
    monkeypatch.setenv("FAKE_PEER_MODE", mode)
    run_dir = tmp_path / "seed_0"
    with pytest.raises(peer_training.PeerTrainingError, match="exit status"):
        peer_training.train_reference(peer, str(python), run_dir, 0, peer_training.PeerBudget())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and status["error"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["train"]["total_env_steps"] == 100_000


def test_budget_and_seeds_are_checked():
    with pytest.raises(ValueError, match="multiple of eval_every"):
        peer_training.PeerBudget(steps_per_task=15_000, eval_every=10_000)
    with pytest.raises(ValueError, match="width"):
        peer_training.PeerBudget(width=0)
    assert peer_training.parse_seeds("0:3,7") == [0, 1, 2, 7]  # the sweep's seed syntax
