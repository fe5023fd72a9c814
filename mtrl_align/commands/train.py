"""``mtrl-align train`` and ``mtrl-align evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train multi-task SAC on Meta-World",
        description="Train multi-task SAC. Example: mtrl-align train configs/mt10_demo.yaml "
        "aggregation.method=aligned-mtl seed=1",
    )
    train.add_argument("config", nargs="?", type=Path, help="YAML config (see configs/)")
    train.add_argument(
        "overrides", nargs="*", help="dotted key=value overrides, e.g. train.total_env_steps=5000"
    )
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="evaluate a run's checkpoint and print per-task success",
        description="Evaluate the latest (or best) checkpoint of a run directory.",
    )
    evaluate.add_argument("run_dir", type=Path, help="run directory written by mtrl-align train")
    evaluate.add_argument("--episodes", type=int, default=None, help="episodes per task")
    evaluate.add_argument(
        "--checkpoint", choices=("latest", "best"), default="latest", help="which checkpoint"
    )
    evaluate.add_argument("--device", default=None, help="cpu, cuda or auto (default: the run's)")
    evaluate.add_argument("--json", type=Path, default=None, help="also write the result here")
    evaluate.set_defaults(func=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    from mtrl_align.config import load_train_config
    from mtrl_align.training import RunFiles, format_success_table, train

    if args.resume is not None:
        overrides = ([str(args.config)] if args.config is not None else []) + args.overrides
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ValueError(
                "with --resume the config comes from the run directory; "
                f"got extra argument {bad[0]!r}"
            )
        saved = args.resume / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"'{args.resume}' is not a run directory (no config.yaml)")
        config = load_train_config(saved, overrides)
        resume_dir = args.resume
    else:
        if args.config is None:
            raise ValueError("give a config file (e.g. configs/mt10_demo.yaml) or --resume RUN_DIR")
        config = load_train_config(args.config, args.overrides)
        resume_dir = None
    try:
        run_dir = train(config, resume_dir=resume_dir)
    except KeyboardInterrupt:
        print(
            f"interrupted; continue from the last checkpoint with: "
            f"mtrl-align train --resume {config.run_dir}",
            file=sys.stderr,
        )
        return 130
    records = RunFiles(run_dir).read_evaluations()
    print(f"run directory: {run_dir}")
    if records:
        last = records[-1]
        print(
            f"final evaluation after {last['env_steps']} env steps per task "
            f"({last['episodes_per_task']} episodes per task):"
        )
        print(format_success_table(last["success"], last["mean_success"], last["returns"]))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from mtrl_align.training import evaluate_run, format_success_table

    if args.episodes is not None and args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    result = evaluate_run(
        args.run_dir,
        episodes_per_task=args.episodes,
        checkpoint=args.checkpoint,
        device=args.device,
    )
    returns = {name: sum(r) / len(r) for name, r in result.returns.items()}
    print(
        f"{args.run_dir} ({args.checkpoint} checkpoint, "
        f"{result.episodes_per_task} episodes per task)"
    )
    print(format_success_table(result.success_rate, result.mean_success_rate, returns))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_dict(), indent=2))
        print(f"wrote {args.json}")
    return 0
