"""``twill sim``: one workload under one policy and one power budget on the twin.

The JSON has the same shape as ``twill compare``'s, with a single result.
"""

from __future__ import annotations

import argparse

from twill_ros.commands.compare import add_run_arguments, execute


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("sim", help="simulate one policy at one budget",
                                   description=__doc__)
    add_run_arguments(parser)
    parser.add_argument("--policy", default="twill", help="policy name (default: twill)")
    parser.add_argument("--budget", type=float, default=15.0,
                        help="module power budget in W (default: 15)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return execute(args, (args.budget,), (args.policy,))
