"""The small interface every scheduling policy implements.

The scheduler owns the mechanics (per-unit queues, dispatch, freeze/unfreeze bookkeeping,
clocks); a policy only answers four questions, filter/score style:

* ``filter``  — which eligible units may this job use?
* ``level`` / ``subkey`` — in which order are a unit's queued jobs served? (higher level
  first; within a level ascending subkey; or, with ``dynamic_order``, highest ``urgency``)
* ``score``   — which unit should a job go to? (lowest score wins)
* traits — does it share a processor-shared unit, freeze, migrate, run its own DVFS?

A policy reads scheduler state only through the ``SchedulerView`` methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from twill_ros.core.catalog import ModelProfile
    from twill_ros.core.jobs import Job
    from twill_ros.core.scheduler import JobState


class SchedulerView(Protocol):
    """What a policy may ask the scheduler (all times in seconds, relative to now)."""

    now: float

    def estimate_s(self, js: JobState, unit: str) -> float:
        """Remaining run time of ``js`` alone on ``unit`` at its current clock."""

    def start_s(self, js: JobState, unit: str) -> float:
        """Expected wait before ``js`` could start on ``unit`` (running + work ahead of it)."""

    def displaced_s(self, js: JobState, unit: str) -> float:
        """Smith's-rule cost of ``js`` on ``unit``: its run time there x the weight of the
        less important queued work it would delay there within a period / its own weight."""

    def interference(self, unit: str) -> float:
        """Slowdown factor a job on ``unit`` would see from co-running units now (>= 1)."""

    def energy_j(self, js: JobState, unit: str) -> float:
        """Predicted dynamic energy of ``js`` on ``unit`` at its current clock."""

    def best_kind_units(self, model: str) -> tuple[str, ...]:
        """Eligible units of the model's fastest unit kind at max clocks (energy tie-break)."""

    def unit_kind(self, unit: str) -> str:
        """``gpu``, ``dla`` or ``cpu``."""


class Policy:
    """Base policy: every eligible unit, FIFO order, earliest expected finish (no
    interference term), no sharing, freezing, migration or DVFS."""

    name = "base"
    shares_processor = False     # run one job per stream concurrently on processor_shared units
    freezing = False             # freeze lower-priority preemptible jobs for higher ones
    priority_sharing = False     # start a job beside a running one on a shared unit (see scheduler)
    costed_sharing = False       # ... weighing gain against cost, also SRPT-style (scheduler)
    migration = False            # move queued/frozen jobs when another unit finishes sooner
    dvfs = False                 # own power controller; otherwise static caps (power.static_caps)
    aging_per_s = 0.0            # priority levels a waiting/frozen job gains per second
    dynamic_order = False        # serve the queued job with the highest urgency() instead

    def filter(self, job: Job, profile: ModelProfile, units: tuple[str, ...],
               view: SchedulerView) -> tuple[str, ...]:
        return units

    def level(self, job: Job) -> int:
        return 0

    def subkey(self, job: Job) -> tuple:
        return (job.submit_s,)

    def score(self, js: JobState, unit: str, view: SchedulerView) -> float:
        """Lower is better; must be >= ``view.estimate_s(js, unit)`` (the scheduler prunes
        units whose bare estimate already exceeds the best score)."""
        return view.start_s(js, unit) + view.estimate_s(js, unit)

    def urgency(self, js: JobState, unit: str, view: SchedulerView) -> float:
        """With ``dynamic_order``: the queued job with the highest urgency runs next."""
        raise NotImplementedError

    def used_units(self, models: Iterable[tuple[Job, ModelProfile, tuple[str, ...]]],
                   view: SchedulerView) -> set[str]:
        """Units this policy may put work on (static caps assume exactly these busy)."""
        return {u for job, profile, units in models for u in self.filter(job, profile, units, view)}
