"""The ``twill`` command line (``python -m twill_ros.cli``).

Subcommands live in ``twill_ros.commands.<name>``. A subcommand module that is not installed
(yet) is skipped so the others keep working; any other import error is a bug and surfaces.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from twill_ros import __version__

COMMANDS = ("sim", "compare", "evaluate", "profile", "analyze", "demo", "bag", "replay")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twill", description="Twill-ROS: power-aware scheduling of compound-AI inference.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module_name = f"twill_ros.commands.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
