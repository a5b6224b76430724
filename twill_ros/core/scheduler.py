"""The scheduler: a deterministic state machine from events to actions.

``Scheduler.handle(event) -> list[Action]`` is the only entry point. It never reads a clock
or sleeps: every event carries its time. The scheduler owns the mechanics shared by all
policies — admission, one ordered queue per unit (per priority level), dispatch, freeze and
unfreeze bookkeeping, migration, clock setting, terminal records — and asks its ``Policy``
(``core/policies``) only where a job may run, in which order and which unit is best.

Driver contract (the twin, the ROS node and tests all follow it):

* feed ``JobArrived`` for every submission, ``JobFinished`` when a dispatched job ends,
  ``StepFinished(tokens=0)`` at an LLM's prefill end, ``StepFinished(tokens=1)`` at its
  first token and ``StepFinished(tokens=k)`` at least for its last token (an LLM may stop
  before ``max_new_tokens``, at its end-of-sequence token: the record keeps what was
  generated), ``JobFrozen`` when a ``Freeze`` took effect, ``PowerSample`` for every module
  power reading, ``Tick`` every ``tick_period_s`` and ``CancelRequested``/``BudgetChanged``
  when they happen;
* apply the returned actions in order: ``Dispatch`` (start the job on the unit), ``Freeze``
  (stop at the next step boundary, keep state), ``WithdrawFreeze`` (a Freeze not yet taken
  effect is off: run on), ``Unfreeze`` (resume on the unit),
  ``Migrate`` (advisory for queued jobs; precedes ``Unfreeze`` for frozen ones),
  ``SetFrequency``, ``Cancel`` (stop and drop a running/frozen job), ``Reject``; and hand
  every ``Complete(record)`` to the client — it is the job's one terminal record.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twill_ros.core import power as pw
from twill_ros.core.catalog import Catalog, ModelProfile
from twill_ros.core.events import (
    Action,
    BudgetChanged,
    Cancel,
    CancelRequested,
    Complete,
    Dispatch,
    Event,
    Freeze,
    JobArrived,
    JobFinished,
    JobFrozen,
    Migrate,
    PowerSample,
    Reject,
    SetFrequency,
    StepFinished,
    Tick,
    Unfreeze,
    WithdrawFreeze,
)
from twill_ros.core.jobs import Job, JobRecord, JobStatus
from twill_ros.core.platform import PlatformSpec, UnitSpec
from twill_ros.core.policies import make_policy
from twill_ros.core.policies.base import Policy
from twill_ros.core.profiler import Profiler, decode_passes, llm_tokens
from twill_ros.native import mypyc_attr

INF = float("inf")
PRIORITY_SCALE = 64.0     # DVFS weight of a job = 1 + priority / 64 (priority 255 ~ 5x priority 0)
MIGRATE_MARGIN = 0.15     # move only when the other unit finishes >= 15 % sooner ...
MIGRATE_MIN_S = 0.002     # ... and by at least 2 ms (a move is not free: engine switch, cache)
PRIORITY_SHARE = 9.0      # priority-stream weight of a job started beside another (~90 % of GPU)
MAX_SHARED = 3            # jobs at once on a processor-shared unit under priority sharing
BYPASS_FRACTION = 0.25    # a less important job may bypass one <= 4x its length (<= +25 % to it)
BOOST_MIN_FRACTION = 0.2  # boost one step for >= 20 % of a period, else not worth 2 switches
DUTY_LONG = 0.5           # work >= half a control period ahead: budget the unit as fully busy
DUTY_HEADROOM = 1.5       # otherwise budget 1.5 x the recent duty cycle + 10 %
DUTY_FLOOR = 0.1
DUTY_ALPHA = 0.5
DEMAND_DECAY = 0.5        # per control period: a unit idle ~0.5 s after its last work parks
MIN_DEMAND = 0.05
# A job held for power that cannot fit even alone at the lowest clocks runs one period at
# least this often: delayed, never starved (DESIGN.md section 3), and over the budget in
# at most about one 100 ms window per this time (the evaluation allows 1 % of windows).
POWER_HOLD_MAX_S = 10.0


PREFILL_CHUNK_TOKENS = 64  # LLM prefill runs in chunks of this many prompt tokens (chunked
#                            prefill as in llama.cpp micro-batches / TensorRT-LLM chunked
#                            context); each chunk end is a step boundary where a freeze applies


@mypyc_attr(serializable=True)     # mypyc: deep-copyable (its __init__ takes arguments)
class JobState:
    """The scheduler's live view of one admitted job.

    A plain class, not a dataclass: mypyc compiles this ``__init__`` and the defaults below,
    while a dataclass's generated ``__init__`` would run interpreted, once per job."""

    prompt: int = 0
    new_tokens: int = 0
    unit: str = ""                  # queue it waits in / unit it runs or is frozen on
    queued_s: float = 0.0           # when it entered its current queue / froze (ageing base)
    est_s: float = 0.0              # estimate counted in its queue's backlog
    run_since: float = 0.0
    expected_end: float = 0.0
    clean: bool = True              # ran alone at one clock since (re)dispatch: observable
    interf_acc: float = 0.0         # integral of the interference factor over the run
    interf_t: float = 0.0
    interf_now: float = 1.0
    age_bonus: float = 0.0          # priority levels gained by waiting (kept while running)
    prefill_done: bool = False
    prefill_left: float = 1.0       # share of the prompt still to prefill (kept across freezes)
    prefill_end_s: float = 0.0      # exec time at prefill end (decode_s = exec_s - this)
    prefill_end_abs: float = 0.0
    tokens: int = 0
    freeze_pending: bool = False
    power_hold: bool = False        # frozen by the power controller
    share: float = 1.0              # throughput weight on a processor-shared unit (Dispatch.share)
    util: float = 0.0               # its utilisation of the unit it runs on (power model)
    home: UnitState | None = None   # unit whose demand aggregates count this job
    home_w: float = 0.0             # its DVFS weight there (weight x the unit's relative speed)

    def __init__(self, job: Job, record: JobRecord, profile: ModelProfile,
                 units: tuple[str, ...], level: int, key: tuple) -> None:
        self.job = job
        self.record = record
        self.profile = profile
        self.units = units              # units the policy allows
        self.level = level              # queue level (higher served first)
        self.key = key                  # order within the level (unique: ends with a sequence no.)
        self.status = JobStatus.QUEUED  # (mypyc takes no enum member as a class-level default)
        self.llm = profile.is_llm       # plain attributes: read in every hot loop
        self.priority = job.priority
        self.weight = 1.0 + job.priority / PRIORITY_SCALE    # its DVFS weight


@dataclass(eq=False, slots=True)
class UnitState:
    """The scheduler's view of one unit: what runs, waits and is frozen there, its clocks,
    and the running aggregates the DVFS controller and the power-model correction read."""

    spec: UnitSpec
    freq_hz: int
    shared: bool                    # several jobs may run (processor-shared and policy shares)
    priority_stream: bool           # a job may start beside running ones (priority_sharing)
    victim_of: tuple[tuple[str, float], ...]   # (aggressor kind, factor)
    name: str = field(init=False)
    running: list[JobState] = field(default_factory=list)
    frozen: list[JobState] = field(default_factory=list)
    queues: dict[int, list[tuple[tuple, JobState]]] = field(default_factory=dict)
    backlog: dict[int, float] = field(default_factory=dict)   # level -> sum of est_s
    level_w: dict[int, float] = field(default_factory=dict)   # level -> sum of weight
    level_hw: dict[int, float] = field(default_factory=dict)  # level -> sum of home_w
    backlog_total: float = 0.0      # sum over levels
    queued: int = 0
    levels: list[int] = field(default_factory=list)             # descending
    eligible: dict[str, int] = field(default_factory=dict)  # unit -> queued jobs allowed there
    heads: list[tuple[float, int, int, JobState]] = field(default_factory=list)  # _next_queued
    work_freq_hz: int = 0           # clock estimates assume (== freq_hz unless parked)
    parked: bool = False            # no work: at its lowest or a ready clock (power.py)
    busy_since: float | None = None
    busy_acc: float = 0.0           # busy time in the current control period
    cmd_freq_hz: int = 0            # clock last commanded (planned, or boosted)
    energy_acc: float = 0.0         # modelled energy in the current period (J)
    energy_t: float = 0.0
    util_now: float = 0.0
    model_w: float = 0.0            # modelled power at cmd_freq_hz and util_now (see _set_load)
    dnn_est: dict[str, float] = field(default_factory=dict)     # model -> DNN estimate_s here
    dnn_parked_est: dict[str, float] = field(default_factory=dict)  # ... while parked and idle
    memory: tuple[float, float, float] = (0.0, 0.0, 0.0)   # decaying (weight, util, sens)
    wanted: tuple[float, float, float] = (0.0, 0.0, 0.0)   # last demand (weight, util, sens)
    weight: float = 0.0             # DVFS weight of the jobs queued/running/frozen here
    models: dict[str, int] = field(default_factory=dict)    # their models (util/sensitivity)
    traits: tuple[float, float] | None = None   # max (util, sensitivity) over models, cached
    duty: float = 0.0               # EWMA of the busy share of control periods
    period_weight: float = 0.0      # max DVFS weight / util / sensitivity of jobs started
    period_util: float = 0.0        # since the last control tick
    period_sens: float = 0.0
    duty_last: float = 0.0          # busy share of the last period
    planned_duty: float = 1.0       # duty cycle the current clocks were planned for

    def __post_init__(self) -> None:
        self.name = self.spec.name      # a plain attribute: read in every hot loop

    @property
    def idle(self) -> bool:
        return not self.running and not self.queued


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)   # mypyc: deep-copyable
class Scheduler:
    """Event-driven scheduler (see module docstring for the driver contract)."""

    def __init__(self, platform: PlatformSpec, catalog: Catalog, policy: str | Policy,
                 budget_w: float, seed: int = 0, *, profiler: Profiler | None = None,
                 max_queue: int = 1000, tick_period_s: float = 0.1,
                 fixed_clocks_hz: Mapping[str, int] | None = None,
                 caps_profile: str = pw.DEFAULT_CAPS_PROFILE) -> None:
        self.platform = platform
        # Units whose clock the driver cannot set (a Jetson's DLAs run at their nvpmodel cap):
        # estimates and the power budget use that clock, and no policy plans it.
        self.fixed_clocks_hz = {name: platform.unit(name).snap(int(hz))
                                for name, hz in (fixed_clocks_hz or {}).items()}
        self.catalog = catalog
        self.policy = make_policy(policy) if isinstance(policy, str) else policy
        self.caps_profile = pw.check_caps_profile(caps_profile)   # static caps (no dvfs)
        self.budget_w = budget_w
        self.seed = seed        # decisions are deterministic and draw no random numbers
        self.profiler = profiler or Profiler(catalog, platform)
        self.max_queue = max_queue
        self.tick_period_s = tick_period_s
        self.now = 0.0
        self.jobs: dict[str, JobState] = {}
        self._seq = 0
        self._pushes = 0                            # level-head index entries (_new_head)
        self._queued_total = 0
        self._started = False
        kinds = {u.kind for u in platform.units}
        self.units: dict[str, UnitState] = {}
        for spec in platform.units:
            victim_of = tuple((i.aggressor, i.factor) for i in platform.interference
                              if i.victim == spec.kind and i.aggressor in kinds)
            fixed = self.fixed_clocks_hz.get(spec.name)
            self.units[spec.name] = UnitState(
                spec=spec, freq_hz=fixed or spec.min_frequency_hz, victim_of=victim_of,
                shared=self.policy.shares_processor and spec.sharing == "processor_shared",
                priority_stream=(self.policy.priority_sharing
                                 and spec.sharing == "processor_shared"),
                work_freq_hz=fixed or spec.max_frequency_hz)
        self._kind_busy = dict.fromkeys(kinds, 0)
        self._victims = {k: [u for u in self.units.values() if any(a == k for a, _ in u.victim_of)]
                         for k in kinds}
        self._est_cache: dict[tuple[str, str], dict[tuple, float]] = {}
        self._best_kind: dict[str, tuple[str, ...]] = {}
        self._ahead: dict[JobState, float] = {}   # queue position cache during _rebalance
        self._parked_cache: dict[tuple[str, str, str], float] = {}
        self._traits: dict[tuple[str, str], tuple[float, float]] = {}
        self._dyn_w: dict[tuple[str, int, float], float] = {}   # _dynamic_w
        self._rel: dict[tuple[str, str], float] = {}            # _rel_speed
        for u in self.units.values():
            self._set_load(u, u.cmd_freq_hz, u.util_now)
        self._replan = False                        # a parked unit got work: re-plan clocks
        self._power_held = 0                        # jobs frozen by the power controller
        self._boost: pw.Boost | None = None         # intra-period clock boost in progress
        self._boost_until = 0.0
        self._power_sum = 0.0
        self._power_n = 0
        self._period_start = 0.0
        self.controller = (pw.DvfsController(platform, budget_w, fixed_hz=self.fixed_clocks_hz)
                           if self.policy.dvfs else None)
        self._static = self._static_caps() if not self.policy.dvfs else {}

    # ------------------------------------------------------------------ entry point

    def handle(self, event: Event) -> list[Action]:
        """Apply one event at time ``event.t``; return the actions the driver must apply."""
        self.now = event.t
        out: list[Action] = []
        if not self._started:
            self._started = True
            self._period_start = event.t
            for u in self.units.values():
                u.energy_t = event.t
            if self._static:
                self._set_clocks(self._static, out, force=True)
            else:
                self._apply_plan(out, force=True)
        _HANDLERS[type(event)](self, event, out)
        if self._replan:
            self._replan = False
            if self._boost is not None:
                self._end_boost(out)
            self._apply_plan(out)
        return out

    @property
    def live_jobs(self) -> int:
        return len(self.jobs)

    @property
    def power_held(self) -> int:
        """Jobs the power controller holds frozen because even the lowest clocks would not
        fit the budget with them running (they run again in turns, see ``_power_release``)."""
        return self._power_held

    @property
    def static_clocks_hz(self) -> dict[str, int]:
        """The static caps a policy without DVFS runs on (empty for one with DVFS)."""
        return dict(self._static)

    @property
    def static_caps(self) -> str | None:
        """The static-cap profile the policy runs on; None for a policy with its own DVFS."""
        return None if self.controller is not None else self.caps_profile

    # ------------------------------------------------------------------ estimates (view)

    def _phase_s(self, model: str, unit: UnitState, tokens: int, phase: str) -> float:
        """Profiler estimate at the unit's working clock (a parked unit: the clock it had
        when last busy, which the controller restores as soon as work lands on it)."""
        cache = self._est_cache.get((model, unit.name))
        if cache is None:
            cache = self._est_cache[(model, unit.name)] = {}
        f = unit.work_freq_hz
        key = (f, tokens, phase)
        v = cache.get(key)
        if v is None:
            v = cache[key] = self.profiler.estimate_s(model, unit.name, f, tokens, phase)
        return v

    def estimate_s(self, js: JobState, unit: str) -> float:
        """Remaining run time of ``js`` alone on ``unit`` at its working clock; on a parked
        unit the first ``dvfs_transition_s`` run at the parked clock."""
        u = self.units[unit]
        if js.llm:
            return self._estimate(js, u)
        cache = u.dnn_parked_est if u.parked and not u.running else u.dnn_est
        v = cache.get(js.job.model)
        if v is None:
            v = cache[js.job.model] = self._estimate(js, u)
        return v

    def _estimate(self, js: JobState, u: UnitState) -> float:
        if not js.llm:
            t = self._phase_s(js.job.model, u, 0, "job")
        else:
            # the prefill gives token 1; a job at k tokens has new - k decode passes left
            t = ((js.new_tokens - max(js.tokens, 1))
                 * self._phase_s(js.job.model, u, 1, "decode"))
            if not js.prefill_done:
                t += js.prefill_left * self._phase_s(js.job.model, u, js.prompt, "prefill")
        if u.parked and not u.running:
            slow = t * self._parked_slowdown(js, u)
            ramp = self.platform.dvfs_transition_s
            t = slow if slow <= ramp else ramp + t * (1.0 - ramp / slow)
        return t

    def _parked_slowdown(self, js: JobState, u: UnitState) -> float:
        phase = "decode" if js.llm else "job"
        key = (js.job.model, u.name, phase)
        v = self._parked_cache.get(key)
        if v is None:
            f = u.freq_hz       # the parked clock: the lowest, or one the headroom allows
            p = self.profiler
            v = self._parked_cache[key] = (p.estimate_s(js.job.model, u.name, f, 1, phase)
                                           / p.estimate_s(js.job.model, u.name, u.work_freq_hz,
                                                          1, phase))
        return v

    def _step_s(self, js: JobState, u: UnitState) -> float:
        """Expected time until a running preemptible job reaches its next step boundary
        (the end of its current prefill chunk or decode step)."""
        if not js.prefill_done:
            step = self._phase_s(js.job.model, u, PREFILL_CHUNK_TOKENS, "prefill")
            since = self.now - js.run_since
        else:
            step = self._phase_s(js.job.model, u, 1, "decode")
            since = self.now - max(js.run_since, js.prefill_end_abs)
        step *= js.interf_now
        return step - since % step

    def _remaining_s(self, js: JobState) -> float:
        return max(js.expected_end - self.now, 0.1 * js.est_s)

    def _running_left_s(self, u: UnitState) -> float:
        return sum(self._remaining_s(r) for r in u.running)

    def _effective_level(self, js: JobState) -> float:
        """Level + ageing: a job gains ``aging_per_s`` levels per second while it waits
        (queued or frozen) and keeps what it gained while it runs."""
        if js.status is JobStatus.RUNNING:
            return js.level + js.age_bonus
        return js.level + js.age_bonus + self.policy.aging_per_s * (self.now - js.queued_s)

    def _yields_to(self, js: JobState, other: JobState) -> bool:
        """Would the policy freeze running ``js`` for ``other``?"""
        return (self.policy.freezing and js.llm and not js.freeze_pending
                and self._effective_level(js) < other.level)

    def start_s(self, js: JobState, unit: str) -> float:
        """Expected wait before ``js`` could start on ``unit``: running work it cannot
        preempt (a preemptible lower-priority job costs only its current step), frozen jobs
        that would resume before it, and queued work ahead of it (its level or above; for a
        job already queued there, exactly the jobs ahead of it)."""
        u = self.units[unit]
        wait = 0.0
        sharing = self._room_beside(u)
        active = 0
        for r in u.running:
            if r.freeze_pending or self._yields_to(r, js):
                step = self._step_s(r, u)
                if sharing:     # starts at once beside it on a priority stream until the boundary
                    step = min(step, self.estimate_s(js, unit)) / PRIORITY_SHARE
                wait += step
            elif sharing and active == 0 and self._short_enough(js, r, u, self._remaining_s(r)):
                active += 1
                wait += self.estimate_s(js, unit) / PRIORITY_SHARE    # short-job bypass
            else:
                active += 1
                wait += self._remaining_s(r)
        if u.shared and u.running:
            wait /= len(u.running)
        # frozen work resuming before js holds it back, unless js may then start beside the
        # job that resumes first (as _fill lets it): a short job waits for no frozen LLM
        thaw = self._thaw(u)
        if thaw is None or thaw is js or not (
                u.priority_stream
                and self._short_enough(js, thaw, u, self.estimate_s(thaw, unit))):
            for f in u.frozen:
                if f is not js and self._effective_level(f) >= js.level:
                    wait += self.estimate_s(f, unit)
        if js.unit == unit and js.status is JobStatus.QUEUED:
            ahead = self._ahead.get(js)
            return wait + (self._ahead_scan(js, u) if ahead is None else ahead)
        if js.unit == unit and js.status is JobStatus.FROZEN:
            return wait + self._ahead_scan(js, u)   # resumes before later jobs of its level
        for lvl in u.levels:
            if lvl < js.level:
                break
            wait += u.backlog[lvl]
        return wait

    def displaced_s(self, js: JobState, unit: str) -> float:
        """Smith's-rule cost of putting ``js`` on ``unit``: its run time there x the priority
        weight of the less important queued work it would delay there (the work the unit
        would otherwise get through in one control period), in units of its own weight."""
        w = self._served(self.units[unit], js.level, dvfs=False)
        return self.estimate_s(js, unit) * w / js.weight if w else 0.0

    def _served(self, u: UnitState, below: float, dvfs: bool) -> float:
        """Weight of the queued jobs below level ``below`` that ``u`` gets through in one
        control period, in serve order (levels high to low; of the level it reaches last,
        the share of its work that fits): each job's DVFS weight there (``dvfs``) or its
        priority weight. Per level, not per job: a tick reads it for every unit."""
        w = 0.0
        left = self.tick_period_s
        sums = u.level_hw if dvfs else u.level_w
        for lvl in u.levels:
            if lvl >= below:
                continue
            b = u.backlog[lvl]
            if b >= left:
                return w + sums[lvl] * left / b
            w += sums[lvl]
            left -= b
        return w

    def _ahead_scan(self, js: JobState, u: UnitState) -> float:
        """Queued work served before ``js`` (queued or frozen on ``u``): higher levels, then
        its own level in key order."""
        ahead = 0.0
        for lvl in u.levels:
            if lvl > js.level:
                ahead += u.backlog[lvl]
                continue
            if lvl == js.level:
                for key, other in u.queues[lvl]:
                    if key >= js.key:
                        break
                    ahead += other.est_s
            break
        return ahead

    def unit_kind(self, unit: str) -> str:
        return self.units[unit].spec.kind

    def interference(self, unit: str) -> float:
        u = self.units[unit]
        factor = 1.0
        for kind, f in u.victim_of:
            busy = self._kind_busy[kind] - (1 if kind == u.spec.kind and u.running else 0)
            if busy > 0:
                factor *= f
        return factor

    def energy_j(self, js: JobState, unit: str) -> float:
        u = self.units[unit]
        util = self._model_traits(js.job.model, u.spec.kind)[0]
        return self._dynamic_w(u, util) * self.estimate_s(js, unit)

    def _dynamic_w(self, u: UnitState, util: float) -> float:
        """Dynamic power of work with utilisation ``util`` on ``u`` at its clock (cached:
        read at every run end)."""
        key = (u.name, u.freq_hz, util)
        v = self._dyn_w.get(key)
        if v is None:
            v = self._dyn_w[key] = (pw.unit_power_w(u.spec, u.freq_hz, util)
                                    - pw.unit_power_w(u.spec, u.freq_hz, 0.0))
        return v

    def best_kind_units(self, model: str) -> tuple[str, ...]:
        """Eligible units of the fastest unit kind at max clock (lower energy breaks ties)."""
        best = self._best_kind.get(model)
        if best is None:
            elig = self.profiler.eligible_units(model)
            profile = self.catalog.get(model)
            job = _probe_job(profile)

            def rank(name: str) -> tuple[float, float]:
                spec = self.platform.unit(name)
                lat = self.profiler.job_s(job, name, spec.max_frequency_hz)
                util = profile.utilization.get(spec.kind, 1.0)
                return (round(lat, 9), lat * spec.power.dynamic_max_w * util)

            top = min((rank(n) for n in elig), default=None)
            kind_top = {self.platform.unit(n).kind for n in elig if rank(n) == top}
            best = self._best_kind[model] = tuple(
                n for n in elig if self.platform.unit(n).kind in kind_top)
        return best

    # ------------------------------------------------------------------ queues

    def _enqueue(self, js: JobState, unit: str) -> None:
        u = self.units[unit]
        js.unit = unit
        js.status = JobStatus.QUEUED
        js.queued_s = self.now
        js.est_s = self.estimate_s(js, unit)
        q = u.queues.get(js.level)
        if q is None:
            q = u.queues[js.level] = []
            u.backlog[js.level] = u.level_w[js.level] = u.level_hw[js.level] = 0.0
            u.levels.append(js.level)
            u.levels.sort(reverse=True)
        bisect.insort(q, (js.key, js))
        if q[0][1] is js:
            self._new_head(u, js)
        u.backlog[js.level] += js.est_s
        u.backlog_total += js.est_s
        u.queued += 1
        for n in js.units:
            u.eligible[n] = u.eligible.get(n, 0) + 1
        self._attach(js, u)
        u.level_w[js.level] += js.weight
        u.level_hw[js.level] += js.home_w
        self._queued_total += 1

    def _attach(self, js: JobState, u: UnitState) -> None:
        """Count ``js`` in ``u``'s demand aggregates (once, whatever its state there)."""
        if js.home is u:
            return
        self._detach(js)
        js.home = u
        rel = self._rel_speed(js.job.model, u)
        if rel < 1.0 and self._held_by_less_important(js, u):
            rel = 1.0       # its fastest unit is no alternative: a step here is its progress
        js.home_w = js.weight * rel
        u.weight += js.home_w
        n = u.models.get(js.job.model, 0)
        u.models[js.job.model] = n + 1
        if not n and u.traits is not None:     # a max over models: a new one just joins it
            util, sens = self._model_traits(js.job.model, u.spec.kind)
            u.traits = (max(u.traits[0], util), max(u.traits[1], sens))

    def _detach(self, js: JobState) -> None:
        u = js.home
        if u is None:
            return
        js.home = None
        u.weight -= js.home_w
        n = u.models[js.job.model] - 1
        if n:
            u.models[js.job.model] = n
        else:
            del u.models[js.job.model]
            u.traits = None
            if not u.models:
                u.weight = 0.0      # no float drift when the unit empties

    def _dequeue(self, js: JobState) -> None:
        u = self.units[js.unit]
        q = u.queues[js.level]
        i = bisect.bisect_left(q, (js.key,))
        assert q[i][1] is js
        del q[i]
        u.queued -= 1
        for n in js.units:
            u.eligible[n] -= 1
        self._queued_total -= 1
        u.backlog_total = u.backlog_total - js.est_s if u.queued else 0.0
        if q:
            u.backlog[js.level] -= js.est_s
            u.level_w[js.level] -= js.weight
            u.level_hw[js.level] -= js.home_w
            if i == 0:
                self._new_head(u, q[0][1])
        else:
            del u.queues[js.level]
            del u.backlog[js.level], u.level_w[js.level], u.level_hw[js.level]
            u.levels.remove(js.level)
            if not u.levels:
                u.heads.clear()

    def _new_head(self, u: UnitState, js: JobState) -> None:
        """``js`` now heads its level's queue: index it by its aged level for _next_queued."""
        rate = self.policy.aging_per_s
        if rate > 0.0 and not self.policy.dynamic_order:
            v = js.level + js.age_bonus - rate * js.queued_s
            self._pushes += 1       # unique: a job may head its level more than once
            heapq.heappush(u.heads, (-v, -js.level, self._pushes, js))

    def _next_queued(self, u: UnitState) -> JobState | None:
        """Head of the level whose head has the highest aged level (ties: higher level), or
        with a dynamic-order policy the queued job with the highest urgency."""
        if not u.levels:
            return None
        if self.policy.dynamic_order:
            return max((js for lvl in u.levels for _, js in u.queues[lvl]),
                       key=lambda j: self.policy.urgency(j, u.name, self))
        queues = u.queues
        rate = self.policy.aging_per_s
        if rate == 0.0 or len(u.levels) == 1:
            return queues[u.levels[0]][0][1]
        # aged level = level + bonus + rate * (now - queued_s): the rate * now term is common
        # to all waiting jobs, so compare level + bonus - rate * queued_s (time-invariant).
        # u.heads holds every level head so indexed (a heap: highest value, then highest
        # level, first); entries of jobs no longer heading their level are dropped here.
        heads = u.heads
        while True:
            neg_v, neg_level, _, js = heads[0]
            q = queues.get(-neg_level)
            if (q is not None and q[0][1] is js
                    and -neg_v == js.level + js.age_bonus - rate * js.queued_s):
                return js
            heapq.heappop(heads)

    # ------------------------------------------------------------------ run bookkeeping

    def _start_run(self, js: JobState, u: UnitState, share: float = 1.0) -> None:
        now = self.now
        self._account_power(u)
        js.share = share
        self._attach(js, u)
        if not u.running:
            self._kind_busy[u.spec.kind] += 1
            u.busy_since = now
            self._interference_changed(u.spec.kind)
        else:
            self._account_busy(u)
            for r in u.running:
                r.clean = False
            js.clean = False
        js.age_bonus += self.policy.aging_per_s * (now - js.queued_s)
        js.status = JobStatus.RUNNING
        js.unit = u.name
        js.run_since = now
        est = self.estimate_s(js, u.name)
        util, sens = self._model_traits(js.job.model, u.spec.kind)
        js.util = util
        u.period_weight = max(u.period_weight, js.home_w)
        u.period_util = max(u.period_util, util)
        u.period_sens = max(u.period_sens, sens)
        if self.controller is not None and (u.parked or (
                u.planned_duty < 1.0 and est >= DUTY_LONG * self.tick_period_s)):
            self._replan = True     # clocks were planned for an idle / lightly used unit
        js.interf_now = self.interference(u.name)
        js.interf_acc = 0.0
        js.interf_t = now
        if u.running and not u.shared:      # beside other jobs on a priority stream
            overlap = max(self._step_s(r, u) if r.freeze_pending else self._remaining_s(r)
                          for r in u.running)
            js.expected_end = (now + est * js.interf_now
                               + min(overlap, est * js.interf_now) / PRIORITY_SHARE)
            for r in u.running:
                r.expected_end += est * js.interf_now    # they yield the unit meanwhile
        else:
            js.expected_end = now + est * js.interf_now * (len(u.running) + 1 if u.shared else 1)
        js.est_s = est
        u.running.append(js)
        self._set_load(u, u.cmd_freq_hz, self._unit_util(u))
        rec = js.record
        rec.unit = u.name
        if rec.start_s is None:
            rec.start_s = now

    def _end_run(self, js: JobState) -> UnitState:
        """Close the job's run segment on its unit (finish, freeze or cancel)."""
        u = self.units[js.unit]
        now = self.now
        self._account_busy(u)
        self._account_power(u)
        dt = now - js.run_since
        rec = js.record
        rec.exec_s += dt
        rec.energy_j += dt * self._dynamic_w(u, js.util) / len(u.running)
        u.running.remove(js)
        self._set_load(u, u.cmd_freq_hz, self._unit_util(u))
        if not u.running:
            self._kind_busy[u.spec.kind] -= 1
            u.busy_since = None
            self._interference_changed(u.spec.kind)
        js.freeze_pending = False
        return u

    @staticmethod
    def _unit_util(u: UnitState) -> float:
        """Utilisation of a unit: jobs sharing it are time-sliced, so the share-weighted
        mean of their utilisations (the twin's law)."""
        if not u.running:
            return 0.0
        shares = sum(r.share for r in u.running)   # a local: works around a mypyc sum() bug
        return sum(r.share * r.util for r in u.running) / shares

    def _account_busy(self, u: UnitState) -> None:
        if u.busy_since is not None:
            u.busy_acc += self.now - u.busy_since
            u.busy_since = self.now

    def _account_power(self, u: UnitState) -> None:
        """Integrate the unit's modelled power up to now (before its clock or load changes);
        compared with the measured power each period to correct the model."""
        u.energy_acc += u.model_w * (self.now - u.energy_t)
        u.energy_t = self.now

    @staticmethod
    def _set_load(u: UnitState, cmd_freq_hz: int, util: float) -> None:
        """Set the commanded clock and utilisation and the modelled power they give (computed
        here once, not at every ``_account_power``)."""
        u.cmd_freq_hz = cmd_freq_hz
        u.util_now = util
        u.model_w = u.spec.power.power_w(cmd_freq_hz, u.spec.max_frequency_hz, util)

    def _command(self, u: UnitState, freq_hz: int, out: list[Action]) -> None:
        self._account_power(u)
        self._set_load(u, freq_hz, u.util_now)
        out.append(SetFrequency(u.name, freq_hz))

    def _interference_changed(self, aggressor_kind: str) -> None:
        """Keep the interference integral of running victims exact."""
        now = self.now
        for u in self._victims[aggressor_kind]:
            if not u.running:
                continue
            f = self.interference(u.name)
            for r in u.running:
                r.interf_acc += (now - r.interf_t) * r.interf_now
                r.interf_t = now
                r.interf_now = f

    def _mean_interference(self, js: JobState) -> float:
        dt = self.now - js.run_since
        acc = js.interf_acc + (self.now - js.interf_t) * js.interf_now
        return acc / dt if dt > 0 else js.interf_now

    # ------------------------------------------------------------------ dispatch

    def _first(self, a: JobState, b: JobState) -> bool:
        """Is ``a`` served before ``b``? Same level: policy order; else the aged level."""
        if a.level == b.level:
            return a.key <= b.key
        return self._effective_level(a) >= self._effective_level(b)

    def _fill(self, u: UnitState, out: list[Action]) -> None:
        """Start work on ``u`` while it has capacity: the queued head or a frozen job,
        whichever is served first; with ``priority_sharing`` the most important waiting job
        may start beside the running work (see ``_bypass_ok``). Ageing decides who gets the
        unit when it frees, never who may start beside: an aged job that may not must not
        hold back one that may."""
        if u.shared:
            self._fill_shared(u, out)
            return
        while True:
            if u.running:
                if not u.levels or not self._room_beside(u):
                    return
                top = u.queues[u.levels[0]][0][1]
                if not self._bypass_ok(top, u):
                    return
                self._dequeue(top)
                self._start_run(top, u, PRIORITY_SHARE * max(r.share for r in u.running))
                out.append(Dispatch(top.job.job_id, u.name, top.share))
                continue
            head = self._next_queued(u)
            thaw = self._thaw(u)
            if thaw is not None and (head is None or self._first(thaw, head)):
                self._unfreeze(thaw, u, out)
            elif head is not None:
                self._dequeue(head)
                self._start_run(head, u)
                out.append(Dispatch(head.job.job_id, u.name))
            else:
                return

    def _thaw(self, u: UnitState) -> JobState | None:
        """The frozen job that resumes first when ``u`` frees (power-held ones wait)."""
        thaw = None
        for f in u.frozen:
            if not f.power_hold and (thaw is None or self._first(f, thaw)):
                thaw = f
        return thaw

    @staticmethod
    def _room_beside(u: UnitState) -> bool:
        """Could a job start beside the ones running on ``u`` on a priority stream?"""
        return u.priority_stream and len(u.running) < MAX_SHARED

    def _bypass_ok(self, js: JobState, u: UnitState) -> bool:
        """May ``js`` start now beside the jobs running on processor-shared ``u``, on a
        higher-priority stream (PRIORITY_SHARE x the highest running share, so it gets most
        of the unit)? Yes, up to MAX_SHARED jobs, when every running job is being frozen for
        more important work, or when all but one are and ``js`` may bypass that one
        (``_short_enough``)."""
        if not self._room_beside(u):
            return False
        active = [r for r in u.running if not r.freeze_pending]
        if not active:
            return all(js.level > r.level for r in u.running)
        return len(active) == 1 and self._short_enough(js, active[0], u,
                                                       self._remaining_s(active[0]))

    def _short_enough(self, js: JobState, r: JobState, u: UnitState, left: float) -> bool:
        """Bypass rule against ``r`` running with ``left`` seconds to go. Without
        ``costed_sharing``: a more important job whenever sharing beats waiting for ``r``,
        no other. With it (Smith's rule): a more important job when the priority-weighted
        time it saves exceeds the weighted time it costs ``r`` (which gets ~1/PRIORITY_SHARE
        of the unit meanwhile, i.e. waits about as long as ``js`` runs), so it waits only
        for a job about to finish; an equally important one when it is at most half of
        ``r``'s remaining time (SRPT with a clear gain); a less important one additionally
        only if it costs ``r`` at most BYPASS_FRACTION of its estimate."""
        est = self.estimate_s(js, u.name)
        if not self.policy.costed_sharing:
            return js.level > r.level and est < left * PRIORITY_SHARE
        if js.level > r.level:
            saved = left + est - est * (PRIORITY_SHARE + 1) / PRIORITY_SHARE
            return js.weight * saved > r.weight * est
        return est <= 0.5 * left and (js.level == r.level or est <= BYPASS_FRACTION * r.est_s)

    def _fill_shared(self, u: UnitState, out: list[Action]) -> None:
        """Processor sharing, one job per stream at a time (each client node runs its own
        requests in order, the GPU time-slices between nodes)."""
        busy = {r.job.stream or r.job.job_id for r in u.running}
        for lvl in list(u.levels):
            for _, js in list(u.queues.get(lvl, ())):
                s = js.job.stream or js.job.job_id
                if s not in busy:
                    busy.add(s)
                    self._dequeue(js)
                    self._start_run(js, u)
                    out.append(Dispatch(js.job.job_id, u.name))

    def _leave_frozen(self, js: JobState, u: UnitState) -> None:
        u.frozen.remove(js)
        js.record.frozen_s += self.now - js.queued_s

    def _unfreeze(self, js: JobState, u: UnitState, out: list[Action]) -> None:
        src = self.units[js.unit]
        self._leave_frozen(js, src)
        if src is not u:
            js.record.migrations += 1
            out.append(Migrate(js.job.job_id, src.name, u.name))
        self._start_run(js, u)
        js.clean = False
        out.append(Unfreeze(js.job.job_id, u.name))

    def _place(self, js: JobState, out: list[Action]) -> None:
        """Map a ready job to its best unit, freeze a holder if the policy says so, fill."""
        pol = self.policy
        # every score is >= the job's bare estimate there (Policy.score contract), so units
        # are tried fastest-first and the rest skipped once none can beat the best score
        best, best_score = "", INF
        for est, n in sorted((self.estimate_s(js, n), n) for n in js.units):
            if est > best_score:
                break
            sc = pol.score(js, n, self)
            if sc < best_score or (sc == best_score and n < best):
                best, best_score = n, sc
        self._enqueue(js, best)
        u = self.units[best]
        if pol.freezing and not u.shared:
            for r in u.running:
                if self._yields_to(r, js):
                    r.freeze_pending = True
                    out.append(Freeze(r.job.job_id))
        self._fill(u, out)

    # ------------------------------------------------------------------ terminal records

    def _terminal(self, js: JobState, status: JobStatus, message: str,
                  out: list[Action]) -> None:
        self._detach(js)
        if js.power_hold:
            js.power_hold = False
            self._power_held -= 1
        rec = js.record
        rec.status = status
        rec.finish_s = self.now
        rec.message = message
        rec.tokens = js.tokens
        if js.llm and js.prefill_done:
            rec.decode_s = max(0.0, rec.exec_s - js.prefill_end_s)
        del self.jobs[js.job.job_id]
        out.append(Complete(rec))

    def _reject(self, job: Job, reason: str, out: list[Action]) -> None:
        out.append(Reject(job.job_id, reason))
        out.append(Complete(JobRecord(job=job, status=JobStatus.REJECTED, finish_s=self.now,
                                      message=reason)))

    # ------------------------------------------------------------------ event handlers

    def _on_arrival(self, ev: JobArrived, out: list[Action]) -> None:
        job = ev.job
        if job.job_id in self.jobs:
            self._reject(job, f"duplicate job id {job.job_id!r}", out)
            return
        if job.model not in self.catalog:
            self._reject(job, f"unknown model {job.model!r}", out)
            return
        profile = self.catalog.get(job.model)
        units = self.policy.filter(job, profile, self.profiler.eligible_units(job.model), self)
        if not units:
            self._reject(job, f"no eligible unit for {job.model!r} under {self.policy.name}", out)
            return
        if self._queued_total >= self.max_queue:
            self._reject(job, f"queue full ({self.max_queue} jobs waiting)", out)
            return
        self._seq += 1
        js = JobState(job=job, record=JobRecord(job=job, status=JobStatus.QUEUED),
                      profile=profile, units=units, level=self.policy.level(job),
                      key=self.policy.subkey(job) + (self._seq,))
        if profile.is_llm:
            js.prompt, js.new_tokens = llm_tokens(job, profile)
        self.jobs[job.job_id] = js
        self._place(js, out)

    def _on_finished(self, ev: JobFinished, out: list[Action]) -> None:
        js = self.jobs.get(ev.job_id)
        if js is None or js.status is not JobStatus.RUNNING:
            return                      # late report for a cancelled job
        self._observe_finish(js)
        u = self._end_run(js)
        self._terminal(js, JobStatus.COMPLETED if ev.ok else JobStatus.FAILED, ev.message, out)
        self._after_release(u, out)

    def _observe_finish(self, js: JobState) -> None:
        """A finished job's run (a DNN) or decode phase (an LLM) for the profiler."""
        if not js.llm:
            self._observe(js, js.run_since, 0, "job")
        elif js.prefill_done and js.tokens > 1:     # the passes after the prefill's token
            self._observe(js, js.prefill_end_abs, decode_passes(js.tokens), "decode")

    def _observe(self, js: JobState, since: float, tokens: int, phase: str) -> None:
        """Feed the profiler a clean run (alone, one clock) of ``phase`` from ``since`` to now,
        interference factored out."""
        if not js.clean:
            return
        u = self.units[js.unit]
        self.profiler.observe(js.job.model, u.name, u.freq_hz,
                              (self.now - since) / self._mean_interference(js), tokens, phase)
        self._forget(js.job.model, u.name)

    def _forget(self, model: str, unit: str) -> None:
        """Drop cached estimates of (model, unit) after the profiler learned from it."""
        self._est_cache.pop((model, unit), None)
        self.units[unit].dnn_est.pop(model, None)
        self.units[unit].dnn_parked_est.pop(model, None)
        for phase in ("job", "decode"):
            self._parked_cache.pop((model, unit, phase), None)

    def _after_release(self, u: UnitState, out: list[Action]) -> None:
        self._fill(u, out)
        self._withdraw_moot_freezes(u, out)
        if self.policy.migration and u.idle and not u.frozen:
            self._rebalance(out, only=u)

    def _withdraw_moot_freezes(self, u: UnitState, out: list[Action]) -> None:
        """A priority freeze whose reason is gone before it took effect (the job it made room
        for ran beside it and finished first) is withdrawn rather than frozen and resumed
        at once: nothing running or queued on ``u`` outranks the job any more."""
        top_queued = u.levels[0] if u.levels else -INF
        for r in u.running:
            if not r.freeze_pending or r.power_hold:
                continue
            level = self._effective_level(r)
            if top_queued > level or any(o is not r and o.level > level for o in u.running):
                continue
            r.freeze_pending = False
            out.append(WithdrawFreeze(r.job.job_id))

    def _on_step(self, ev: StepFinished, out: list[Action]) -> None:
        js = self.jobs.get(ev.job_id)
        if js is None or js.status is not JobStatus.RUNNING:
            return
        if ev.tokens == 0 and not js.prefill_done:
            js.prefill_done = True
            js.prefill_end_s = js.record.exec_s + (self.now - js.run_since)
            js.prefill_end_abs = self.now
            self._observe(js, js.run_since, js.prompt, "prefill")
        elif ev.tokens >= 1:
            js.tokens = max(js.tokens, ev.tokens)
            if js.record.first_token_s is None:
                js.record.first_token_s = self.now

    def _on_frozen(self, ev: JobFrozen, out: list[Action]) -> None:
        js = self.jobs.get(ev.job_id)
        if js is None or js.status is not JobStatus.RUNNING:
            return
        js.tokens = max(js.tokens, ev.tokens_done)
        if ev.tokens_done > 0:
            js.prefill_done = True
        elif not js.prefill_done:       # frozen at a prefill chunk boundary
            u = self.units[js.unit]
            full = self._phase_s(js.job.model, u, js.prompt, "prefill") * js.interf_now
            js.prefill_left = max(0.0, js.prefill_left - (self.now - js.run_since) / full)
        u = self._end_run(js)
        js.status = JobStatus.FROZEN
        js.queued_s = self.now
        js.record.freezes += 1
        u.frozen.append(js)
        self._fill(u, out)

    def _on_cancel(self, ev: CancelRequested, out: list[Action]) -> None:
        js = self.jobs.get(ev.job_id)
        if js is None:
            return
        reason = ev.reason
        if js.status is JobStatus.QUEUED:
            self._dequeue(js)
            self._terminal(js, JobStatus.CANCELLED, reason, out)
            return
        out.append(Cancel(js.job.job_id, reason))
        if js.status is JobStatus.RUNNING:
            u = self._end_run(js)
            self._terminal(js, JobStatus.CANCELLED, reason, out)
            self._after_release(u, out)
        else:
            u = self.units[js.unit]
            self._leave_frozen(js, u)
            self._terminal(js, JobStatus.CANCELLED, reason, out)
            self._fill(u, out)

    def _on_power(self, ev: PowerSample, out: list[Action]) -> None:
        self._power_sum += ev.power_w
        self._power_n += 1
        if (self._boost is not None and ev.t + self.platform.power_sample_period_s
                > self._boost_until + 1e-9):
            self._end_boost(out)      # the next sample would be past the paid-for share

    def _end_boost(self, out: list[Action]) -> None:
        """Return a boosted unit to its planned clock."""
        boost = self._boost
        assert boost is not None
        self._boost = None
        u = self.units[boost.unit]
        self._command(u, u.freq_hz, out)

    def _on_budget(self, ev: BudgetChanged, out: list[Action]) -> None:
        self.budget_w = ev.budget_w
        if self.controller is not None:
            self.controller.budget_w = ev.budget_w
            self._control(out)
        else:
            self._static = self._static_caps()
            self._set_clocks(self._static, out)

    def _on_tick(self, ev: Tick, out: list[Action]) -> None:
        if self.controller is not None:
            self._control(out)
        if self.policy.migration:
            self._rebalance(out)

    # ------------------------------------------------------------------ clocks and power

    def _static_caps(self) -> dict[str, int]:
        models = []
        for profile in self.catalog:
            elig = self.profiler.eligible_units(profile.id)
            if elig:
                models.append((_probe_job(profile), profile, elig))
        return pw.static_caps(self.platform, self.budget_w, self.policy.used_units(models, self),
                              self.fixed_clocks_hz, self.caps_profile)

    def _set_clocks(self, freqs: dict[str, int], out: list[Action], force: bool = False,
                    parked: frozenset[str] = frozenset()) -> None:
        for name, f in freqs.items():
            u = self.units[name]
            u.parked = name in parked       # estimates are cached per parked state
            if not u.parked and u.work_freq_hz != f:
                u.work_freq_hz = f
                # the unit's estimates change; parked slowdowns are all re-derived
                self._parked_cache.clear()
                u.dnn_est.clear()
                for v in self.units.values():
                    v.dnn_parked_est.clear()
            elif u.parked and u.freq_hz != f:
                # a parked unit's clock sets its ramp (see _estimate)
                self._parked_cache.clear()
                u.dnn_parked_est.clear()
            if f != u.freq_hz or force:
                for r in u.running:
                    r.clean = False
                u.freq_hz = f
                self._command(u, f, out)

    def _demand(self) -> dict[str, pw.UnitDemand]:
        """Per unit with work now or recently: priority-weighted job count (running, queued,
        frozen; kept incrementally by ``_attach``; while the queue is longer than a period,
        only the queued jobs one period gets through, in serve order), each job counted at
        the unit's speed for it relative to its fastest unit (a clock step buys that share
        of the work it would buy there), its frequency sensitivity, and the
        utilisation to budget for the next period = the work's utilisation x its expected
        duty cycle. The duty is 1 while the unit has a backlog or long work, else the recent
        measured duty with headroom (a 10 Hz DNN stream keeps the GPU busy a few % of each
        window; budgeting it as fully busy would waste most of the budget). A decaying memory
        of recent demand keeps a unit serving a periodic stream warm between frames instead
        of parking it every period."""
        demand: dict[str, pw.UnitDemand] = {}
        horizon = self.tick_period_s
        for name, u in self.units.items():
            weight, util, sens = u.memory
            if u.period_weight or u.models:
                # work now or since the last tick: budget its traits, not those of older work
                # the memory still holds (one bert-large an hour ago is not the LLM now)
                weight, util, sens = max(weight, u.period_weight), u.period_util, u.period_sens
            if u.models:
                # waiting work counts as far as the unit gets through it in one period: a
                # long hopeless queue must not buy all the clocks from units serving streams
                run_w = sum(r.home_w for r in u.running)
                if u.backlog_total > horizon:
                    wait_w = self._served(u, INF, dvfs=True)
                else:
                    wait_w = u.weight - run_w
                weight = max(weight, run_w + wait_w)
                if u.traits is None:        # recomputed only when the set of models changes
                    traits = [self._model_traits(m, u.spec.kind) for m in u.models]
                    u.traits = (max(t[0] for t in traits), max(t[1] for t in traits))
                util = max(util, u.traits[0])
                sens = max(sens, u.traits[1])
            u.wanted = (weight, util, sens)
            if weight < MIN_DEMAND:
                continue
            backlog = self._running_left_s(u) + u.backlog_total
            if backlog >= DUTY_LONG * horizon or any(not f.power_hold for f in u.frozen):
                duty = 1.0
            else:
                duty = min(1.0, DUTY_HEADROOM * max(u.duty, u.duty_last) + DUTY_FLOOR)
            u.planned_duty = duty
            demand[name] = pw.UnitDemand(weight, util * duty, sens)
        return demand

    def _rel_speed(self, model: str, u: UnitState) -> float:
        """How fast ``u`` runs ``model`` relative to the model's fastest eligible unit (whole
        default request, max clocks): a clock step there buys this share of the work it buys
        on the fastest unit (cached)."""
        key = (model, u.name)
        v = self._rel.get(key)
        if v is None:
            probe = _probe_job(self.catalog.get(model))
            p = self.profiler
            v = self._rel[key] = min(1.0, p.isolated_latency_s(probe)
                                     / p.job_s(probe, u.name, u.spec.max_frequency_hz))
        return v

    def _held_by_less_important(self, js: JobState, u: UnitState) -> bool:
        """Is a fastest unit of ``js`` (other than ``u``) running less important work that
        ``js`` can neither freeze nor start beside? Then ``js`` is on slower ``u`` by priority
        inversion, not because more important work has that unit, and it counts in ``u``'s
        DVFS demand at full weight (``_rel_speed`` prices its progress in work a clock step
        on the fastest unit would buy, but no step there would serve it)."""
        model = js.job.model
        for n in js.units:
            f = self.units[n]
            if f is u or self._rel_speed(model, f) < 1.0:
                continue
            if (any(r.level < js.level and not r.freeze_pending and not self._yields_to(r, js)
                    for r in f.running) and not self._bypass_ok(js, f)):
                return True
        return False

    def _model_traits(self, model: str, kind: str) -> tuple[float, float]:
        """(utilisation, frequency sensitivity) of a model on a unit kind (cached)."""
        key = (model, kind)
        v = self._traits.get(key)
        if v is None:
            p = self.catalog.get(model)
            v = self._traits[key] = (p.utilization.get(kind, 1.0),
                                     p.freq_sensitivity.get(kind, pw.DEFAULT_SENSITIVITY))
        return v

    def _apply_plan(self, out: list[Action], force: bool = False,
                    demand: dict[str, pw.UnitDemand] | None = None) -> dict[str, int]:
        """Plan clocks for the current demand and emit the changes; units without demand park."""
        assert self.controller is not None
        if demand is None:
            demand = self._demand()
        freqs = self.controller.plan(demand)
        self._set_clocks(freqs, out, force,
                         frozenset(n for n in self.units if n not in demand))
        return freqs

    def _control(self, out: list[Action]) -> None:
        """One DVFS period: correct the model from the measured power, re-plan clocks, and
        freeze/unfreeze lowest-priority preemptible work if even the lowest clocks don't fit."""
        ctrl = self.controller
        assert ctrl is not None
        if self._boost is not None:
            self._end_boost(out)
        period = self.now - self._period_start
        predicted = self.platform.idle_power_w
        for u in self.units.values():
            self._account_busy(u)
            self._account_power(u)
            if period > 0:
                predicted += u.energy_acc / period
                u.duty_last = min(1.0, u.busy_acc / period)
                u.duty += DUTY_ALPHA * (u.duty_last - u.duty)
        demand = self._demand()
        for u in self.units.values():
            w, ut, se = u.wanted
            u.memory = (w * DEMAND_DECAY, ut, se) if u.name in demand else (0.0, 0.0, 0.0)
            u.busy_acc = u.energy_acc = u.period_weight = u.period_util = u.period_sens = 0.0
        if self._power_n and period > 0:
            ctrl.correct(self._power_sum / self._power_n, predicted)
        self._power_sum, self._power_n = 0.0, 0
        self._period_start = self.now
        self._apply_plan(out, demand=demand)
        boost = ctrl.boost
        if boost is not None and boost.fraction >= BOOST_MIN_FRACTION:
            self._boost = boost
            self._boost_until = self.now + boost.fraction * self.tick_period_s
            self._command(self.units[boost.unit], boost.freq_hz, out)
        if ctrl.overshoot:
            self._power_freeze(out)
        else:
            self._power_release(out, demand)

    def _power_freeze(self, out: list[Action]) -> None:
        """Hold the lowest-priority running LLM job. One already being frozen for more
        important work is held too: that freeze is withdrawn when the work ends before the
        job's next step boundary, which under a stream of camera frames is every time."""
        victims = [r for u in self.units.values() for r in u.running
                   if r.llm and not r.power_hold]
        if victims:
            v = min(victims, key=lambda j: (j.priority, j.job.submit_s))
            v.power_hold = True
            self._power_held += 1
            if not v.freeze_pending:
                v.freeze_pending = True
                out.append(Freeze(v.job.job_id))

    def _power_release(self, out: list[Action], demand: dict[str, pw.UnitDemand]) -> None:
        """Let the most important held job run again if the lowest clocks fit with it
        running: released into a budget it cannot fit, it would be frozen again a period
        later, and every period it ran would be over the budget; so such a job runs again
        only once it has been held for POWER_HOLD_MAX_S."""
        if not self._power_held:
            return
        ctrl = self.controller
        assert ctrl is not None
        for u in self.units.values():
            held = [f for f in u.frozen if f.power_hold]
            if held:
                best = max(held, key=lambda j: (j.priority, -j.job.submit_s))
                util, sens = self._model_traits(best.job.model, u.spec.kind)
                here = demand.get(u.name)
                with_it = dict(demand)
                with_it[u.name] = pw.UnitDemand(
                    best.weight + (here.weight if here else 0.0),
                    max(util, here.utilization if here else 0.0),
                    max(sens, here.sensitivity if here else 0.0))
                if self.now - best.queued_s < POWER_HOLD_MAX_S and ctrl.overshoots(with_it):
                    return
                best.power_hold = False
                self._power_held -= 1
                self._fill(u, out)
                return

    # ------------------------------------------------------------------ migration

    def _rebalance(self, out: list[Action], only: UnitState | None = None) -> None:
        """Migration: let lightly loaded units (or just ``only``, a unit that went idle)
        pull work that finishes sooner there. Only a unit whose backlog is below one control
        period can finish someone else's job sooner by the margin, so saturated units are
        not scanned as targets and a tick stays cheap."""
        if not self._queued_total and not any(u.frozen for u in self.units.values()):
            return
        if only is not None:
            self._pull(only, out)
            return
        for u in list(self.units.values()):
            if self._backlog_s(u) < self.tick_period_s:
                self._pull(u, out)

    def _backlog_s(self, u: UnitState) -> float:
        return (self._running_left_s(u) + u.backlog_total
                + sum(self.estimate_s(f, u.name) for f in u.frozen))

    def _pull(self, dst: UnitState, out: list[Action]) -> None:
        """Move queued jobs (in serve order, so a stream's next frames follow) whose
        expected finish on ``dst`` beats their finish where they wait by MIGRATE_MARGIN;
        then, if ``dst`` is idle, resume a frozen job there if that finishes it sooner."""
        pol = self.policy
        name = dst.name
        moved = False
        est_dst: dict[str, float] = {}      # cheap lower bound of the finish on dst, per model
        now, keep = self.now, 1 - MIGRATE_MARGIN     # locals: the scan below is the hot loop
        for src in self.units.values():
            left = src.eligible.get(name, 0)     # its queued jobs that may move to dst
            if src is dst or not left:
                continue
            # src's running and frozen work in full (no yields, no bypass) + ``ahead``, the
            # queued work served before js: an upper bound of its wait there. start_s counts
            # the running and frozen work itself, so only ``ahead`` is cached (_ahead_scan)
            held = (self._running_left_s(src)
                    + sum(self.estimate_s(f, src.name) for f in src.frozen))
            ahead = 0.0
            slow = self.interference(src.name)
            for lvl in list(src.levels):
                if not left:
                    break
                # Smith's rule term of the score per second of run time on src (the same for
                # the whole level: moves within it leave the less important work as it is)
                served = self._served(src, lvl, dvfs=False)
                for _, js in list(src.queues.get(lvl, ())):
                    if not left:        # the rest only add to ``ahead``
                        break
                    if name in js.units:
                        left -= 1
                        model = js.job.model
                        lb = est_dst.get(model)
                        if lb is None or js.llm:
                            lb = est_dst[model] = self.estimate_s(js, name)
                        # upper bound of the score (TwillPolicy.score), which may expect a
                        # waiting job to wait as long again as it already has, and adds what
                        # it costs the less important work waiting behind it
                        waited = now - js.queued_s
                        wait = held + ahead
                        bound = ((wait if wait >= waited else waited)
                                 + js.est_s * (slow + served / js.weight))
                        if lb < bound * keep - MIGRATE_MIN_S:
                            self._ahead[js] = ahead
                            here = pol.score(js, src.name, self)
                            del self._ahead[js]
                            there = pol.score(js, name, self)
                            if there < here * (1 - MIGRATE_MARGIN) - MIGRATE_MIN_S:
                                self._dequeue(js)
                                js.record.migrations += 1
                                out.append(Migrate(js.job.job_id, src.name, name))
                                self._enqueue(js, name)
                                moved = True
                                est_dst.clear()
                                continue
                    ahead += js.est_s
        if moved:
            self._fill(dst, out)
        if not dst.idle or dst.frozen:
            return
        for src in self.units.values():       # dst.frozen is empty here
            for js in list(src.frozen):
                if js.power_hold or name not in js.units:
                    continue
                here = pol.score(js, src.name, self)
                if self.estimate_s(js, name) * self.interference(name) < (
                        here * (1 - MIGRATE_MARGIN) - MIGRATE_MIN_S):
                    self._unfreeze(js, dst, out)
                    return


# the handler of each event type (functions, so that nothing per scheduler refers to the
# scheduler: a deep copy is then a scheduler of its own, compiled or not)
_HANDLERS: dict[type, Callable[[Scheduler, Any, list[Action]], None]] = {
    JobArrived: Scheduler._on_arrival, JobFinished: Scheduler._on_finished,
    StepFinished: Scheduler._on_step, JobFrozen: Scheduler._on_frozen,
    CancelRequested: Scheduler._on_cancel, PowerSample: Scheduler._on_power,
    Tick: Scheduler._on_tick, BudgetChanged: Scheduler._on_budget,
}


def _probe_job(profile: ModelProfile) -> Job:
    """A representative job of a model (default token counts) for per-model questions."""
    return Job(job_id=f"probe:{profile.id}", model=profile.id, priority=0, submit_s=0.0)
