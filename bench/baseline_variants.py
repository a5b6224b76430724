"""How much stronger the baselines get when their idea is given more room: the shipped
baselines side by side with variants that an audit (2026-12-03) found stronger, on the twin.

The shipped baselines other than ``gpu_fifo`` are weaker than their ideas need to be in three
ways, each sized here (docs/EVALUATION.md cites this script's output):

* static caps: ``power.static_caps`` counts every unit a baseline may use as fully busy, so
  it spends the budget on CPU clusters these workloads barely touch. ``+cpu-min`` holds both
  CPU clusters at their lowest clock (still counted fully busy, so the worst case still
  fits), leaving the rest of the budget to the GPU and the DLAs; for ``twill_no_dvfs``,
  ``+gpu-caps`` also holds the DLAs there, which gives it about ``gpu_fifo``'s GPU clock;
* an exclusive GPU: only ``gpu_fifo`` shares the GPU between streams as a time-sliced GPU
  does; ``fcfs_affinity+shared`` shares it too (its estimate does not know, but it maps
  everything to the GPU first anyway);
* no preemption: ``edf-preemptive`` serves jobs with a deadline on a higher level and
  freezes a running LLM for them at its next step (Twill's mechanism), as preemptive EDF
  would.

    python bench/baseline_variants.py [--seed 1] [--budgets 10,15,20] [WORKLOAD ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The variants subclass the baselines, which compiled (mypyc) classes do not allow: the
# Python modules run, with the same results (test/test_native.py).
os.environ["TWILL_NATIVE"] = "0"

from twill_ros.core.catalog import load_catalog  # noqa: E402
from twill_ros.core.metrics import summarize  # noqa: E402
from twill_ros.core.platform import PlatformSpec, load_platform  # noqa: E402
from twill_ros.core.policies.baselines import Edf, FcfsAffinity  # noqa: E402
from twill_ros.core.profiler import Profiler  # noqa: E402
from twill_ros.sim.simulator import simulate  # noqa: E402
from twill_ros.sim.workload import generate_jobs, load_workload  # noqa: E402

SHIPPED = ("twill", "gpu_fifo", "fcfs_affinity", "min_finish", "edf", "dream", "twill_no_dvfs")


class SharedFcfsAffinity(FcfsAffinity):
    name = "fcfs_affinity+shared"
    shares_processor = True


class PreemptiveEdf(Edf):
    name = "edf-preemptive"
    freezing = True
    priority_sharing = True

    def level(self, job) -> int:
        return 1 if job.absolute_deadline_s is not None else 0


def lowest(platform: PlatformSpec, kinds: tuple[str, ...]) -> dict[str, int]:
    return {u.name: u.min_frequency_hz for u in platform.units if u.kind in kinds}


def variants(platform: PlatformSpec) -> list[tuple[str, object, dict[str, int]]]:
    """(label, policy name or class, fixed clocks) of each run: the shipped policies, then
    the variants."""
    cpu, cpu_dla = lowest(platform, ("cpu",)), lowest(platform, ("cpu", "dla"))
    return ([(name, name, {}) for name in SHIPPED]
            + [(f"{name}+cpu-min", name, cpu) for name in ("min_finish", "edf", "dream")]
            + [("fcfs_affinity+shared", SharedFcfsAffinity, {}),
               ("edf-preemptive+cpu-min", PreemptiveEdf, cpu),
               ("twill_no_dvfs+gpu-caps", "twill_no_dvfs", cpu_dla)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budgets", default="10,15,20")
    parser.add_argument("--platform", default="orin_nx_16gb")
    parser.add_argument("workloads", nargs="*", default=["paper_mix", "robot_nav"])
    args = parser.parse_args()
    catalog = load_catalog()
    platform = load_platform(args.platform)
    profiler = Profiler(catalog, platform)
    print(f"{'workload':<10} {'budget':>6}  {'policy':<24} {'mean ms':>8} {'p99 ms':>8} "
          f"{'deadline miss':>13} {'over budget':>11}")
    for name in args.workloads:
        workload = load_workload(name, catalog)
        jobs = generate_jobs(workload, args.seed)
        streams = tuple(s.name for s in workload.streams)
        for budget in (float(b) for b in args.budgets.split(",")):
            for label, policy, fixed in variants(platform):
                run = simulate(jobs, platform, catalog,
                               policy() if isinstance(policy, type) else policy, budget,
                               args.seed, workload.duration_s, fixed_clocks_hz=fixed)
                result = summarize(run.records, run.power_trace, policy=label, budget_w=budget,
                                   profiler=profiler, duration_s=run.duration_s,
                                   streams=streams)
                misses = result["deadline_violation_rate"]
                print(f"{name:<10} {budget:>5g}W  {label:<24} "
                      f"{result['latency_ms']['mean']:>8.1f} {result['latency_ms']['p99']:>8.1f} "
                      f"{'–' if misses is None else f'{100 * misses:.1f}%':>13} "
                      f"{100 * result['budget_violation_fraction']:>10.1f}%", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
