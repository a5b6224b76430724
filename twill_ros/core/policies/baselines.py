"""Baseline policies. Each states its decision rule; none has a power controller, so each
runs with ``power.static_caps`` for the units it uses (highest clocks whose worst-case
power with those units fully busy fits the budget; ``power.CAP_PROFILES`` says which units
the budget goes to, and ``twill compare`` gives each baseline the profile that serves it
best). Estimates come from the same online profiler Twill uses, so every baseline sees the
same (refined) latencies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twill_ros.core.policies.base import Policy, SchedulerView

if TYPE_CHECKING:
    from twill_ros.core.catalog import ModelProfile
    from twill_ros.core.jobs import Job
    from twill_ros.core.scheduler import JobState

INF = float("inf")


class GpuFifo(Policy):
    """Status quo: every model on the GPU; each client stream runs its requests one at a time
    in arrival order (FIFO) and the GPU time-slices between streams (processor sharing:
    n running jobs each progress at 1/n speed); static nvpmodel-style clock caps chosen for
    the budget with only the GPU busy."""

    name = "gpu_fifo"
    shares_processor = True

    def filter(self, job: Job, profile: ModelProfile, units: tuple[str, ...],
               view: SchedulerView) -> tuple[str, ...]:
        return tuple(u for u in units if view.unit_kind(u) == "gpu")


class FcfsAffinity(Policy):
    """FCFS over a fixed, op-support-based affinity (the Twill paper's interpreter rule,
    papers.md §5): DLA-compatible models go to the DLAs, every other model to its fastest
    unit kind alone at max clock (energy breaks ties); among the units of that kind (e.g.
    dla0/dla1) the one with the earliest expected finish; each unit runs its jobs in arrival
    order, and the GPU time-slices between client streams as under ``gpu_fifo`` (each model
    served by its own process, as such a deployment runs)."""

    name = "fcfs_affinity"
    shares_processor = True

    def filter(self, job: Job, profile: ModelProfile, units: tuple[str, ...],
               view: SchedulerView) -> tuple[str, ...]:
        dlas = tuple(u for u in units if view.unit_kind(u) == "dla")
        if dlas:
            return dlas
        best = view.best_kind_units(job.model)
        return tuple(u for u in units if u in best)


class Edf(Policy):
    """Preemptive earliest deadline first: each unit serves its queue by absolute deadline
    (jobs without one after all that have one, then by arrival); a job goes to the best
    available unit, i.e. the eligible one where it is expected to finish first (running
    remainder + queued work + its estimate there). Preemption goes as far as the platform
    allows, for a job with a deadline over running work without one: such a job freezes a
    running LLM job at its next step boundary, and on the GPU starts at once beside the
    running work on a higher-priority stream (~90 % of the GPU); a DNN inference is never
    stopped. Between jobs that both have a deadline there is no preemption."""

    name = "edf"
    freezing = True
    priority_sharing = True

    def level(self, job: Job) -> int:
        return 0 if job.absolute_deadline_s is None else 1

    def subkey(self, job: Job) -> tuple:
        dl = job.absolute_deadline_s
        return (INF if dl is None else dl, job.submit_s)


class MinFinish(Policy):
    """HEFT-like greedy: in arrival order, each job goes to the eligible unit with the
    earliest expected finish time (queued work + running remainder + its estimate there)."""

    name = "min_finish"


class Dream(Policy):
    """Score-based scheduling after DREAM (Kim et al., ASPLOS'23) — OUR APPROXIMATION: the
    paper's exact UXCost and score terms are not public (papers.md §3).

    * Unit: the eligible unit minimising a UXCost-like energy-delay product
      ``expected finish x (energy there / least energy over eligible units) ** beta``.
    * Order: when a unit frees it runs the queued job with the highest urgency score
      ``(1 + priority / 64) * (waited + estimate) / slack``, slack = relative deadline or
      ``default_slack_s`` — i.e. load-, deadline- and priority-aware, re-scored at every
      decision. ``beta`` and ``default_slack_s`` are DREAM's tunable knobs.
    """

    name = "dream"
    dynamic_order = True

    def __init__(self, beta: float = 0.3, default_slack_s: float = 1.0) -> None:
        self.beta = beta
        self.default_slack_s = default_slack_s

    def score(self, js: JobState, unit: str, view: SchedulerView) -> float:
        energies = {u: view.energy_j(js, u) for u in js.units}
        least = min(energies.values())
        ratio = energies[unit] / least if least > 0 else 1.0
        return (view.start_s(js, unit) + view.estimate_s(js, unit)) * ratio ** self.beta

    def urgency(self, js: JobState, unit: str, view: SchedulerView) -> float:
        slack = js.job.deadline_s or self.default_slack_s
        waited = view.now - js.job.submit_s
        return js.weight * (waited + view.estimate_s(js, unit)) / slack
