"""Show that multi-task SAC learns: train on three easy MT10 tasks on the CPU and print each
task's success rate.

Usage:
    python scripts/learning_check.py [--methods uniform,aligned-mtl] [--minutes 60]
        [--chunk-steps 3000] [--target 0.8] [--out runs/learning_check] [key=value ...]

For each method the run trains in chunks of ``--chunk-steps`` env steps per task (each chunk
ends with an evaluation of ``eval.episodes_per_task`` episodes per task, then the run is
extended with ``--resume``) until the mean success reaches ``--target`` or ``--minutes`` of
wall time are spent. Config: configs/mt10_learning_check.yaml (overridable with key=value).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# a mean of per-task success fractions carries float rounding: 24 of 30 successful episodes
# come out as (0.8 + 1.0 + 0.6) / 3 = 0.7999999999999999, which must count as 0.8
TARGET_TOLERANCE = 1e-9


def reaches(mean_success: float, target: float) -> bool:
    """``mean_success >= target`` up to float rounding."""
    return mean_success >= target - TARGET_TOLERANCE


def check_method(method: str, args: argparse.Namespace) -> dict:
    from mtrl_align.config import load_train_config
    from mtrl_align.training import RunFiles, train

    run_dir = args.out / f"{method}_s{args.seed}"
    config = load_train_config(
        args.config,
        [
            f"aggregation.method={method}",
            f"seed={args.seed}",
            f"run_dir={run_dir}",
            f"train.total_env_steps={args.chunk_steps}",
            f"eval.every_env_steps={args.chunk_steps}",
            *args.overrides,
        ],
    )
    start = time.perf_counter()
    resume = RunFiles(run_dir).latest.is_file()
    history = []
    while True:
        if resume:
            done = RunFiles(run_dir).read_status() or {}
            steps = max(int(done.get("env_steps", 0)) + args.chunk_steps, args.chunk_steps)
            config = dataclasses.replace(
                config, train=dataclasses.replace(config.train, total_env_steps=steps)
            )
            train(config, resume_dir=run_dir)
        else:
            train(config)
            resume = True
        last = RunFiles(run_dir).read_evaluations()[-1]
        minutes = (time.perf_counter() - start) / 60
        history.append((last["env_steps"], minutes, last["mean_success"]))
        print(
            f"[{method}] {last['env_steps']} steps/task, {minutes:.1f} min: mean success "
            f"{last['mean_success']:.2f} "
            + " ".join(f"{k}={v:.2f}" for k, v in last["success"].items()),
            flush=True,
        )
        if reaches(last["mean_success"], args.target) or minutes >= args.minutes:
            break
    return {
        "method": method,
        "env_steps": last["env_steps"],
        "minutes": minutes,
        "success": last["success"],
        "mean_success": last["mean_success"],
        "reached_target": reaches(last["mean_success"], args.target),
        "history": history,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="uniform,aligned-mtl")
    parser.add_argument(
        "--config", type=Path, default=ROOT / "configs" / "mt10_learning_check.yaml"
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-time budget per method")
    parser.add_argument(
        "--chunk-steps",
        type=int,
        default=3000,
        help="env steps per task per chunk (a multiple of the episode length resumes exactly)",
    )
    parser.add_argument("--target", type=float, default=0.8, help="stop at this mean success")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/learning_check"))
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args(argv)
    results = [check_method(m.strip(), args) for m in args.methods.split(",") if m.strip()]
    tasks = list(results[0]["success"])
    width = max(len(t) for t in tasks)
    print()
    print(
        f"{'method':<14} {'steps/task':>10} {'minutes':>8}  "
        + "  ".join(f"{t:>{width}}" for t in tasks)
        + "    mean"
    )
    for r in results:
        cells = "  ".join(f"{r['success'][t]:>{width}.2f}" for t in tasks)
        flag = "" if r["reached_target"] else f"  (below {args.target})"
        print(
            f"{r['method']:<14} {r['env_steps']:>10} {r['minutes']:>8.1f}  {cells}  "
            f"{r['mean_success']:6.2f}{flag}"
        )
    return 0 if all(r["reached_target"] for r in results) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
