"""``mtrl-align sweep`` (seed sweeps on this machine, SLURM or Ray) and ``mtrl-align report``."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl_align.sweep.grouping import LABEL_MODES
from mtrl_align.sweep.plan import parse_methods, parse_seeds, plan_sweep
from mtrl_align.sweep.results import METRIC_DESCRIPTIONS, METRICS
from mtrl_align.sweep.runner import BACKENDS, run_sweep


class _IntermixedParser(argparse.ArgumentParser):
    """Lets ``key=value`` overrides appear before, between and after the options."""

    _parsing = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._parsing:
            return super().parse_known_args(args, namespace)
        self._parsing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` and ``report`` sub-commands."""
    _register_sweep(subparsers)
    _register_report(subparsers)


def _register_sweep(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="train every method over many seeds (local pool, SLURM via submitit, or Ray)",
        description=(
            "Train CONFIG for every (method, seed). Runs live in OUT/<method>/seed_<seed>; "
            "running the same sweep again skips finished runs, resumes interrupted ones from "
            "their checkpoints and lists failed ones with their error."
        ),
    )
    parser.__class__ = _IntermixedParser
    parser.add_argument("config", type=Path, help="experiment YAML file (as for mtrl-align train)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides for every run; METHOD:key=value applies to one method only "
        "(e.g. cagrad:aggregation.options.c=0.9)",
    )
    parser.add_argument(
        "--seeds", required=True, help="seeds: 0:10 (0..9), 0:10:2, or 1,4,7 (combinable)"
    )
    parser.add_argument(
        "--methods", help="comma-separated aggregation methods (default: the config's method)"
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="local", help="where runs execute (default local)"
    )
    parser.add_argument(
        "--out", type=Path, help="sweep directory (default runs/sweeps/<config name>)"
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="rerun runs that failed in an earlier sweep"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="check the configs, print the plan, run nothing"
    )
    local = parser.add_argument_group("local backend")
    local.add_argument(
        "--workers", type=int, help="concurrent runs (default: one per core, or per GPU)"
    )
    local.add_argument(
        "--gpus",
        default="auto",
        help="GPU ids to spread runs over, e.g. 0,1; 'none' for CPU only; 'auto' (default) uses "
        "all visible GPUs when the config's device is cuda or auto",
    )
    local.add_argument("--runs-per-gpu", type=int, default=1, help="concurrent runs per GPU")
    cluster = parser.add_argument_group("submitit (SLURM) and ray backends")
    cluster.add_argument(
        "--cluster",
        choices=("slurm", "local", "debug"),
        help="submitit executor (default: SLURM when available, else local processes)",
    )
    cluster.add_argument("--partition", help="SLURM partition")
    cluster.add_argument(
        "--timeout-min", type=int, default=24 * 60, help="time limit per run (minutes)"
    )
    cluster.add_argument("--cpus-per-run", type=int, default=4, help="CPU cores per run")
    cluster.add_argument("--gpus-per-run", type=float, default=0, help="GPUs per run")
    cluster.add_argument("--mem-gb", type=int, default=16, help="memory per run (GB, SLURM)")
    cluster.add_argument(
        "--array-parallelism", type=int, default=64, help="most SLURM array tasks at once"
    )
    cluster.add_argument(
        "--max-requeues",
        type=int,
        default=10,
        help="SLURM: requeues of a run after a timeout or preemption (each resumes it)",
    )
    cluster.add_argument(
        "--no-wait",
        action="store_true",
        help="submitit: return after submitting (run the sweep again later to see the state)",
    )
    cluster.add_argument(
        "--ray-address", help="Ray cluster address ('auto' joins a running cluster)"
    )
    parser.set_defaults(func=_run_sweep)


def _config_methods(config: Path, overrides: list[str]) -> list[str]:
    from mtrl_align.config import load_train_config

    shared = [o for o in overrides if ":" not in o.split("=", 1)[0]]
    return [load_train_config(config, shared).aggregation.method]


def _gpu_ids(spec: str, config: Path, overrides: list[str]) -> list[str]:
    if spec == "none":
        return []
    if spec != "auto":
        ids = [g.strip() for g in spec.split(",") if g.strip()]
        if not ids or not all(g.isdigit() for g in ids):
            raise ValueError(f"bad --gpus '{spec}'; give ids like 0,1 or 'none' or 'auto'")
        return ids
    from mtrl_align.config import load_train_config

    shared = [o for o in overrides if ":" not in o.split("=", 1)[0]]
    if load_train_config(config, shared).device == "cpu":
        return []
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _run_sweep(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds)
    methods = parse_methods(args.methods) or _config_methods(args.config, args.overrides)
    out = args.out if args.out is not None else Path("runs") / "sweeps" / args.config.stem
    specs = plan_sweep(args.config, seeds, methods, out, args.overrides)
    if args.backend == "local":
        options: dict = {
            "workers": args.workers,
            "gpus": _gpu_ids(args.gpus, args.config, args.overrides),
            "runs_per_gpu": args.runs_per_gpu,
        }
    elif args.backend == "submitit":
        from mtrl_align.sweep.submitit_backend import SlurmOptions

        if args.gpus_per_run != int(args.gpus_per_run):
            raise ValueError(
                f"--gpus-per-run must be a whole number on SLURM, got {args.gpus_per_run}"
            )

        options = {
            "options": SlurmOptions(
                timeout_min=args.timeout_min,
                partition=args.partition,
                gpus_per_run=int(args.gpus_per_run),
                cpus_per_run=args.cpus_per_run,
                mem_gb=args.mem_gb,
                array_parallelism=args.array_parallelism,
                max_requeues=args.max_requeues,
            ),
            "cluster": args.cluster,
            "wait": not args.no_wait,
        }
    else:
        options = {
            "address": args.ray_address,
            "cpus_per_run": args.cpus_per_run,
            "gpus_per_run": args.gpus_per_run,
        }
    summary = run_sweep(
        specs,
        out.resolve(),
        backend=args.backend,
        retry_failed=args.retry_failed,
        dry_run=args.dry_run,
        backend_options=options,
    )
    if args.dry_run or summary.all_finished:
        return 0
    return 1


def _register_report(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="tables (Markdown, CSV) and plots of success over seeds",
        description=(
            "Read the finished runs under RUNS_DIR and write report.md, report.csv, "
            "success_curves.png and success_intervals.png: per method, per-task and mean "
            "success as mean ± SEM over seeds, IQM with a 95%% bootstrap interval, the number "
            "of seeds and the evaluation protocol."
        ),
    )
    parser.add_argument("runs_dir", type=Path, help="folder with run directories (any depth)")
    parser.add_argument("--out", type=Path, help="output folder (default RUNS_DIR/report)")
    parser.add_argument(
        "--metric",
        choices=METRICS,
        default="final",
        help="; ".join(f"{m}: {d}" for m, d in METRIC_DESCRIPTIONS.items()).replace("%", "%%"),
    )
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    parser.add_argument(
        "--no-stability",
        action="store_true",
        help="leave out the gradient-stability and wall-time sections (they read each run's "
        "scalars.jsonl or TensorBoard events)",
    )
    parser.add_argument(
        "--bootstrap-seed", type=int, default=0, help="seed of the bootstrap intervals (default 0)"
    )
    parser.add_argument(
        "--baseline",
        metavar="LABEL",
        help="row the others are compared with (Δ mean success and probability of improvement, "
        "95%% intervals): a full row label, e.g. 'uniform (agent.variant=shared)' or, with "
        "--labels folders, 'mt-sac/uniform', or a method with a single row (default: uniform, "
        "when it names one row)",
    )
    parser.add_argument(
        "--labels",
        choices=LABEL_MODES,
        default="settings",
        help="row labels: settings (the method and the config keys that set a row apart, "
        "e.g. 'cagrad (aggregation.options.c=0.9)'; default) or folders (the folder of the "
        "row's seed directories under RUNS_DIR, e.g. 'efficient/uniform'; the settings are "
        "listed under Runs): for studies that compare whole configurations",
    )
    parser.add_argument(
        "--no-comparison", action="store_true", help="leave out the comparison with the baseline"
    )
    parser.add_argument(
        "--at-steps",
        type=int,
        metavar="N",
        help="read every run as if it ended at N env steps per task: its evaluations up to N "
        "(runs that reached N count, also longer or unfinished ones; shorter ones are left out)",
    )
    parser.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from mtrl_align.sweep.report import build_report

    report = build_report(
        args.runs_dir,
        args.out,
        metric=args.metric,
        bootstrap_seed=args.bootstrap_seed,
        with_plots=not args.no_plots,
        with_stability=not args.no_stability,
        baseline=args.baseline,
        with_comparison=not args.no_comparison,
        at_env_steps=args.at_steps,
        labels=args.labels,
    )
    print(report.markdown.read_text(), end="")
    print(f"\nwrote {report.markdown}, {report.csv}", end="")
    if report.stability_csv is not None:
        print(f", {report.stability_csv}", end="")
    print("".join(f", {p}" for p in report.plots))
    return 0
