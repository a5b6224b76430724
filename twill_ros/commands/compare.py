"""``twill compare``: one workload under several policies and power budgets on the twin.

Writes the ``compare`` JSON contract (workload, platform, seed, results) and prints one
table per budget; ``--report DIR`` adds a Markdown summary with plots.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from twill_ros.comparison import (
    BEST_CAPS,
    Comparison,
    parse_budgets,
    parse_policies,
    run_comparison,
)
from twill_ros.core.power import CAP_PROFILES
from twill_ros.errors import error_text
from twill_ros.report import text_table, write_report


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared with ``twill sim``."""
    parser.add_argument("--workload", required=True,
                        help="workload YAML path or shipped scenario name (e.g. paper_mix)")
    parser.add_argument("--platform", default="orin_nx_16gb",
                        help="platform name or YAML path (default: orin_nx_16gb)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--json", metavar="OUT", help="write the results JSON here")
    parser.add_argument("--report", metavar="DIR", help="write REPORT.md and PNG plots here")
    parser.add_argument("--caps-profile", choices=(BEST_CAPS, *CAP_PROFILES), default=BEST_CAPS,
                        help="static caps of policies without DVFS: which units the budget "
                             "goes to (default: best, i.e. each profile tried and the best "
                             "run kept)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("compare", help="compare policies across power budgets",
                                   description=__doc__)
    add_run_arguments(parser)
    parser.add_argument("--budgets", default="10,15,20",
                        help="comma-separated module power budgets in W (default: 10,15,20)")
    parser.add_argument("--policies", default="all",
                        help="comma-separated policy names, or 'all' (default)")
    parser.set_defaults(func=run)


def user_error(exc: Exception | str) -> int:
    text = exc if isinstance(exc, str) else error_text(exc)
    print(f"twill: error: {text}", file=sys.stderr)
    return 2


def execute(args: argparse.Namespace, budgets: Sequence[float], policies: Sequence[str]) -> int:
    """Run, print, and write the outputs; user errors become exit code 2 (an unusable
    output path before the simulation, not after it)."""
    problem = output_problem(args.json, args.report)
    if problem:
        return user_error(problem)
    try:
        comparison = run_comparison(args.workload, args.platform, budgets, policies,
                                    args.seed, progress=True, caps_profile=args.caps_profile)
    except (ValueError, FileNotFoundError) as exc:
        return user_error(exc)
    print_tables(comparison)
    if args.json:
        write_json(comparison, args.json)
        print(f"wrote {args.json}")
    if args.report:
        print(f"wrote {write_report(comparison, args.report)}")
    return 0


def print_tables(comparison: Comparison) -> None:
    w = comparison.workload
    for budget in comparison.budgets:
        print(f"\n{w.name} on {comparison.platform} @ {budget:g} W (seed {comparison.seed})")
        print(text_table([r.summary for r in comparison.runs_at(budget)]))


def output_problem(json_path: str | None, report_dir: str | None) -> str | None:
    """Why ``--json`` or ``--report`` cannot be written, or None (missing parents are made)."""
    if json_path and (problem := path_problem("--json", json_path)):
        return problem
    return path_problem("--report", report_dir, directory=True) if report_dir else None


def path_problem(flag: str, path: str | os.PathLike, directory: bool = False) -> str | None:
    """Why the output file (or ``directory``) ``path`` given with ``flag`` cannot be written,
    or None. The directory it goes in is made and written to now, so that an unusable path
    is refused before the work instead of ending it with a traceback."""
    target = Path(path)
    if not directory and target.is_dir():
        return f"{flag} {path} is a directory"
    folder = target if directory else target.parent
    file = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if file == target:
        return f"{flag} {path} is a file, not a directory"
    if file:
        return f"{flag} {path}: {file} is not a directory"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"{flag} {path}: cannot write in {folder}: {exc.strerror}"
    if target.is_file() and not os.access(target, os.W_OK):
        return f"{flag} {path}: the file is not writable"
    return None


def write_json(comparison: Comparison, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(comparison.to_json(), fh, indent=2)
        fh.write("\n")


def run(args: argparse.Namespace) -> int:
    try:
        budgets, policies = parse_budgets(args.budgets), parse_policies(args.policies)
    except ValueError as exc:
        return user_error(exc)
    return execute(args, budgets, policies)
