"""``mtrl-align archive`` and ``mtrl-align restore``: finished runs in a small form, and back."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``archive`` and ``restore`` sub-commands."""
    archive = subparsers.add_parser(
        "archive",
        help="copy the small files of finished runs (no checkpoints, no TensorBoard) elsewhere",
        description=(
            "For every finished run under SWEEP_DIR, copy config.yaml, eval.jsonl and "
            "status.json into ARCHIVE_DIR/<run path relative to SWEEP_DIR>/ and write "
            "scalars.jsonl with the training-time stability scalars of its TensorBoard events "
            "(aggregation/<network>/{kappa,gms,min_cos,max_norm_ratio}, losses/*_mean, "
            "perf/env_steps_per_s, perf/update_ms). Unfinished runs are left out and listed."
        ),
    )
    archive.add_argument("sweep_dir", type=Path, help="folder with run directories (any depth)")
    archive.add_argument("archive_dir", type=Path, help="archive folder (e.g. inside git)")
    archive.set_defaults(func=_run_archive)

    restore = subparsers.add_parser(
        "restore",
        help="copy archived runs back into a sweep folder, so the sweep skips them",
        description=(
            "Copy every archived run of ARCHIVE_DIR into SWEEP_DIR/<its relative path>/. "
            "mtrl-align sweep then skips them (finished, same config) and mtrl-align report "
            "reads them. Refuses unfinished archived runs and places that hold another run."
        ),
    )
    restore.add_argument("archive_dir", type=Path, help="archive folder written by archive")
    restore.add_argument("sweep_dir", type=Path, help="sweep folder to restore into")
    restore.set_defaults(func=_run_restore)


def _run_archive(args: argparse.Namespace) -> int:
    from mtrl_align.sweep.archive import archive_runs

    result = archive_runs(args.sweep_dir, args.archive_dir)
    for rel in result.copied:
        note = " (no TensorBoard events: no scalars.jsonl)" if rel in result.without_scalars else ""
        print(f"  archived {rel}{note}")
    for line in result.not_finished:
        print(f"  not finished, left out: {line}")
    print(
        f"archive {args.archive_dir}: {len(result.copied)} copied, {len(result.up_to_date)} "
        f"up to date, {len(result.not_finished)} not finished"
    )
    return 0


def _run_restore(args: argparse.Namespace) -> int:
    from mtrl_align.sweep.archive import restore_runs

    result = restore_runs(args.archive_dir, args.sweep_dir)
    for rel in result.restored:
        print(f"  restored {rel}")
    print(
        f"restore {args.sweep_dir}: {len(result.restored)} restored, "
        f"{len(result.already_there)} already there"
    )
    return 0
