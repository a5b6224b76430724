"""The latency floor of a workload: mean over its jobs of each job alone on its best unit at
max clock (the denominator of slowdown). No scheduler's mean latency can go below it.

Per budget, also the slowdown floor of each stream while its best unit is kept busy (e.g. by
an LLM decoding beside it): the highest table clock at which that unit, fully busy with the
stream's model and every other unit idle at its lowest clock, stays within the budget (the
platform's power model), and the stream's slowdown at that clock. Only a unit left idle for
part of each 100 ms window can run faster within the budget.

Last, per budget, where Twill's mean latency on the twin goes: the floor; what the LLM
requests add when they run alone under Twill (waiting for each other and for clocks the
budget allows: no other work to blame); and the rest, which is all the other streams cost
them and themselves. The LLM requests alone draw other per-job noise than in the full run
(the twin's +-3 % is keyed by a job's position), so that split is good to a few percent.

    python bench/isolated_floor.py [--seed 1] [--budgets 10,15,20] [WORKLOAD ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twill_ros.core import power as pw  # noqa: E402
from twill_ros.core.catalog import load_catalog  # noqa: E402
from twill_ros.core.metrics import isolated_floor_ms  # noqa: E402
from twill_ros.core.platform import load_platform  # noqa: E402
from twill_ros.core.profiler import Profiler  # noqa: E402
from twill_ros.sim.simulator import simulate  # noqa: E402
from twill_ros.sim.workload import generate_jobs, load_workload  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=["paper_mix", "robot_nav"])
    parser.add_argument("--platform", default="orin_nx_16gb")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budgets", default="10,15,20", help="W, comma-separated")
    args = parser.parse_args()
    catalog = load_catalog()
    platform = load_platform(args.platform)
    profiler = Profiler(catalog, platform)
    budgets = [float(b) for b in args.budgets.split(",")]
    for name in args.workloads:
        workload = load_workload(name, catalog)
        jobs = generate_jobs(workload, args.seed)
        part_ms: dict[str, float] = {}
        for j in jobs:
            part_ms[j.stream] = (part_ms.get(j.stream, 0.0)
                                 + 1000 * profiler.isolated_latency_s(j) / len(jobs))
        parts = ", ".join(f"{s} {ms:.1f}" for s, ms in part_ms.items())
        print(f"{name}: {len(jobs)} jobs, isolated-latency floor of the mean "
              f"{sum(part_ms.values()):.1f} ms (per stream: {parts})")
        first_job = {}
        for job in jobs:
            first_job.setdefault(job.stream, job)
        for stream in workload.streams:
            for budget in budgets:
                print("  " + _busy_unit_floor(platform, profiler, first_job[stream.name], budget))
        for budget in budgets:
            print("  " + _twill_mean_parts(platform, catalog, profiler, workload, jobs, args.seed,
                                           budget))
    return 0


def _twill_mean_parts(platform, catalog, profiler: Profiler, workload, jobs, seed: int,
                      budget_w: float) -> str:
    """One line: Twill's mean latency split into the floor, what the LLM requests add alone
    and the rest."""
    llm = [j for j in jobs if catalog.get(j.model).is_llm]
    full = simulate(jobs, platform, catalog, "twill", budget_w, seed, workload.duration_s)
    alone = simulate(llm, platform, catalog, "twill", budget_w, seed, workload.duration_s)
    if any(r.finish_s is None for r in (*full.records, *alone.records)):
        return f"Twill @ {budget_w:g} W: not every job completed; no split"
    # every job completed: the metrics' means over completed jobs are over all of them
    floor = isolated_floor_ms(full.records, profiler)
    mean = 1000 * sum(r.latency_s for r in full.records) / len(jobs)
    llm_floor = isolated_floor_ms(alone.records, profiler) or 0.0     # None: no LLM requests
    llm_alone = 1000 * sum(r.latency_s for r in alone.records) / max(1, len(llm))
    share = len(llm) / len(jobs)        # the LLM requests' weight in the mean over all jobs
    return (f"Twill @ {budget_w:g} W: mean {mean:.1f} ms = floor {floor:.1f} + "
            f"LLM requests alone {share * (llm_alone - llm_floor):+.1f} (their mean "
            f"{llm_alone:.0f} ms alone vs {llm_floor:.0f} ms isolated) + the rest "
            f"{mean - floor - share * (llm_alone - llm_floor):+.1f}")


def _busy_unit_floor(platform, profiler: Profiler, job, budget_w: float) -> str:
    """One line: the clock ``job``'s best unit sustains busy within the budget, and the
    slowdown of ``job`` there."""
    unit = min(profiler.eligible_units(job.model),
               key=lambda n: profiler.job_s(job, n, platform.unit(n).max_frequency_hz))
    spec = platform.unit(unit)
    util = profiler.catalog.get(job.model).utilization.get(spec.kind, 1.0)
    idle_others = platform.idle_power_w + sum(
        pw.unit_power_w(u, u.min_frequency_hz, 0.0) for u in platform.units if u is not spec)
    watts = {f: idle_others + pw.unit_power_w(spec, f, util) for f in spec.frequencies_hz}
    fitting = [f for f in spec.frequencies_hz if watts[f] <= budget_w]
    head = f"{job.stream} ({job.model} on {unit}) @ {budget_w:g} W:"
    if not fitting:
        return f"{head} no clock fits"
    f = max(fitting)
    slowdown = profiler.job_s(job, unit, f) / profiler.job_s(job, unit, spec.max_frequency_hz)
    above = [g for g in spec.frequencies_hz if g > f]
    nxt = f"; {above[0] / 1e6:.0f} MHz would draw {watts[above[0]]:.2f} W" if above else ""
    return (f"{head} a busy {unit} sustains at most {f / 1e6:.0f} MHz ({watts[f]:.2f} W{nxt})"
            f" -> slowdown >= {slowdown:.2f} while it stays busy")


if __name__ == "__main__":
    sys.exit(main())
