"""The Twill policy (DESIGN.md §3) and its ablations (the same class with a feature off)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twill_ros.core.jobs import JobStatus
from twill_ros.core.policies.base import Policy, SchedulerView

if TYPE_CHECKING:
    from twill_ros.core.jobs import Job
    from twill_ros.core.scheduler import JobState

INF = float("inf")


class TwillPolicy(Policy):
    """Affinity-aware earliest-finish mapping with migration, priority-aware freezing with
    ageing, and a DVFS power controller. Ablations switch one feature off: ``freezing=False``
    removes all preemption of running work (freezing and priority-stream sharing),
    ``migration=False`` keeps jobs where they were mapped, ``dvfs=False`` runs on static caps.

    * Order: priority (higher first), then earliest absolute deadline, then arrival; a
      waiting or frozen job gains ``aging_per_s`` priority levels per second (2: a job 100
      levels down overtakes a fresh arrival after 50 s of waiting), so low-priority work is
      delayed but never starved; once it runs on the GPU, more important arrivals still
      start beside it with ~90 % of the unit, so real-time streams keep winning (ageing
      decides who gets a unit when it frees, never who may start beside running work).
    * Mapping: every eligible unit (affinity = the profiler's latency/energy estimates, which
      it refines online) scored by expected finish = wait for work at the job's priority or
      above + the estimate x the GPU<->DLA interference the job would suffer there now; a
      lower-priority preemptible (LLM) job holding a unit costs only its current step;
      plus, by Smith's rule, the job's run time there x the weight of the less important
      queued work it would delay there within one control period / its own weight, so a
      job with a near-equal alternative leaves a contended unit to work that has none.
    * Freezing: mapping a job to a unit held by such a job freezes it at its next step
      boundary; on the (processor-shared) GPU the new job starts at once beside it on a
      high-priority stream (~90 % of the GPU) until the boundary. A short job may likewise
      start beside a long running DNN (SRPT-style bypass, bounded for less important jobs).
      A more important job starts beside a running DNN only when the priority-weighted time
      it saves exceeds what it costs that DNN, so it still waits for one about to finish.
      The frozen job resumes (by aged priority) when the unit frees, or moves to an idle
      unit that finishes it sooner.
    * A job waiting on a unit is expected to wait at least as long again as it already has
      (a snapshot of the queue cannot see the more important work that keeps arriving), so
      an idle unit that beats that pulls it: e.g. an LLM starved on a GPU held by real-time
      streams moves to an idle CPU cluster once it has waited as long as the CPU needs.
    * Migration: on every tick and whenever a unit goes idle, queued jobs move to a unit that
      finishes them sooner by a margin.
    * DVFS: ``core.power.DvfsController`` every tick (priority-weighted progress per watt
      under budget - margin for the expected duty cycle, each job's weight counted at the
      share of its work a clock step buys on its unit, i.e. the unit's speed for it
      relative to its fastest unit (in full when less important work it can neither freeze
      nor start beside holds that unit), and of a queue longer than a period only the jobs one
      period gets through, in serve order; measured-error correction, idle
      units parked at their lowest clocks while busy ones need the headroom and otherwise
      kept ready at the highest clock that fits, the leftover headroom spent by running one
      clock step higher for part of the period); re-planned at once when work lands on a
      parked unit or a long job starts; under overshoot it cannot absorb, the
      lowest-priority preemptible job is frozen until the budget allows it again.
    """

    costed_sharing = True

    def __init__(self, name: str = "twill", *, freezing: bool = True, migration: bool = True,
                 dvfs: bool = True, aging_per_s: float = 2.0) -> None:
        self.name = name
        self.freezing = freezing
        self.priority_sharing = freezing    # sharing is the other half of preemption
        self.migration = migration
        self.dvfs = dvfs
        self.aging_per_s = aging_per_s

    def level(self, job: Job) -> int:
        return job.priority

    def subkey(self, job: Job) -> tuple:
        dl = job.absolute_deadline_s
        return (INF if dl is None else dl, job.submit_s)

    def score(self, js: JobState, unit: str, view: SchedulerView) -> float:
        wait = view.start_s(js, unit)
        if js.unit == unit and js.status is not JobStatus.RUNNING:
            # a job already waiting here: a snapshot of the work ahead cannot see the
            # higher-priority work that keeps arriving, so expect to wait at least as long
            # again as it already has (an idle unit that beats that takes it: see migration)
            wait = max(wait, view.now - js.queued_s)
        # Smith's rule: also what running here costs the less important work it delays
        return (wait + view.estimate_s(js, unit) * view.interference(unit)
                + view.displaced_s(js, unit))
