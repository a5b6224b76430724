"""``twill evaluate``: regenerate docs/EVALUATION.md from the shipped workloads.

Runs every shipped workload under every policy at each budget (the ``compare`` JSON and the
plots go to ``--eval-dir``), runs ``bench/bench_core.py`` when the source checkout has it,
checks the targets and writes the document. Its hand-written discussion section is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from twill_ros.commands.compare import path_problem, user_error, write_json
from twill_ros.comparison import parse_budgets, parse_policies, run_comparison, split_items
from twill_ros.evaluation import WorkloadEvaluation, latency_floors_ms, lost_jobs, render
from twill_ros.report import paired_means, write_plots
from twill_ros.sim.workload import SCENARIOS, generate_jobs

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "bench_core.py"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="regenerate docs/EVALUATION.md",
                                   description=__doc__)
    parser.add_argument("--out", default="docs/EVALUATION.md", help="the document to write")
    parser.add_argument("--eval-dir", default="docs/eval",
                        help="directory for the per-workload JSON and PNG files")
    parser.add_argument("--platform", default="orin_nx_16gb",
                        help="platform name or YAML path (default: orin_nx_16gb)")
    parser.add_argument("--budgets", default="10,15,20",
                        help="comma-separated module power budgets in W (default: 10,15,20)")
    parser.add_argument("--policies", default="all",
                        help="comma-separated policies, or all (default: all)")
    parser.add_argument("--workloads", default=",".join(SCENARIOS),
                        help="comma-separated scenario names or paths (default: "
                             f"{','.join(SCENARIOS)})")
    parser.add_argument("--seed", type=int, default=1,
                        help="random seed (default: 1, the committed document's)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="workloads simulated in parallel processes (default 1)")
    parser.add_argument("--no-bench", action="store_true",
                        help="keep the previous benchmark figures (eval-dir/bench.json)")
    parser.set_defaults(func=run)


def _evaluate(workload: str, args: argparse.Namespace, budgets: tuple[float, ...],
              policies: tuple[str, ...]) -> WorkloadEvaluation:
    """One workload: simulate, write its JSON and plots (runs in a worker process). The
    simulator results are dropped before returning: the document needs only the summaries,
    figures and lost-job checks, and the records and traces would be pickled back."""
    comparison = run_comparison(workload, args.platform, budgets, policies, args.seed,
                                progress=True)
    name = comparison.workload.name
    json_path = os.path.join(args.eval_dir, f"{name}.json")
    write_json(comparison, json_path)
    figures = write_plots(comparison, os.path.join(args.eval_dir, name))
    generated = [job.job_id for job in generate_jobs(comparison.workload, args.seed)]
    return WorkloadEvaluation(comparison=comparison.without_results(), figures=figures,
                              json_path=json_path, lost=lost_jobs(comparison, generated),
                              floors_ms=latency_floors_ms(comparison),
                              paired=paired_means(comparison))


def _bench(args: argparse.Namespace) -> dict | None:
    """Fresh figures from bench/bench_core.py, or the previous ones with --no-bench."""
    path = os.path.join(args.eval_dir, "bench.json")
    if not args.no_bench and BENCH.is_file():
        subprocess.run([sys.executable, str(BENCH), "--json", path], check=True,
                       stdout=sys.stderr)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _commands(args: argparse.Namespace, workloads: list[str], benched: bool) -> list[str]:
    """The exact commands that reproduce the document (run from the repository root);
    without benchmark figures (``benched`` false) it has no speed section to reproduce."""
    common = (f"--platform {args.platform} --budgets {args.budgets} --policies "
              f"{args.policies} --seed {args.seed}")
    lines = ["# everything below, in one command:",
             (f"python -m twill_ros.cli evaluate {common} --workloads {','.join(workloads)} "
              f"--out {args.out} --eval-dir {args.eval_dir}" + ("" if benched else " --no-bench")),
             "# or piece by piece:"]
    lines += [f"python -m twill_ros.cli compare --workload {w} {common} "
              f"--json {args.eval_dir}/{Path(w).stem}.json --report {args.eval_dir}/{Path(w).stem}"
              for w in workloads]
    if benched:
        lines.append(f"python bench/bench_core.py --json {args.eval_dir}/bench.json")
    return lines


def run(args: argparse.Namespace) -> int:
    try:
        workloads = split_items(args.workloads, "--workloads")
        budgets, policies = parse_budgets(args.budgets), parse_policies(args.policies)
    except ValueError as exc:
        return user_error(exc)
    if not workloads:
        return user_error("no workload given (--workloads)")
    problem = (path_problem("--out", args.out)
               or path_problem("--eval-dir", args.eval_dir, directory=True))
    if problem:
        return user_error(problem)
    try:
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            evaluations = list(pool.map(partial(_evaluate, args=args, budgets=budgets,
                                                policies=policies), workloads))
    except (ValueError, FileNotFoundError) as exc:
        return user_error(exc)
    bench = _bench(args)
    text = render(evaluations, bench, _commands(args, workloads, bench is not None), args.out)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"wrote {args.out}")
    return 0
