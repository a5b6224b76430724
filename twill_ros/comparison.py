"""Run one workload under several policies and budgets on the twin, and summarise each run.

This is what ``twill sim``, ``twill compare`` and ``twill evaluate`` share. Every run sees
the same generated jobs (common random numbers), so differences between policies are the
policies', not the arrivals'. The simulator's traces are kept beside the summaries for the
plots; only the summaries go into the ``compare`` JSON.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from twill_ros.core.catalog import Catalog, load_catalog
from twill_ros.core.metrics import summarize
from twill_ros.core.platform import PlatformSpec, load_platform
from twill_ros.core.policies import POLICIES, make_policy
from twill_ros.core.power import (
    CAP_PROFILES,
    DEFAULT_CAPS_PROFILE,
    check_budget_w,
    check_caps_profile,
)
from twill_ros.core.profiler import Profiler
from twill_ros.core.scheduler import Scheduler
from twill_ros.sim.simulator import SimResult, simulate
from twill_ros.sim.workload import Workload, generate_jobs, load_workload

INF = float("inf")
BEST_CAPS = "best"              # run_comparison: every static-cap profile, the best run kept
COMPLETION_TOLERANCE = 0.01     # best_caps_run: completed counts this close (share of jobs) tie


@dataclass(frozen=True)
class Run:
    policy: str
    budget_w: float
    summary: dict
    result: SimResult | None    # the traces; None once dropped (Comparison.without_results)


@dataclass(frozen=True)
class Comparison:
    workload: Workload
    platform: str
    seed: int
    runs: tuple[Run, ...]
    profiler: Profiler | None = None    # the runs' catalog and platform (the platform may be
                                        # a file, not the named one); None once dropped

    def to_json(self) -> dict:
        """The ``compare`` JSON contract: workload, platform, seed, results."""
        return {"workload": self.workload.name, "platform": self.platform, "seed": self.seed,
                "results": [run.summary for run in self.runs]}

    def without_results(self) -> Comparison:
        """The same comparison with only the summaries (no records, traces or profiler):
        what is left to pass between processes once the plots and the record checks are
        done."""
        return replace(self, runs=tuple(replace(run, result=None) for run in self.runs),
                       profiler=None)

    def runs_at(self, budget: float) -> list[Run]:
        """The runs of one budget, in policy order."""
        return [run for run in self.runs if run.budget_w == budget]

    @property
    def budgets(self) -> tuple[float, ...]:
        return tuple(dict.fromkeys(run.budget_w for run in self.runs))

    @property
    def policies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(run.policy for run in self.runs))


def split_items(spec: str, flag: str) -> list[str]:
    """The stripped items of a comma-separated option value (none if it is blank). An empty
    item (``10,,20``) or one given twice is an error naming it: dropped or run twice
    without a word, it would hide a typo."""
    items = [item.strip() for item in spec.split(",")]
    if not any(items):
        return []
    if "" in items:
        raise ValueError(f"{flag} {spec.strip()!r} has an empty item")
    return _once(items, items, flag, spec)


def _once(values: list, items: list[str], flag: str, spec: str) -> list:
    """``values`` (parsed from ``items``) if none repeats an earlier one; else an error
    naming the repeated item."""
    for i, value in enumerate(values):
        if value in values[:i]:
            raise ValueError(f"{flag} {spec.strip()!r} gives {items[i]} twice")
    return values


def parse_policies(spec: str) -> tuple[str, ...]:
    """``all`` (every registered policy) or a comma-separated list of names."""
    if spec.strip() == "all":
        return tuple(POLICIES)
    return tuple(split_items(spec, "--policies"))


def parse_budgets(spec: str) -> tuple[float, ...]:
    """A comma-separated list of watt values, e.g. ``10,15,20`` (``10`` and ``10.0`` are
    the same budget)."""
    items = split_items(spec, "--budgets")
    values = []
    for item in items:
        try:
            values.append(float(item))
        except ValueError:
            raise ValueError(f"--budgets: {item!r} is not a number in watts "
                             "(e.g. 10,15,20)") from None
    return tuple(_once(values, items, "--budgets", spec))


def run_comparison(workload: str | Workload, platform: str, budgets: Sequence[float],
                   policies: Sequence[str], seed: int, progress: bool = False,
                   caps_profile: str = BEST_CAPS) -> Comparison:
    """Simulate every (budget, policy) pair; ``workload`` is a path, a bare scenario name or
    an already loaded Workload.

    A policy without a power controller runs on static caps under ``caps_profile``, by
    default under each of ``power.CAP_PROFILES`` with the best run kept (``best_caps_run``;
    its summary names the profile): an operator picks the nvpmodel-style mode that serves
    the deployment, so the baselines are compared at their best, not at a mode chosen for
    another workload."""
    if caps_profile != BEST_CAPS:
        check_caps_profile(caps_profile)
    unknown = [name for name in policies if name not in POLICIES]
    if unknown or not policies:
        raise ValueError(f"unknown policy {', '.join(unknown) or '(none)'}; "
                         f"choose from: {', '.join(POLICIES)}")
    if not budgets:
        raise ValueError("no power budget given")
    catalog = load_catalog()
    spec = load_platform(platform)
    for budget in budgets:
        check_budget_w(budget, spec)
    if not isinstance(workload, Workload):
        workload = load_workload(workload, catalog)
    jobs = generate_jobs(workload, seed)
    profiler = Profiler(catalog, spec)
    streams = tuple(s.name for s in workload.streams)
    runs = []
    total = len(budgets) * len(policies)
    for budget in budgets:
        for policy in policies:
            started = time.perf_counter()
            dvfs = make_policy(policy).dvfs
            tried = []
            for profile in _profiles(spec, catalog, policy, budget, dvfs, caps_profile):
                result = simulate(jobs, spec, catalog, policy, budget, seed, workload.duration_s,
                                  caps_profile=profile)
                summary = summarize(result.records, result.power_trace, policy=policy,
                                    budget_w=budget, profiler=profiler,
                                    duration_s=result.duration_s, streams=streams,
                                    static_caps=None if dvfs else profile,
                                    run_energy_j=result.energy_j)
                tried.append(Run(policy=policy, budget_w=budget, summary=summary, result=result))
            runs.append(best_caps_run(tried))
            if progress:
                print(f"[{len(runs)}/{total}] {workload.name}: {policy} @ {budget:g} W: "
                      f"{len(jobs)} jobs in {time.perf_counter() - started:.1f} s",
                      file=sys.stderr)
    return Comparison(workload=workload, platform=spec.name, seed=seed, runs=tuple(runs),
                      profiler=profiler)


def _profiles(spec: PlatformSpec, catalog: Catalog, policy: str, budget: float, dvfs: bool,
              caps_profile: str) -> tuple[str, ...]:
    """The static-cap profiles to run a policy under: one (unused) if it runs its own DVFS;
    with ``best``, every profile that gives it clocks of its own (a profile holding low
    only units the policy never uses, e.g. for ``gpu_fifo``, would repeat a run)."""
    if caps_profile != BEST_CAPS:
        return (caps_profile,)
    if dvfs:
        return (DEFAULT_CAPS_PROFILE,)
    distinct: dict[tuple, str] = {}
    for profile in CAP_PROFILES:
        clocks = Scheduler(spec, catalog, policy, budget, caps_profile=profile).static_clocks_hz
        distinct.setdefault(tuple(sorted(clocks.items())), profile)
    return tuple(distinct.values())


def best_caps_run(tried: Sequence[Run]) -> Run:
    """Which of a policy's runs under different static caps serves it best: the lowest mean
    latency among the runs that complete nearly as many jobs as the best of them (within
    COMPLETION_TOLERANCE of the jobs, so that a few requests cancelled at the drain limit do
    not outweigh a mean latency twice as high); ties keep the first profile."""
    most = max(run.summary["completed"] for run in tried)
    close = [run for run in tried
             if most - run.summary["completed"] <= COMPLETION_TOLERANCE * run.summary["jobs"]]
    return min(close, key=lambda run: _mean_ms(run.summary))


def _mean_ms(summary: dict) -> float:
    mean = summary["latency_ms"]["mean"]
    return INF if mean is None else mean
