"""The latency floor of a workload: mean over its jobs of each job alone on its best unit at
max clock (the denominator of slowdown). No scheduler's mean latency can go below it.

    python bench/isolated_floor.py [--seed 1] [WORKLOAD ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twill_ros.core.catalog import load_catalog  # noqa: E402
from twill_ros.core.platform import load_platform  # noqa: E402
from twill_ros.core.profiler import Profiler  # noqa: E402
from twill_ros.sim.workload import generate_jobs, load_workload  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=["paper_mix", "robot_nav"])
    parser.add_argument("--platform", default="orin_nx_16gb")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    catalog = load_catalog()
    profiler = Profiler(catalog, load_platform(args.platform))
    for name in args.workloads:
        jobs = generate_jobs(load_workload(name, catalog), args.seed)
        floor_ms = 1000 * sum(profiler.isolated_latency_s(j) for j in jobs) / len(jobs)
        print(f"{name}: {len(jobs)} jobs, isolated-latency floor of the mean {floor_ms:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
