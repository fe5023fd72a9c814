"""Check the Aligned-MTL paper's synthetic claim under the paper's protocol and print a table.

Claim (Aligned-MTL, Appendix C / Fig. 6): with task weights (a, 1 - a), Aligned-MTL ends at the
minimizer of a*L1 + (1-a)*L2 from the paper's five starts (all but one extreme case), while
IMTL-G and Nash-MTL end on the Pareto front but not necessarily at that optimum.

Usage:
    python scripts/synthetic_claim.py [--steps 35000] [--lr 1e-3] [--workers 2]
        [--configs aligned-mtl:losses,aligned-mtl:aggregator,imtl-g:losses,nash-mtl:losses]
        [--weights 0.1,0.2,...,0.9] [--dtype float32] [--json PATH]

Each config is METHOD:WEIGHTING (``losses``: the losses are scaled by (a, 1-a) as in the
papers' toy scripts; ``aggregator``: w = (a, 1-a) is passed to the aggregator). Jobs (one per
config and weight) run in ``--workers`` processes with one thread each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from mtrl_align.synthetic.claim import format_verdicts, judge_runs, summarize_verdicts
from mtrl_align.synthetic.problem import PAPER_LR, PAPER_STARTS, PAPER_STEPS
from mtrl_align.synthetic.runner import WEIGHTINGS, problem_grid, run_synthetic

DEFAULT_CONFIGS = "aligned-mtl:losses,aligned-mtl:aggregator,imtl-g:losses,nash-mtl:losses"
DEFAULT_WEIGHTS = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"


def _job(args: tuple[str, str, float, int, float, str]):
    method, weighting, weight, steps, lr, dtype = args
    torch.set_num_threads(1)
    starts, weights = problem_grid(PAPER_STARTS, [weight])
    began = time.perf_counter()
    result = run_synthetic(
        method,
        starts,
        weights,
        steps=steps,
        lr=lr,
        weighting=weighting,
        dtype=getattr(torch, dtype),
        record_every=max(1, steps // 350),
    )
    return result, time.perf_counter() - began


def arrival_step(result, verdict_index: int, optimum_value: float, tol: float) -> int | None:
    """First recorded step from which the weighted loss stays within ``tol`` of the optimum."""
    a = result.task_weights[verdict_index]
    values = result.trajectory_losses[verdict_index] @ (a / a.sum())
    ok = values - optimum_value <= tol
    if not ok[-1]:
        return None
    bad = np.nonzero(~ok)[0]
    first = 0 if bad.size == 0 else bad[-1] + 1
    return int(result.recorded_steps[first])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=PAPER_STEPS)
    parser.add_argument("--lr", type=float, default=PAPER_LR)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS)
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--json", type=Path, default=None, help="write all verdicts here")
    args = parser.parse_args(argv)

    configs = []
    for item in args.configs.split(","):
        method, _, weighting = item.strip().partition(":")
        weighting = weighting or "losses"
        if weighting not in WEIGHTINGS:
            parser.error(f"unknown weighting {weighting!r} in {item!r}; choose from {WEIGHTINGS}")
        configs.append((method, weighting))
    weights = [float(w) for w in args.weights.split(",")]
    jobs = [(m, wt, a, args.steps, args.lr, args.dtype) for m, wt in configs for a in weights]

    began = time.perf_counter()
    print(
        f"{len(jobs)} jobs x {len(PAPER_STARTS)} starts, {args.steps} Adam steps, lr {args.lr}, "
        f"{args.dtype}, {args.workers} worker(s)",
        flush=True,
    )
    verdicts, arrivals = [], []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for result, seconds in pool.map(_job, jobs):  # in job order, as each finishes
            judged = judge_runs(result)
            rows = format_verdicts(judged).splitlines()[2:]
            print("\n".join(rows) + f"   [{seconds:.0f} s]", flush=True)
            verdicts.extend(judged)
            for index, verdict in enumerate(judged):
                weights = np.array([verdict.weight, 1 - verdict.weight])
                optimum_value = float(result.final_losses[index] @ weights) - verdict.value_gap
                arrivals.append(arrival_step(result, index, optimum_value, 1e-3))
    print()
    print(format_verdicts(verdicts))
    print()
    print(summarize_verdicts(verdicts))
    at_opt = [s for v, s in zip(verdicts, arrivals, strict=True) if v.at_optimum and s is not None]
    if at_opt:
        print(
            f"\nsteps until L0 stays within 1e-3 of the optimum (runs at the optimum): "
            f"median {int(np.median(at_opt))}, max {max(at_opt)}"
        )
    print(f"wall time {time.perf_counter() - began:.0f} s")
    if args.json is not None:
        payload = {
            "steps": args.steps,
            "lr": args.lr,
            "dtype": args.dtype,
            "runs": [
                dict(v.to_dict(), arrival_step=s) for v, s in zip(verdicts, arrivals, strict=True)
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
