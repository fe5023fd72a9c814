"""Speed of the JAX peer on this machine: metaworld-algorithms' MTSAC on MT10.

The peer (rainx0r/metaworld-algorithms, JAX/Flax, jit-compiled) is not part of this repo: it
lives in its own checkout with its own Python (see docs/jax_peer.md). This driver writes a small
runner script to a temporary directory at run time; the runner imports THE PEER'S modules,
builds the peer's own MT10 MTSAC configuration (``examples/multi_task/mtsac_mt10.py``: shared
MLPs with one-hot task ids, twin critics, per-task temperatures, 128 samples per task = batch
1280, one update per vector env step, 500-step episodes) with the hidden layers set to the
network size under test, and runs the peer's own training loop
(``OffPolicyAlgorithm.train``) for ``warmstart + warmup + steps`` vector steps, without
evaluation, checkpoints or wandb. ``Run.start`` is not called because it refuses to run
without a GPU/TPU; the runner does what it does with ``checkpoint=False`` (spawn the envs,
initialise the algorithm, seed, train).

Timers wrap the peer's own functions, nothing else changes: the vector env's ``step``
(env), ``MultiTaskReplayBuffer.sample`` (replay), ``MTSAC.sample_action`` (act) and
``MTSAC.update`` (update; the wrapper blocks until the jitted update's outputs are ready,
which the loop would do anyway at the next ``sample_action``). Only the last ``steps`` vector
steps count, after the random-action warm-start and ``warmup`` updates (JIT compilation).

Threads: the peer gets the same budget as ours, ``threads`` (default 2):
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=N``,
``OMP/MKL/OPENBLAS_NUM_THREADS=N``, ``JAX_PLATFORMS=cpu``, and ``taskset -c 0..N-1`` when the
machine has more than N CPUs (on a 2-CPU machine with N = 2 taskset would change nothing).

Use: ``measure()`` (peer path and python from the arguments or from the environment variables
``MTRL_ALIGN_JAX_PEER`` / ``MTRL_ALIGN_JAX_PEER_PYTHON``) or
``python -m mtrl_align.bench.jax_peer --peer PATH --python PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ENV_PEER = "MTRL_ALIGN_JAX_PEER"
ENV_PYTHON = "MTRL_ALIGN_JAX_PEER_PYTHON"
RESULT_TAG = "JAX_PEER_RESULT "
NETWORKS: dict[str, tuple[int, int]] = {"2x128": (2, 128), "3x400": (3, 400)}
RESULT_KEYS = ("steps_per_s", "update_ms", "env_ms")

PEER_RUN_BUILDER = r'''
import pathlib
import sys

from metaworld_algorithms.config.networks import (
    ContinuousActionPolicyConfig,
    QValueFunctionConfig,
)
from metaworld_algorithms.config.nn import VanillaNetworkConfig
from metaworld_algorithms.config.optim import OptimizerConfig
from metaworld_algorithms.config.rl import OffPolicyTrainingConfig
from metaworld_algorithms.envs import MetaworldConfig
from metaworld_algorithms.rl.algorithms import MTSACConfig, get_algorithm_for_config
from metaworld_algorithms.rl.algorithms.mtsac import MTSAC
from metaworld_algorithms.run import Run

num_tasks = 10


def train_run(run, envs):
    """Run.start() minus its accelerator check (checkpoint=False, track=False): initialise the
    algorithm, seed, and call the peer's own OffPolicyAlgorithm.train."""
    import random
    import time

    import numpy as np

    algorithm = get_algorithm_for_config(run.algorithm).initialize(
        run.algorithm, run.env, seed=run.seed
    )
    random.seed(run.seed)
    np.random.seed(run.seed)
    algorithm.train(
        config=run.training_config,
        envs=envs,
        env_config=run.env,
        run_timestamp=str(int(time.time())),
        seed=run.seed,
        track=False,
        checkpoint_manager=None,
        checkpoint_metadata=None,
        buffer_checkpoint=None,
        recording=run._get_recording_config(),
    )


def build_run(spec, run_name, total_vector_steps):
    """examples/multi_task/mtsac_mt10.py with the spec's sizes; no evaluation, no
    checkpoints, no wandb."""

    def net():
        return VanillaNetworkConfig(
            width=spec["width"], depth=spec["depth"], optimizer=OptimizerConfig(max_grad_norm=1.0)
        )

    return Run(
        run_name=run_name,
        seed=spec["seed"],
        data_dir=pathlib.Path(spec["data_dir"]),
        env=MetaworldConfig(
            env_id="MT10", terminate_on_success=False, max_episode_steps=spec["episode_steps"]
        ),
        algorithm=MTSACConfig(
            num_tasks=num_tasks,
            gamma=0.99,
            actor_config=ContinuousActionPolicyConfig(network_config=net()),
            critic_config=QValueFunctionConfig(network_config=net()),
            num_critics=2,
        ),
        training_config=OffPolicyTrainingConfig(
            total_steps=num_tasks * total_vector_steps,
            buffer_size=spec["buffer_size"],
            batch_size=num_tasks * spec["per_task_batch"],
            warmstart_steps=spec["warmstart"],
            evaluation_frequency=0,
        ),
        checkpoint=False,
    )
'''
"""Generated-runner code shared by the speed and the training runner: the peer's imports and
``build_run(spec, run_name, total_vector_steps)``, the peer's MT10 MTSAC ``Run``, and
``train_run(run, envs)``, which trains it with the peer's own loop."""

_RUNNER = r'''
"""Generated by mtrl_align.bench.jax_peer: times the peer's own MTSAC MT10 training loop."""
import json
import pathlib
import random
import sys
import time

spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["peer"])

import jax
import numpy as np

from metaworld_algorithms.rl.buffers import MultiTaskReplayBuffer

exec(spec["builder"])
warmstart, warmup, steps = spec["warmstart"], spec["warmup"], spec["steps"]
run = build_run(spec, "mt10_mtsac_bench", warmstart + warmup + steps + 1)

calls = {"env": [], "update": [], "replay": [], "act": []}


def timed(kind, fn, block=False):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        if block:
            out = jax.block_until_ready(out)
        calls[kind].append((t0, time.perf_counter()))
        return out

    return wrapper


MTSAC.update = timed("update", MTSAC.update, block=True)
MTSAC.sample_action = timed("act", MTSAC.sample_action)
MultiTaskReplayBuffer.sample = timed("replay", MultiTaskReplayBuffer.sample)

# Run.start() minus its accelerator check (checkpoint=False, track=False)
envs = run.env.spawn(seed=run.seed)
envs.step = timed("env", envs.step)
t_train = time.perf_counter()
train_run(run, envs)
t_end = time.perf_counter()
envs.close()

env_calls = calls["env"]
first = warmstart + warmup  # first measured vector step
if len(env_calls) < first + 2:
    raise SystemExit(f"only {len(env_calls)} env steps ran, expected > {first + 1}")
t0, t1 = env_calls[first][0], env_calls[-1][0]
n = len(env_calls) - 1 - first  # whole loop iterations between t0 and t1


def window_ms(kind):
    return 1000 * sum(b - a for a, b in calls[kind] if t0 <= a < t1) / n


update_in = [b - a for a, b in calls["update"] if t0 <= a < t1]
step_ms = 1000 * (t1 - t0) / n
parts = {k: window_ms(k) for k in ("env", "update", "replay", "act")}
result = {
    "steps_per_s": n / (t1 - t0),
    "step_ms": step_ms,
    "update_ms": 1000 * sum(update_in) / len(update_in),
    "env_ms": parts["env"],
    "replay_sample_ms": parts["replay"],
    "act_ms": parts["act"],
    "rest_ms": step_ms - sum(parts.values()),
    "updates_per_step": len(update_in) / n,
    "measured_steps": n,
    "first_update_ms": 1000 * (calls["update"][0][1] - calls["update"][0][0]),
    "train_s": t_end - t_train,
    "jax": jax.__version__,
    "devices": [str(d) for d in jax.devices()],
}
print("JAX_PEER_RESULT " + json.dumps(result), flush=True)
'''


class PeerError(RuntimeError):
    """The peer run failed or printed no result."""


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that give the peer ``threads`` threads and no network."""
    n = str(threads)
    return {
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={n}",
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "JAX_PLATFORMS": "cpu",
        "WANDB_MODE": "disabled",
    }


def taskset_prefix(threads: int) -> list[str]:
    """``taskset -c 0..N-1`` when it would restrict anything and taskset exists, else []."""
    cpus = os.cpu_count() or 1
    if threads >= cpus or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", f"0-{threads - 1}"]


def parse_result(stdout: str) -> dict[str, Any]:
    """The dict from the runner's last ``JAX_PEER_RESULT {json}`` line."""
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_TAG)]
    if not lines:
        raise PeerError("the peer printed no result line")
    try:
        result = json.loads(lines[-1][len(RESULT_TAG) :])
    except json.JSONDecodeError as exc:
        raise PeerError(f"unreadable result line: {exc}") from exc
    missing = [k for k in RESULT_KEYS if not isinstance(result.get(k), (int, float))]
    if missing:
        raise PeerError(f"result line lacks {missing}")
    return result


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_network(
    peer: Path,
    python: str,
    depth: int,
    width: int,
    *,
    steps: int = 500,
    warmup: int = 50,
    warmstart: int = 256,
    per_task_batch: int = 128,
    episode_steps: int = 500,
    buffer_size: int = 1_000_000,
    seed: int = 1,
    threads: int = 2,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """One peer run (fresh process, fresh JIT) for a ``depth`` x ``width`` actor and critic."""
    with tempfile.TemporaryDirectory(prefix="jax_peer_") as tmp:
        runner = Path(tmp) / "peer_runner.py"
        runner.write_text(_RUNNER)
        spec = {
            "builder": PEER_RUN_BUILDER,
            "peer": str(peer),
            "depth": depth,
            "width": width,
            "steps": steps,
            "warmup": warmup,
            "warmstart": warmstart,
            "per_task_batch": per_task_batch,
            "episode_steps": episode_steps,
            "buffer_size": buffer_size,
            "seed": seed,
            "data_dir": str(Path(tmp) / "data"),
        }
        cmd = [*taskset_prefix(threads), python, str(runner), json.dumps(spec)]
        env = {**os.environ, **thread_env(threads)}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(peer), os.environ.get("PYTHONPATH", "")) if p
        )
        # own session, so that a timeout also ends the peer's env worker processes
        proc = subprocess.Popen(
            cmd,
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise PeerError(f"timed out after {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        raise PeerError(f"exit status {proc.returncode}:\n{_tail(stderr or stdout)}")
    try:
        return parse_result(stdout)
    except PeerError as exc:
        raise PeerError(f"{exc}\n{_tail(stderr)}") from None


def peer_commit(peer: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(peer), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def measure(
    peer: str | os.PathLike[str] | None = None,
    python: str | None = None,
    networks: tuple[str, ...] = ("2x128", "3x400"),
    *,
    steps: int = 500,
    warmup: int = 50,
    warmstart: int = 256,
    threads: int = 2,
    timeout_s: float = 900.0,
    buffer_size: int = 1_000_000,
) -> dict[str, Any] | str:
    """Steady-state speed of the peer's MTSAC MT10 loop for each network size.

    Returns ``{"2x128": {...}, "3x400": {...}, "settings": {...}}`` where each network maps to
    the runner's dict (``steps_per_s`` of the whole loop, ``update_ms`` per update,
    ``env_ms`` per vector step, plus ``step_ms``, ``replay_sample_ms``, ``act_ms``,
    ``rest_ms``, ...) or to a ``"failed: ..."`` string; or a ``"not available: <why>"``
    string when the peer is not set up.
    """
    peer = peer if peer is not None else os.environ.get(ENV_PEER)
    if not peer:
        return f"not available: {ENV_PEER} is not set (no peer checkout given)"
    peer_path = Path(peer).expanduser().resolve()
    if not (peer_path / "metaworld_algorithms").is_dir():
        return f"not available: {peer_path} is not a metaworld-algorithms checkout"
    python = python or os.environ.get(ENV_PYTHON)
    if not python:
        venv_python = peer_path.parent / ".venv" / "bin" / "python"
        if not venv_python.exists():
            return f"not available: {ENV_PYTHON} is not set (the peer's python)"
        python = str(venv_python)
    if shutil.which(python) is None and not Path(python).exists():
        return f"not available: peer python {python} not found"
    unknown = [n for n in networks if n not in NETWORKS]
    if unknown:
        raise ValueError(f"unknown network sizes {unknown}; known: {sorted(NETWORKS)}")

    results: dict[str, Any] = {}
    for name in networks:
        depth, width = NETWORKS[name]
        try:
            results[name] = run_network(
                peer_path,
                python,
                depth,
                width,
                steps=steps,
                warmup=warmup,
                warmstart=warmstart,
                threads=threads,
                timeout_s=timeout_s,
                buffer_size=buffer_size,
            )
        except PeerError as exc:
            results[name] = f"failed: {exc}"
    results["settings"] = {
        "peer": str(peer_path),
        "peer_commit": peer_commit(peer_path),
        "python": python,
        "threads": threads,
        "env": thread_env(threads),
        "taskset": " ".join(taskset_prefix(threads)) or None,
        "steps": steps,
        "warmup_updates": warmup,
        "warmstart_steps": warmstart,
        "per_task_batch": 128,
        "episode_steps": 500,
        "buffer_size": buffer_size,
    }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", help=f"peer checkout (default ${ENV_PEER})")
    parser.add_argument("--python", help=f"peer's python (default ${ENV_PYTHON})")
    parser.add_argument("--networks", default="2x128,3x400")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--warmstart", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--buffer-size", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(
        args.peer,
        args.python,
        tuple(n for n in args.networks.split(",") if n),
        steps=args.steps,
        warmup=args.warmup,
        warmstart=args.warmstart,
        threads=args.threads,
        timeout_s=args.timeout,
        buffer_size=args.buffer_size,
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if isinstance(result, str):
        return 2
    return int(any(isinstance(v, str) for v in result.values()))


if __name__ == "__main__":
    sys.exit(main())
