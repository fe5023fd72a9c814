"""Speed and memory benchmarks of mtrl-align, printed as ratios measured in one run.

Usage:
    python scripts/benchmark.py [--sections aggregation,runner,training,variants,efficient,loop,
        settings]
        [--json PATH] [--quick]

Each section lives in ``mtrl_align.bench.<section>`` and returns a JSON-able dict.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

SECTIONS = ("aggregation", "runner", "training", "variants", "efficient", "loop", "settings")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--json", type=Path, default=None, help="write all results to this file")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from: {', '.join(SECTIONS)}")
    from mtrl_align.allocator import keep_freed_memory

    print(f"malloc tuning (mtrl_align.allocator): {'on' if keep_freed_memory() else 'off'}")
    results = {}
    for section in chosen:
        module = importlib.import_module(f"mtrl_align.bench.{section}")
        print(f"== {section} ==", flush=True)
        results[section] = module.run(quick=args.quick)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
