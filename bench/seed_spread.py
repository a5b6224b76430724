"""How much the evaluation's latency ratios depend on its one seed: Twill against the best
baseline and against ``gpu_fifo``, side by side for several seeds (each seed its own jobs,
arrival jitter and twin noise; every policy of a seed sees the same jobs, and the baselines
get their best static caps per seed, as in ``twill compare``).

    python bench/seed_spread.py [--seeds 1,2,3,4,5] [--budgets 10,15,20] [WORKLOAD ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twill_ros.comparison import parse_budgets, run_comparison  # noqa: E402
from twill_ros.core.policies import POLICIES  # noqa: E402
from twill_ros.evaluation import best_baseline, is_baseline  # noqa: E402

POLICY_SET = ("twill", *(name for name in POLICIES if is_baseline(name)))


def ratios(workload: str, platform: str, budgets: tuple[float, ...], seed: int
           ) -> dict[float, tuple[float, float, str]]:
    """Per budget: (Twill / best baseline, Twill / gpu_fifo, the best baseline) of one seed."""
    comparison = run_comparison(workload, platform, budgets, POLICY_SET, seed)
    out = {}
    for budget in budgets:
        results = {run.policy: run.summary for run in comparison.runs_at(budget)}
        means = {policy: r["latency_ms"]["mean"] for policy, r in results.items()}
        best = best_baseline(results)
        out[budget] = (means["twill"] / means[best], means["twill"] / means["gpu_fifo"], best)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workloads", nargs="*", default=["paper_mix", "robot_nav"])
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--budgets", default="10,15,20")
    parser.add_argument("--platform", default="orin_nx_16gb")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = parse_budgets(args.budgets)
    tasks = [(w, s) for w in args.workloads for s in seeds]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        done = pool.map(ratios, [w for w, _ in tasks], [args.platform] * len(tasks),
                        [budgets] * len(tasks), [s for _, s in tasks])
        results = dict(zip(tasks, done, strict=True))
    print(f"{'workload':<10} {'budget':>6}  {'Twill / best baseline per seed':<44} "
          f"{'median':>6}  {'Twill / gpu_fifo median (range)':<32} best baselines")
    for workload in args.workloads:
        for budget in budgets:
            rows = [results[(workload, s)][budget] for s in seeds]
            best = [r[0] for r in rows]
            fifo = [r[1] for r in rows]
            print(f"{workload:<10} {budget:>5g}W  "
                  f"{' '.join(f'{s}:{r:.3f}' for s, r in zip(seeds, best, strict=True)):<44} "
                  f"{statistics.median(best):>6.3f}  "
                  f"{statistics.median(fifo):.3f} ({min(fifo):.3f}-{max(fifo):.3f}){'':<14} "
                  f"{', '.join(sorted({r[2] for r in rows}))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
