"""Digital twin: a discrete-event simulation of the platform driving ``core.Scheduler``.

It models what the scheduler cannot see directly, from the platform file and the catalog:

* unit occupancy: exclusive units run one job; a ``processor_shared`` unit running several
  jobs (only policies that share it dispatch more than one) divides its throughput among
  them in proportion to their Dispatch ``share`` (equal slices by default);
* execution: a job's work is its catalog latency on the unit (the profiler's prior, i.e.
  alone at max clock) x a seeded +-3 % per-job noise; it progresses at
  ``speed(f) / interference / sharers`` where speed follows the frequency-sensitivity law;
* LLMs: prefill in chunks of ``PREFILL_CHUNK_TOKENS`` prompt tokens, whose end gives the
  first token, then ``max_new_tokens - 1`` decode steps (as the LLM backend generates);
  steps are not events — the next boundary is computed
  from the rate, so a Freeze takes effect at the next chunk or token boundary and a resume
  continues from there (KV cache kept, nothing recomputed);
* GPU<->DLA memory interference (platform ``interference`` factors) while both are busy;
* DVFS: a SetFrequency takes effect after the platform's transition latency;
* power: ``core.power`` module model integrated exactly between events and reported every
  ``power_sample_period_s`` as the period's mean x a seeded +-3 % sensor noise; each sample
  goes to the scheduler as a PowerSample; a Tick every ``scheduler.tick_period_s``. The
  exact integral over the whole run is the run's energy (``SimResult.energy_j``).

The run lasts ``duration_s`` (default: the last submission) and then drains until every
job is terminal; jobs still live ``drain_s`` after the end are cancelled with a reason.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from twill_ros.core.catalog import Catalog, ModelProfile
from twill_ros.core.events import (
    BudgetChanged,
    Cancel,
    CancelRequested,
    Complete,
    Dispatch,
    Freeze,
    JobArrived,
    JobFinished,
    JobFrozen,
    PowerSample,
    SetFrequency,
    StepFinished,
    Tick,
    Unfreeze,
    WithdrawFreeze,
)
from twill_ros.core.jobs import Job, JobRecord
from twill_ros.core.platform import PlatformSpec, UnitSpec
from twill_ros.core.policies.base import Policy
from twill_ros.core.power import DEFAULT_CAPS_PROFILE
from twill_ros.core.profiler import Profiler, llm_tokens
from twill_ros.core.scheduler import PREFILL_CHUNK_TOKENS, Scheduler

__all__ = ["SimResult", "simulate"]

INF = float("inf")
EXEC_NOISE = 0.03      # +-3 % per-job execution time (uniform)
POWER_NOISE = 0.03     # +-3 % per power sample (uniform)

# heap entry kinds (arrivals are not in the heap: see _Twin.arrivals)
_MILESTONE, _FREQ, _BUDGET = 0, 1, 2


@dataclass
class SimResult:
    records: list[JobRecord]                  # one per input job, all terminal, input order
    power_trace: list[tuple[float, float]]    # (t, module power W) every sample period
    freq_trace: list[tuple[float, str, int]]  # (t, unit, freq_hz) initial + every change
    duration_s: float                         # end of the simulated run (after draining)
    energy_j: float | None = None             # module energy over the run, exact; None when
                                              # only the samples know it (a live run)


class _Unit:
    __slots__ = ("spec", "freq", "running", "power", "victim_of", "ratio", "speeds")

    def __init__(self, spec: UnitSpec, victim_of: tuple[tuple[str, float], ...]) -> None:
        self.spec = spec
        self.freq = spec.min_frequency_hz
        self.running: list[_Run] = []
        self.victim_of = victim_of
        self.ratio: dict[int, float] = {}     # freq -> (f / f_max) ** exponent
        self.speeds: dict[tuple[str, str, int], float] = {}   # (model, phase, freq) -> speed
        self.power = self.power_w(0.0)

    def power_w(self, util: float) -> float:
        """``PowerModel.power_w`` at the current clock, the clock term cached per frequency
        (same arithmetic, so the same result)."""
        r = self.ratio.get(self.freq)
        if r is None:
            r = self.ratio[self.freq] = ((self.freq / self.spec.max_frequency_hz)
                                         ** self.spec.power.exponent)
        return self.spec.power.static_w + self.spec.power.dynamic_max_w * util * r


class _Run:
    """Execution state of one job (kept across freeze/resume)."""

    __slots__ = ("job", "profile", "llm", "noise", "unit", "phase", "rem", "per_tok",
                 "new", "prompt", "tokens", "rate", "last", "version",
                 "freeze", "util", "share", "pf_total", "pf_chunk", "pf_left")

    def __init__(self, job: Job, profile: ModelProfile, noise: float) -> None:
        self.job = job
        self.profile = profile
        self.llm = profile.is_llm
        self.noise = noise
        self.unit: _Unit | None = None
        self.phase = "job"
        self.rem = 0.0          # reference work (s at max clock, alone) left in this phase
        self.per_tok = 0.0
        self.prompt, self.new = llm_tokens(job, profile) if self.llm else (0, 0)
        self.tokens = 0
        self.rate = 0.0
        self.last = 0.0
        self.version = 0
        self.freeze = False
        self.util = 0.0
        self.share = 1.0        # throughput weight on a processor-shared unit
        self.pf_total = 0.0     # prefill work on the current unit
        self.pf_chunk = 0.0     # work of one prefill chunk (a step boundary)
        self.pf_left = 1.0      # share of the prefill still to do (kept across freezes)


class _Twin:
    def __init__(self, jobs: Sequence[Job], platform: PlatformSpec, catalog: Catalog,
                 scheduler: Scheduler, seed: int, duration_s: float, drain_s: float) -> None:
        self.platform = platform
        self.catalog = catalog
        self.sched = scheduler
        self.truth = Profiler(catalog, platform)     # never observed: the catalog's ground truth
        self.duration = duration_s
        self.hard_stop = duration_s + drain_s
        kinds = {u.kind for u in platform.units}
        self.units = {}
        for spec in platform.units:
            victim_of = tuple((i.aggressor, i.factor) for i in platform.interference
                              if i.victim == spec.kind and i.aggressor in kinds)
            self.units[spec.name] = _Unit(spec, victim_of)
            if spec.name in scheduler.fixed_clocks_hz:      # never set: it runs there
                self.units[spec.name].freq = scheduler.fixed_clocks_hz[spec.name]
        self.kind_busy = dict.fromkeys(kinds, 0)
        self.victims = {k: [u for u in self.units.values() if any(a == k for a, _ in u.victim_of)]
                        for k in kinds}
        exec_rng = random.Random(f"{seed}:exec")
        # common random numbers: a job's noise depends on the seed and its input position only,
        # so every policy sees the same job sizes
        self.noise = {j.job_id: 1.0 + exec_rng.uniform(-EXEC_NOISE, EXEC_NOISE) for j in jobs}
        self.power_rng = random.Random(f"{seed}:power")
        self.runs: dict[str, _Run] = {}
        self.records: dict[str, JobRecord] = {}
        self.heap: list[tuple] = []
        self.seq = 0
        self.power_trace: list[tuple[float, float]] = []
        self.freq_trace: list[tuple[float, str, int]] = [
            (0.0, u.spec.name, u.freq) for u in self.units.values()]
        self.energy = 0.0
        self.energy_t = 0.0
        self.module_power = platform.idle_power_w + sum(u.power for u in self.units.values())
        # in submit order, taken before any heap entry of the same time (as if pushed first):
        # kept out of the heap, which then holds only the few events in flight, not every
        # future arrival (each push and pop would compare through all of them)
        self.arrivals = sorted(jobs, key=lambda j: j.submit_s)
        self._base_cache: dict[tuple[str, str, str], float] = {}

    # ---------------------------------------------------------------- plumbing

    def _push(self, t: float, kind: int, a: object, b: object = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))

    def _feed(self, event) -> None:
        for action in self.sched.handle(event):
            self._apply(event.t, action)

    def _apply(self, t: float, a) -> None:
        kind = type(a)
        if kind is Dispatch:
            self._start(t, self.runs[a.job_id], self.units[a.unit], a.share)
        elif kind is Complete:
            rec = a.record
            if rec.job.job_id in self.records:
                raise RuntimeError(f"job {rec.job.job_id}: second terminal record")
            self.records[rec.job.job_id] = rec
            self.runs.pop(rec.job.job_id, None)
        elif kind is SetFrequency:
            self._push(t + self.platform.dvfs_transition_s, _FREQ, a.unit, a.freq_hz)
        elif kind is Freeze:
            run = self.runs.get(a.job_id)
            if run is not None and run.unit is not None and run.llm:
                self._update_unit_runs(t, run.unit)
                run.freeze = True
                self._schedule(t, run)
        elif kind is WithdrawFreeze:
            run = self.runs.get(a.job_id)
            if run is not None and run.unit is not None and run.freeze:
                run.freeze = False
                self._update_unit_runs(t, run.unit)
        elif kind is Unfreeze:
            self._start(t, self.runs[a.job_id], self.units[a.unit])
        elif kind is Cancel:
            run = self.runs.get(a.job_id)
            if run is not None and run.unit is not None:
                self._stop(t, run)
        # Migrate (advisory) and Reject (a Complete follows) need nothing here

    # ---------------------------------------------------------------- execution model

    def _base(self, model: str, unit: str, phase: str) -> float:
        key = (model, unit, phase)
        v = self._base_cache.get(key)
        if v is None:
            f = self.platform.unit(unit).max_frequency_hz
            v = self._base_cache[key] = self.truth.estimate_s(model, unit, f, 1, phase)
        return v

    def _speed(self, run: _Run, u: _Unit) -> float:
        key = (run.job.model, run.phase, u.freq)
        v = u.speeds.get(key)
        if v is None:
            v = u.speeds[key] = (
                self._base(run.job.model, u.spec.name, run.phase)
                / self.truth.estimate_s(run.job.model, u.spec.name, u.freq, 1, run.phase))
        return v

    def _update_power(self, t: float, u: _Unit) -> None:
        """Integrate the energy up to t, then set ``u``'s power for its new load or clock."""
        self.energy += self.module_power * (t - self.energy_t)
        self.energy_t = t
        # time-sliced jobs: the unit's utilisation is the share-weighted mean of theirs (one
        # job: the same arithmetic without the sums, which would add it to 0 exactly)
        running = u.running
        if len(running) == 1:
            r = running[0]
            util = r.util * r.share / r.share
        else:
            shares = sum(r.share for r in running)   # a local: works around a mypyc sum() bug
            util = sum(r.util * r.share for r in running) / shares if running else 0.0
        new = u.power_w(util)
        self.module_power += new - u.power
        u.power = new

    def _advance(self, t: float, run: _Run) -> None:
        run.rem = max(0.0, run.rem - run.rate * (t - run.last))
        run.last = t

    def _update_unit_runs(self, t: float, u: _Unit) -> None:
        """Bring every job on ``u`` to time t and recompute rates and milestones."""
        running = u.running
        if not running:
            return
        interference = 1.0
        kind_busy = self.kind_busy
        for kind, factor in u.victim_of:      # slowdown from other busy units (DRAM)
            if kind_busy[kind] - (1 if kind == u.spec.kind else 0) > 0:
                interference *= factor
        shares = running[0].share if len(running) == 1 else sum(r.share for r in running)
        speeds = u.speeds
        for run in running:
            run.rem = max(0.0, run.rem - run.rate * (t - run.last))     # as _advance
            run.last = t
            speed = speeds.get((run.job.model, run.phase, u.freq))
            if speed is None:
                speed = self._speed(run, u)
            run.rate = speed * run.share / shares / interference
            self._schedule(t, run)

    def _schedule(self, t: float, run: _Run) -> None:
        """(Re)schedule the job's next milestone: done, prefill end, freeze point."""
        run.version += 1
        target = 0.0
        if run.phase == "prefill" and run.freeze:
            # chunked prefill: the next boundary is the end of the current chunk
            done = run.pf_total - run.rem
            k = done / run.pf_chunk
            n = round(k) if abs(k - round(k)) < 1e-9 else int(k) + 1
            target = max(0.0, run.pf_total - n * run.pf_chunk)
        elif run.phase == "decode" and run.freeze:
            per = run.per_tok
            k = run.rem / per
            target = round(k) * per if abs(k - round(k)) < 1e-9 else int(k) * per
        dt = (run.rem - target) / run.rate if run.rate > 0 else 0.0
        self.seq += 1
        heapq.heappush(self.heap, (t + max(0.0, dt), self.seq, _MILESTONE, run,
                                   (run.version, target)))

    def _start(self, t: float, run: _Run, u: _Unit, share: float = 1.0) -> None:
        name = u.spec.name
        model = run.job.model
        if run.llm:
            run.per_tok = self._base(model, name, "decode") * run.noise
            per_prompt_tok = self._base(model, name, "prefill") * run.noise
            run.pf_total = per_prompt_tok * run.prompt
            run.pf_chunk = per_prompt_tok * PREFILL_CHUNK_TOKENS
            if run.pf_left > 0.0:
                run.phase = "prefill"
                run.rem = run.pf_left * run.pf_total
            else:
                run.phase = "decode"
                run.rem = (run.new - run.tokens) * run.per_tok
        else:
            run.phase = "job"
            run.rem = self._base(model, name, "job") * run.noise
        run.util = run.profile.utilization.get(u.spec.kind, 1.0)
        run.share = share
        run.freeze = False
        run.unit = u
        run.last = t
        was_idle = not u.running
        u.running.append(run)
        self._update_power(t, u)
        if was_idle:
            self.kind_busy[u.spec.kind] += 1
            self._kind_changed(t, u.spec.kind, skip=u)
        self._update_unit_runs(t, u)

    def _stop(self, t: float, run: _Run) -> None:
        u = run.unit
        assert u is not None
        self._advance(t, run)
        if run.phase == "prefill":
            run.pf_left = run.rem / run.pf_total
        u.running.remove(run)
        run.unit = None
        run.version += 1
        self._update_power(t, u)
        if not u.running:
            self.kind_busy[u.spec.kind] -= 1
            self._kind_changed(t, u.spec.kind, skip=u)
        self._update_unit_runs(t, u)

    def _kind_changed(self, t: float, kind: str, skip: _Unit) -> None:
        for v in self.victims[kind]:
            if v is not skip and v.running:
                self._update_unit_runs(t, v)

    def _milestone(self, t: float, run: _Run, target: float) -> None:
        u = run.unit
        assert u is not None
        run.rem = target
        run.last = t
        name = u.spec.name
        jid = run.job.job_id
        if run.phase == "prefill" and target > 0.0:     # a prefill chunk boundary: freeze
            self._stop(t, run)
            run.freeze = False
            self._feed(JobFrozen(t, jid, name, 0))
            return
        if run.phase == "prefill":      # its logits give the first token
            run.phase = "decode"
            run.pf_left = 0.0
            run.tokens = 1
            run.rem = (run.new - 1) * run.per_tok
            self._feed(StepFinished(t, jid, name, 0))
            if run.unit is u:       # not cancelled meanwhile
                self._feed(StepFinished(t, jid, name, 1))
                self._update_unit_runs(t, u)     # decode has its own speed law
            return
        if run.phase == "decode" and target > 0.0:     # a token boundary
            run.tokens = run.new - round(target / run.per_tok)
            if run.freeze:
                self._stop(t, run)
                run.freeze = False
                self._feed(JobFrozen(t, jid, name, run.tokens))
            else:
                self._schedule(t, run)
            return
        if run.llm and run.new > 1:     # the last token (the first came with the prefill)
            run.tokens = run.new
            self._feed(StepFinished(t, jid, name, run.new))
        self._stop(t, run)
        self._feed(JobFinished(t, jid, name, True, ""))

    # ---------------------------------------------------------------- main loop

    def run(self) -> float:
        sample_dt = self.platform.power_sample_period_s
        tick_dt = self.sched.tick_period_s
        n_sample, n_tick = 1, 0
        t_sample, t_tick = sample_dt, 0.0
        last_sample_e = 0.0
        cancelled = False
        heap = self.heap
        pop = heapq.heappop
        handle = self.sched.handle
        apply = self._apply
        rand = self.power_rng.random
        trace = self.power_trace
        runs, catalog, noise = self.runs, self.catalog, self.noise
        duration, hard_stop = self.duration, self.hard_stop
        arrivals = self.arrivals
        arrived = 0
        t_arrival = arrivals[0].submit_s if arrivals else INF
        t = 0.0
        while True:
            t_periodic = t_sample if t_sample <= t_tick else t_tick
            t_next = heap[0][0] if heap else t_periodic
            if t_arrival <= t_next and t_arrival < t_periodic:
                job = arrivals[arrived]
                arrived += 1
                t = t_arrival
                t_arrival = arrivals[arrived].submit_s if arrived < len(arrivals) else INF
                runs[job.job_id] = _Run(job, catalog.get(job.model), noise[job.job_id]) \
                    if job.model in catalog else _Run(job, _PLACEHOLDER, 1.0)
                self._feed(JobArrived(t, job))
                continue
            if t_next < t_periodic:
                t, _, kind, a, b = pop(heap)
                if kind == _MILESTONE:
                    if a.version == b[0] and a.unit is not None:
                        self._milestone(t, a, b[1])     # sets the run's progress to b[1]
                elif kind == _FREQ:
                    self._apply_freq(t, self.units[a], b)
                else:
                    self._feed(BudgetChanged(t, a))
                continue
            t = t_periodic
            if not runs and arrived == len(arrivals) and t >= duration:
                break
            if t >= hard_stop and not cancelled:
                cancelled = True
                for jid in sorted(self.runs, key=lambda j: self.runs[j].job.submit_s):
                    self._feed(CancelRequested(
                        t, jid, f"simulation drain limit reached ({self.hard_stop:.1f} s) "
                                "with the job live"))
                continue
            if t_sample <= t_tick:
                energy = self.energy = self.energy + self.module_power * (t - self.energy_t)
                self.energy_t = t
                # the period's mean power x a uniform +-POWER_NOISE sensor error
                sample = ((energy - last_sample_e) / sample_dt
                          * (1.0 + POWER_NOISE * (2.0 * rand() - 1.0)))
                last_sample_e = energy
                trace.append((t, sample))
                for action in handle(PowerSample(t, sample)):
                    apply(t, action)
                n_sample += 1
                t_sample = n_sample * sample_dt
            else:
                self._feed(Tick(t))
                n_tick += 1
                t_tick = n_tick * tick_dt
        self.energy += self.module_power * (t - self.energy_t)     # the run's last stretch
        self.energy_t = t
        return t

    def _apply_freq(self, t: float, u: _Unit, freq: int) -> None:
        if freq == u.freq:
            return
        u.freq = freq
        self._update_power(t, u)
        self.freq_trace.append((t, u.spec.name, freq))
        self._update_unit_runs(t, u)     # progress so far at the old rates, then the new ones


_PLACEHOLDER = ModelProfile(id="", kind="dnn", precision="", input="", inputs=(),
                            dla_fraction=0.0, dla_compatible=False)


def simulate(jobs: Sequence[Job], platform: PlatformSpec, catalog: Catalog,
             policy: str | Policy, budget_w: float, seed: int, duration_s: float | None = None,
             *, drain_s: float | None = None,
             budget_changes: Sequence[tuple[float, float]] = (),
             fixed_clocks_hz: Mapping[str, int] | None = None,
             caps_profile: str = DEFAULT_CAPS_PROFILE) -> SimResult:
    """Run ``jobs`` through ``policy`` on the twin of ``platform`` under ``budget_w``.

    ``duration_s`` defaults to the last submission; the run then drains until every job is
    terminal, at most ``drain_s`` (default ``max(60 s, duration_s)``) longer, after which
    live jobs are cancelled. ``budget_changes`` are ``(t, budget_w)`` BudgetChanged events.
    ``fixed_clocks_hz``: units held at a clock no one changes (``Scheduler``), as on a
    machine whose control cannot set them; ``caps_profile``: the static-cap profile of a
    policy without DVFS (``power.CAP_PROFILES``). Deterministic for a seed.
    """
    jobs = sorted(jobs, key=lambda j: j.submit_s)
    ids = [j.job_id for j in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError("simulate: job ids must be unique")
    end = duration_s if duration_s is not None else (jobs[-1].submit_s if jobs else 0.0)
    drain = drain_s if drain_s is not None else max(60.0, end)
    sched = Scheduler(platform, catalog, policy, budget_w, seed,
                      fixed_clocks_hz=fixed_clocks_hz, caps_profile=caps_profile)
    twin = _Twin(jobs, platform, catalog, sched, seed, end, drain)
    for t, b in budget_changes:
        twin._push(t, _BUDGET, b)
    t_end = twin.run()
    missing = [j.job_id for j in jobs if j.job_id not in twin.records]
    if missing:
        raise RuntimeError(f"simulate: {len(missing)} jobs without a terminal record: "
                           f"{missing[:5]}")
    return SimResult(records=[twin.records[j] for j in ids], power_trace=twin.power_trace,
                     freq_trace=twin.freq_trace, duration_s=t_end, energy_j=twin.energy)
