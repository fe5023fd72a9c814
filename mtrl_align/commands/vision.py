"""``mtrl-align vision train|eval``: dense multi-task vision benchmarks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtrl_align.vision.specs import DATASETS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "vision",
        help="NYUv2 / Cityscapes multi-task training and evaluation",
        description="Dense multi-task vision (NYUv2, Cityscapes 2/3-task) with any aggregator.",
    )
    commands = parser.add_subparsers(dest="vision_command", metavar="{train,eval}")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    train = commands.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train from CONFIG.yaml with key=value overrides, or resume a run directory.",
    )
    train.add_argument("config", nargs="?", help="YAML config (see configs/vision/)")
    train.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. aggregation.method=aligned-mtl"
    )
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint"
    )
    train.set_defaults(func=run_train)

    evaluate = commands.add_parser(
        "eval",
        help="score saved predictions (all metrics and Delta_m)",
        description="Score saved predictions (<task folder>/<i>.npy, the label layout) against "
        "the val split of a dataset; prints all metrics and Delta_m in both conventions.",
    )
    evaluate.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    evaluate.add_argument("--root", required=True, help="dataset root")
    evaluate.add_argument(
        "--predictions", required=True, help="folder with one sub-folder per task"
    )
    evaluate.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    evaluate.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from mtrl_align.vision.config import load_vision_config
    from mtrl_align.vision.trainer import load_resume_config, train

    if args.resume:
        overrides = list(args.overrides)
        if args.config:
            if "=" not in args.config:
                raise ValueError("give either CONFIG.yaml or --resume RUN_DIR, not both")
            overrides.insert(0, args.config)
        config = load_resume_config(args.resume, overrides)
        run_dir = train(config, resume_dir=args.resume)
    else:
        if not args.config:
            raise ValueError("missing CONFIG.yaml (or --resume RUN_DIR)")
        config = load_vision_config(args.config, args.overrides)
        run_dir = train(config)
    summary_path = Path(run_dir) / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        last = summary["last"]
        print(f"run dir: {run_dir}")
        print(
            f"epoch {last['epoch']}: Delta_m task-weighted {last['delta_m_task_weighted']:+.2f} %, "
            f"metric-weighted {last['delta_m_metric_weighted']:+.2f} % (lower is better)"
        )
        for key, value in last["metrics"].items():
            print(f"  {key:<22} {value:.4f}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from mtrl_align.vision.evaluation import evaluate_predictions, format_report, report
    from mtrl_align.vision.specs import get_dataset_spec

    metrics = evaluate_predictions(args.dataset, args.root, args.predictions)
    result = report(metrics, get_dataset_spec(args.dataset))
    print(format_report(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
