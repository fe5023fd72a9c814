"""``mtrl-align synthetic`` (the two-task benchmark) and ``mtrl-align mt2o`` (MT2O vs baseline)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mtrl_align.device import DEVICE_CHOICES

SYNTHETIC_HELP = """Adam on the aggregated gradient of the synthetic two-task benchmark
(CAGrad / Nash-MTL / Aligned-MTL). Without --init all five starts of the paper are run."""

MT2O_HELP = """MT2O: N scalarized subproblems optimized together with decaying parameter
transfer between neighbours, against the same subproblems without transfer."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synthetic`` and ``mt2o`` sub-commands."""
    syn = subparsers.add_parser(
        "synthetic", help="synthetic two-task benchmark", description=SYNTHETIC_HELP
    )
    syn.add_argument("--method", default="aligned-mtl", help="aggregator (default aligned-mtl)")
    syn.add_argument(
        "--init", default=None, metavar="X,Y", help="start point; default: the paper's five starts"
    )
    syn.add_argument(
        "--task-weights",
        default="0.5,0.5",
        metavar="A,B",
        help="task weights (A, B); the target is the minimizer of A*L1 + B*L2",
    )
    syn.add_argument("--steps", type=int, default=35_000, help="Adam steps (paper: 35000)")
    syn.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (paper: 1e-3)")
    syn.add_argument(
        "--weighting",
        choices=("losses", "aggregator"),
        default="losses",
        help="how task weights enter: scale the losses (papers' scripts, default) "
        "or pass w to the aggregator",
    )
    syn.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")
    syn.add_argument(
        "--seed", type=int, default=0, help="seeds randomised aggregators (pcgrad, rlw, ...)"
    )
    syn.add_argument("--json", type=Path, default=None, help="write final points + trajectories")
    syn.add_argument("--plot", type=Path, default=None, help="draw trajectories (PNG/PDF)")
    syn.set_defaults(func=run_synthetic_command)

    mt2o = subparsers.add_parser(
        "mt2o", help="MT2O multi-task optimization with hypervolume", description=MT2O_HELP
    )
    mt2o.add_argument("--problem", default="synthetic", help="problem name (default synthetic)")
    mt2o.add_argument("--subproblems", type=int, default=10, help="N weight vectors")
    mt2o.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    mt2o.add_argument("--lr", type=float, default=1e-2)
    mt2o.add_argument(
        "--transfer-weight",
        type=float,
        default=0.2,
        help="initial transfer weight gamma_0 (decays to 0)",
    )
    mt2o.add_argument("--neighbours", type=int, default=2)
    mt2o.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="hypervolume every this many steps (default: steps // 200)",
    )
    mt2o.add_argument(
        "--init",
        choices=("shared", "independent"),
        default="shared",
        help="all copies start from one model (default) or from N draws",
    )
    mt2o.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="problem option (repeatable), e.g. --option root=data/nyuv2",
    )
    mt2o.add_argument("--seed", type=int, default=0)
    mt2o.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")
    mt2o.add_argument("--json", type=Path, default=None, help="write both hypervolume curves")
    mt2o.add_argument("--plot", type=Path, default=None, help="plot curves and final sets")
    mt2o.set_defaults(func=run_mt2o_command)


def _format_run(index: int, record: dict) -> str:
    theta, losses = record["theta"], record["losses"]
    start = record["start"]
    return (
        f"{index:>3}  ({start[0]:g}, {start[1]:g})  ->  theta = ({theta[0]:.4f}, {theta[1]:.4f})"
        f"  L1 = {losses[0]:.4f}  L2 = {losses[1]:.4f}  weighted = {record['weighted_loss']:.4f}"
    )


def run_synthetic_command(args: argparse.Namespace) -> int:
    from mtrl_align.synthetic.problem import PAPER_STARTS, parse_pair
    from mtrl_align.synthetic.reference import weighted_optimum
    from mtrl_align.synthetic.runner import run_synthetic

    weights = parse_pair(args.task_weights, "--task-weights")
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"--task-weights must be >= 0 and not both 0, got {args.task_weights!r}")
    starts = [parse_pair(args.init, "--init")] if args.init else list(PAPER_STARTS)
    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    result = run_synthetic(
        args.method,
        starts,
        [weights] * len(starts),
        steps=args.steps,
        lr=args.lr,
        weighting=args.weighting,
        device=args.device,
        seed=args.seed,
    )
    a = weights[0] / sum(weights)
    optimum = weighted_optimum(a)
    print(
        f"{args.method}, task weights ({weights[0]:g}, {weights[1]:g}), weighting "
        f"{args.weighting}, {args.steps} Adam steps, lr {args.lr:g}"
    )
    records = [result.run_dict(i) for i in range(len(starts))]
    for i, record in enumerate(records):
        print(_format_run(i, record))
    print(
        f"optimum of {a:.3g}*L1 + {1 - a:.3g}*L2 (grid + Nelder-Mead): theta = "
        f"({optimum.theta[0]:.4f}, {optimum.theta[1]:.4f}), L1 = {optimum.losses[0]:.4f}, "
        f"L2 = {optimum.losses[1]:.4f}"
    )
    if args.json is not None:
        payload = {
            "method": args.method,
            "task_weights": list(weights),
            "weighting": args.weighting,
            "lr": args.lr,
            "steps": args.steps,
            "optimum": {"theta": optimum.theta.tolist(), "losses": optimum.losses.tolist()},
            "runs": records,
        }
        if len(records) == 1:
            payload.update({k: records[0][k] for k in ("theta", "losses", "trajectory")})
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload))
        print(f"wrote {args.json}")
    if args.plot is not None:
        from mtrl_align.synthetic.plotting import plot_synthetic

        print(f"wrote {plot_synthetic(result, args.plot)}")
    return 0


def _curve_summary(name: str, result, points: int = 6) -> str:
    picks = np.unique(np.linspace(0, len(result.eval_steps) - 1, points).round().astype(int))
    cells = "  ".join(f"{result.eval_steps[i]}:{result.hypervolume[i]:.4g}" for i in picks)
    return f"{name:<9} hypervolume by step  {cells}"


def _parse_options(items: list[str]) -> dict:
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option must look like KEY=VALUE, got {item!r}")
        options[key.strip()] = yaml.safe_load(value)
    return options


def run_mt2o_command(args: argparse.Namespace) -> int:
    from mtrl_align.mt2o.optimizer import TARGET_FRACTIONS, MT2OConfig, compare_with_baseline
    from mtrl_align.mt2o.problems import make_problem

    if args.transfer_weight <= 0:
        raise ValueError(
            "--transfer-weight must be > 0 (the baseline is run with 0), "
            f"got {args.transfer_weight}"
        )
    problem = make_problem(args.problem, **_parse_options(args.option))
    config = MT2OConfig(
        subproblems=args.subproblems,
        steps=args.steps,
        lr=args.lr,
        transfer_weight=args.transfer_weight,
        neighbours=args.neighbours,
        init=args.init,
        eval_every=args.eval_every,
        seed=args.seed,
        device=args.device,
    )
    config.validate()
    comparison = compare_with_baseline(problem, config)
    print(
        f"MT2O on {problem.name!r}: {config.subproblems} subproblems, {config.steps} steps, "
        f"{config.optimizer} lr {config.lr:g}, transfer {config.transfer_weight:g} "
        f"({config.transfer_decay} to 0 at step {config.horizon}, {config.neighbours} neighbours), "
        f"{config.init} init, reference point {tuple(problem.reference_point)}"
    )
    print(_curve_summary("MT2O", comparison.mt2o))
    print(_curve_summary("baseline", comparison.baseline))
    print(
        f"final hypervolume: MT2O {comparison.mt2o.hypervolume[-1]:.6g}, "
        f"baseline {comparison.target:.6g}"
    )
    for fraction in TARGET_FRACTIONS:
        reached = comparison.steps_to_target(fraction)
        print(
            f"steps to reach {fraction:g} x baseline final hypervolume: "
            f"MT2O {reached['mt2o'] if reached['mt2o'] is not None else 'never'}, "
            f"baseline {reached['baseline'] if reached['baseline'] is not None else 'never'}"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(comparison.to_dict(), problem=problem.name)))
        print(f"wrote {args.json}")
    if args.plot is not None:
        from mtrl_align.mt2o.plotting import plot_comparison

        print(f"wrote {plot_comparison(comparison, args.plot)}")
    return 0
