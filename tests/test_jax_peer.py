"""The JAX peer driver without JAX: a fake peer python that prints the runner's result format."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from mtrl_align.bench import jax_peer

FAKE_PYTHON = """\
#!{python}
import json, os, sys, time
runner, spec = sys.argv[1], json.loads(sys.argv[2])
assert os.path.exists(runner), runner
mode = os.environ.get("FAKE_PEER_MODE", "ok")
if mode == "fail":
    print("Traceback: boom", file=sys.stderr)
    sys.exit(3)
if mode == "sleep":
    time.sleep(30)
if mode == "silent":
    sys.exit(0)
print("SPS: 123")
print("JAX_PEER_RESULT " + json.dumps({{"steps_per_s": 1.0, "update_ms": 2.0, "env_ms": 3.0}}))
print("JAX_PEER_RESULT " + json.dumps({{
    "steps_per_s": 40.0 + spec["width"],
    "update_ms": float(spec["depth"]),
    "env_ms": 7.5,
    "steps": spec["steps"],
    "xla_flags": os.environ.get("XLA_FLAGS"),
    "pythonpath": os.environ.get("PYTHONPATH"),
}}))
"""


@pytest.fixture
def fake_peer(tmp_path: Path) -> tuple[Path, Path]:
    peer = tmp_path / "metaworld-algorithms"
    (peer / "metaworld_algorithms").mkdir(parents=True)
    python = tmp_path / "fake_python"
    python.write_text(FAKE_PYTHON.format(python=sys.executable))
    python.chmod(0o755)
    return peer, python


def test_not_available_without_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(jax_peer.ENV_PEER, raising=False)
    result = jax_peer.measure()
    assert isinstance(result, str)
    assert result.startswith("not available:")
    assert jax_peer.ENV_PEER in result


def test_not_available_for_a_non_checkout(tmp_path: Path) -> None:
    result = jax_peer.measure(tmp_path, sys.executable)
    assert isinstance(result, str) and result.startswith("not available:")


def test_not_available_without_python(
    fake_peer: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(jax_peer.ENV_PYTHON, raising=False)
    peer, _ = fake_peer
    result = jax_peer.measure(peer)
    assert isinstance(result, str) and jax_peer.ENV_PYTHON in result
    result = jax_peer.measure(peer, str(peer / "no_such_python"))
    assert isinstance(result, str) and result.startswith("not available:")


def test_parse_result_takes_the_last_tagged_line() -> None:
    out = textwrap.dedent(
        """\
        SPS: 40
        JAX_PEER_RESULT {"steps_per_s": 1, "update_ms": 2, "env_ms": 3}
        global_step=5000
        JAX_PEER_RESULT {"steps_per_s": 48.5, "update_ms": 10.1, "env_ms": 7.4}
        """
    )
    assert jax_peer.parse_result(out) == {"steps_per_s": 48.5, "update_ms": 10.1, "env_ms": 7.4}


@pytest.mark.parametrize(
    "out",
    [
        "SPS: 40\n",
        "JAX_PEER_RESULT {not json\n",
        'JAX_PEER_RESULT {"steps_per_s": 1.0, "env_ms": 3.0}\n',
    ],
)
def test_parse_result_errors(out: str) -> None:
    with pytest.raises(jax_peer.PeerError):
        jax_peer.parse_result(out)


def test_measure_with_a_fake_peer(
    fake_peer: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    peer, python = fake_peer
    monkeypatch.setenv(jax_peer.ENV_PEER, str(peer))
    monkeypatch.setenv(jax_peer.ENV_PYTHON, str(python))
    monkeypatch.delenv("FAKE_PEER_MODE", raising=False)
    result = jax_peer.measure(steps=7, timeout_s=60)
    assert isinstance(result, dict)
    assert set(result) == {"2x128", "3x400", "settings"}
    small, large = result["2x128"], result["3x400"]
    assert small["steps_per_s"] == 168.0 and small["update_ms"] == 2.0
    assert large["steps_per_s"] == 440.0 and large["update_ms"] == 3.0
    assert small["env_ms"] == 7.5 and small["steps"] == 7
    assert "intra_op_parallelism_threads=2" in small["xla_flags"]
    assert str(peer.resolve()) in small["pythonpath"].split(os.pathsep)
    assert result["settings"]["threads"] == 2
    json.dumps(result)  # JSON-able


@pytest.mark.parametrize(
    ("mode", "message"),
    [("fail", "exit status 3"), ("silent", "no result line"), ("sleep", "timed out")],
)
def test_failures_are_reported_per_network(
    fake_peer: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, mode: str, message: str
) -> None:
    peer, python = fake_peer
    monkeypatch.setenv("FAKE_PEER_MODE", mode)
    result = jax_peer.measure(peer, str(python), ("2x128",), timeout_s=2)
    assert isinstance(result, dict)
    assert isinstance(result["2x128"], str)
    assert result["2x128"].startswith("failed:") and message in result["2x128"]


def test_unknown_network_size(fake_peer: tuple[Path, Path]) -> None:
    peer, python = fake_peer
    with pytest.raises(ValueError):
        jax_peer.measure(peer, str(python), ("4x1024",))


def test_cli_exit_status_when_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(jax_peer.ENV_PEER, raising=False)
    assert jax_peer.main([]) == 2
