"""The ``mtrl-align`` command line: a thin dispatcher over ``mtrl_align.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

from mtrl_align.commands import COMMAND_MODULES


class UserError(Exception):
    """An error caused by bad user input; printed as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtrl-align",
        description="Multi-task SAC on Meta-World with pluggable gradient aggregators.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"mtrl_align.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"mtrl_align.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, FileNotFoundError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"mtrl-align {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
