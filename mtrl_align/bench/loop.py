"""Steady-state speed of the real ``mtrl-align train`` loop on MT10, split by part.

Each row drives :class:`mtrl_align.training.Trainer` on all ten MT10 tasks with the
throughput protocol of the issue (shared MT-SAC, 128 samples per task, one update per vector
step, 500-step episodes, ``num_threads`` torch threads): random-action warm-up steps fill the
buffer, then some update steps run unmeasured (allocations, ``torch.compile``), then the
measured steps. The wall time of the measured steps splits into

* ``env``: waiting for the vector env step (with overlap: only what the update did not hide),
* ``act``: the policy forward that chooses the actions,
* ``sample``: replay sampling,
* ``update``: ``MultiTaskSAC.update`` (gradient computation, aggregation, optimiser steps),
* ``rest``: replay writes, logging, bookkeeping.

Rows: network size (2 x 128, 3 x 400) x method (uniform, pcgrad, aligned-mtl) x loop mode:

* ``exact``: the protocol loop (sync env in this process, update after the step) -- the
  reference path;
* ``overlap``: ``env.vector_strategy=async`` with one worker process and
  ``train.overlap_env_steps=true`` (the worker steps while the learner updates);
* ``compiled``: the exact loop with ``train.compile=on`` (uniform only);
* ``sync-free``: the exact loop with ``train.sync_free=on`` (uniform only: skips decided on
  the device, nothing read back inside an update; the other rows set ``train.sync_free=off``).

and the device (``cpu``, plus ``cuda`` where available). Printed ratios, all from this run:
aligned-mtl / uniform update time, overlap / exact steps/s, compiled / exact and sync-free /
exact update time, and,
when the JAX peer is set up (``MTRL_ALIGN_JAX_PEER``, see docs/jax_peer.md), our steps/s over
the peer's, measured right after ours by :mod:`mtrl_align.bench.jax_peer`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch

NETWORKS = {"2x128": [128, 128], "3x400": [400, 400, 400]}
METHODS = ("uniform", "pcgrad", "aligned-mtl")


@dataclass(frozen=True)
class LoopCase:
    """One measured row."""

    network: str
    method: str
    mode: str  # exact | overlap | compiled | sync-free
    device: str = "cpu"


def _overrides(case: LoopCase, total: int, warmup: int, threads: int, run_dir: str) -> list[str]:
    hidden = NETWORKS[case.network]
    items = [
        f"device={case.device}",
        f"num_threads={threads}",
        "env.benchmark=MT10",
        "env.max_episode_steps=500",
        f"agent.actor_hidden={hidden}".replace(" ", ""),
        f"agent.critic_hidden={hidden}".replace(" ", ""),
        f"aggregation.method={case.method}",
        "train.batch_size_per_task=128",
        "train.buffer_capacity=200000",
        f"train.warmup_env_steps={warmup}",
        f"train.total_env_steps={total}",
        "train.log_every_updates=1000000",
        "train.progress_bar=false",
        f"eval.every_env_steps={100 * total}",
        f"run_dir={run_dir}",
    ]
    if case.mode == "overlap":
        items += ["env.vector_strategy=async", "env.num_workers=1", "train.overlap_env_steps=true"]
    if case.mode == "compiled":
        items.append("train.compile=on")
    items.append(f"train.sync_free={'on' if case.mode == 'sync-free' else 'off'}")
    return items


def measure_case(
    case: LoopCase, steps: int, warm_updates: int, warmup: int = 300, threads: int = 2
) -> dict[str, float]:
    """Seconds per part over ``steps`` measured vector steps (after the warm-up and
    ``warm_updates`` unmeasured update steps) and the resulting steps/s."""
    from mtrl_align.config import load_train_config
    from mtrl_align.training.loop import Timings, Trainer

    with tempfile.TemporaryDirectory() as tmp:
        total = warmup + warm_updates + steps
        config = load_train_config(None, _overrides(case, total, warmup, threads, f"{tmp}/run"))
        trainer = Trainer(config)
        try:
            trainer.config.train.total_env_steps = warmup + warm_updates
            start = time.perf_counter()
            trainer._train()
            warm_s = time.perf_counter() - start
            trainer.timings = Timings()
            trainer.config.train.total_env_steps = total
            trainer._train()
            t = trainer.timings
        finally:
            trainer.close()
    update = t.update - t.sample
    rest = t.total - t.env - t.act - t.update
    return {
        "steps": steps,
        "steps_per_s": steps / t.total,
        "env_ms": 1000 * t.env / steps,
        "act_ms": 1000 * t.act / steps,
        "sample_ms": 1000 * t.sample / steps,
        "update_ms": 1000 * update / steps,
        "rest_ms": 1000 * rest / steps,
        "warm_s": warm_s,
    }


def cases(quick: bool, devices: list[str]) -> list[LoopCase]:
    networks = ["2x128"] if quick else list(NETWORKS)
    methods = ("uniform", "aligned-mtl") if quick else METHODS
    rows = []
    for device in devices:
        for network in networks:
            for method in methods:
                rows.append(LoopCase(network, method, "exact", device))
                rows.append(LoopCase(network, method, "overlap", device))
            rows.append(LoopCase(network, "uniform", "compiled", device))
            rows.append(LoopCase(network, "uniform", "sync-free", device))
    return rows


def _steps_for(case: LoopCase, quick: bool) -> tuple[int, int]:
    """(measured steps, unmeasured update steps) for a row."""
    if quick:
        return 20, 5
    return (300, 30) if case.network == "2x128" else (60, 10)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every row, print the table and the ratios, return everything."""
    threads = 2
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results: dict[str, Any] = {"threads": threads, "rows": []}
    print(
        f"MT10, shared MT-SAC, 128 samples/task, 1 update per vector step, 500-step episodes, "
        f"{threads} torch threads; ms per vector step"
    )
    header = (
        f"{'device':<6} {'net':<6} {'method':<12} {'mode':<9} {'steps/s':>8} {'env':>7} "
        f"{'act':>6} {'sample':>7} {'update':>8} {'rest':>6} {'warm s':>7}"
    )
    print(header)
    by_key: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for case in cases(quick, devices):
        steps, warm = _steps_for(case, quick)
        row = measure_case(case, steps, warm, warmup=300 if not quick else 150, threads=threads)
        by_key[(case.device, case.network, case.method, case.mode)] = row
        results["rows"].append({**case.__dict__, **row})
        print(
            f"{case.device:<6} {case.network:<6} {case.method:<12} {case.mode:<9} "
            f"{row['steps_per_s']:>8.1f} {row['env_ms']:>7.2f} {row['act_ms']:>6.2f} "
            f"{row['sample_ms']:>7.2f} {row['update_ms']:>8.2f} {row['rest_ms']:>6.2f} "
            f"{row['warm_s']:>7.1f}",
            flush=True,
        )
    ratios: dict[str, float] = {}
    for (device, network, method, mode), row in by_key.items():
        exact = by_key.get((device, network, method, "exact"))
        uniform = by_key.get((device, network, "uniform", mode))
        if mode == "exact" and method != "uniform" and uniform is not None:
            ratios[f"{device}/{network}/{method}_over_uniform_update"] = (
                row["update_ms"] / uniform["update_ms"]
            )
        if mode == "overlap" and exact is not None:
            ratios[f"{device}/{network}/{method}/overlap_over_exact_steps_per_s"] = (
                row["steps_per_s"] / exact["steps_per_s"]
            )
        if mode == "compiled" and exact is not None:
            ratios[f"{device}/{network}/compiled_over_eager_update"] = (
                row["update_ms"] / exact["update_ms"]
            )
        if mode == "sync-free" and exact is not None:
            ratios[f"{device}/{network}/sync_free_over_exact_update"] = (
                row["update_ms"] / exact["update_ms"]
            )
    peer = _peer(quick, threads)
    results["jax_peer"] = peer
    if isinstance(peer, dict):
        for network in NETWORKS:
            theirs = peer.get(network)
            if not isinstance(theirs, dict):
                continue
            for mode in ("exact", "overlap"):
                ours = by_key.get(("cpu", network, "uniform", mode))
                if ours is not None:
                    ratios[f"cpu/{network}/uniform/{mode}_over_jax_peer_steps_per_s"] = (
                        ours["steps_per_s"] / theirs["steps_per_s"]
                    )
            print(
                f"jax peer {network}: {theirs['steps_per_s']:.1f} steps/s, update "
                f"{theirs['update_ms']:.2f} ms, env {theirs.get('env_ms', float('nan')):.2f} ms"
            )
    else:
        print(f"jax peer: {peer}")
    for key, value in ratios.items():
        print(f"ratio {key}: {value:.2f}")
    results["ratios"] = ratios
    return results


def _peer(quick: bool, threads: int) -> dict[str, Any] | str:
    from mtrl_align.bench import jax_peer

    networks = ("2x128",) if quick else tuple(NETWORKS)
    return jax_peer.measure(networks=networks, steps=100 if quick else 300, threads=threads)
