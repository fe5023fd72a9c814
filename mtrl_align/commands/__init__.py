"""Sub-commands of the ``mtrl-align`` CLI, one module each.

Every module exposes ``register(subparsers)`` which adds its parser(s) and sets
``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
"""

COMMAND_MODULES = ("train", "synthetic", "sweep", "archive", "vision")
