"""The Orin NX digital twin as a real-time backend: simulated units that take real wall time.

Lets the ROS node run end to end with no accelerator: jobs occupy their units for as long as
the profiler says, jobs on a ``processor_shared`` unit split its throughput, GPU/DLA jobs slow
each other through shared DRAM (``platform.interference``) and clock changes slow or speed up
the work in flight. All units of one twin live in one object with one worker thread because
they interact.

Progress model: each running job has a current step (a DNN job's one phase of work, an LLM's
prefill chunk of PREFILL_CHUNK_TOKENS prompt tokens, or one decode token after the first,
which the prefill gives) whose remaining
work is kept in *seconds at the unit's maximum clock*. Between two changes of state every
job advances at a constant rate::

    rate = estimate(f_max) / estimate(f_now) * share / shares_on_unit / interference_factor

(``share`` is the Dispatch's throughput weight: 1 each = equal slices)

so the twin computes each step boundary exactly (piecewise-constant rates, processed in time
order) and stamps events with that instant, derived from ``clock()`` readings. The worker only
sleeps until the next predicted boundary (at most ``MAX_WAIT_S``, so a drifting clock or a
clock change is picked up) and is woken by every API call.

The twin's ground truth is the profiler it is given. The scheduler only feeds the profiler
clean runs (alone, at one clock, interference factored out), so a clean observation equals
the estimate and the online refinement leaves the twin unchanged.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twill_ros.backends.base import Clock, Dispatched, EventSink, Payload, UnitBackend
from twill_ros.core.events import Event, JobFinished, JobFrozen, StepFinished
from twill_ros.core.jobs import Job
from twill_ros.core.profiler import llm_tokens
from twill_ros.core.scheduler import PREFILL_CHUNK_TOKENS

if TYPE_CHECKING:
    from twill_ros.core.catalog import Catalog
    from twill_ros.core.platform import PlatformSpec
    from twill_ros.core.profiler import Profiler

MAX_WAIT_S = 0.02          # longest worker sleep while jobs run (bounds clock-drift error)
FAILURE_MESSAGE = "simulated failure"

_log = logging.getLogger(__name__)


@dataclass(eq=False, kw_only=True)
class _Run(Dispatched):
    """The twin's execution state: the work left in the current step."""

    share: float = 1.0        # throughput weight on a processor-shared unit (Dispatch.share)
    prompt: int = 0           # llm: prompt tokens
    new_tokens: int = 0       # llm: tokens to generate in total
    prefill_done: int = 0     # llm: prompt tokens in the KV cache (chunks done, kept if frozen)
    chunk: int = 0            # llm: prompt tokens the current prefill step processes
    # "start" is the dispatch boundary, so every transition happens in ``_step_done``.
    phase: str = "start"      # start | job | prefill | decode
    remaining: float = 0.0    # work left in the current step, seconds at the unit's max clock

    @property
    def prefilled(self) -> bool:
        return self.prefill_done >= self.prompt


class TwinBackend(UnitBackend):
    """The simulated units of a platform, executed in real time by one worker thread.

    ``frequency_hz`` returns the clock last set (snapped); the accounting switches to it
    ``platform.dvfs_transition_s`` after ``set_frequency``, like the hardware. ``power_w`` is
    the whole module as modelled (``platform.idle_power_w`` plus every unit of this twin).
    A frozen LLM's KV cache stays in the twin: a resume (on any unit; a migration moves it
    at no cost) continues from its last prefill chunk or token. The prefill's end gives the
    first token (``StepFinished`` with 0, then 1 token), each further token one decode step,
    as the LLM backend generates. ``fail_models``: jobs
    of these models end with ``JobFinished(ok=False)`` after their first step of work
    (failure injection for tests and demos).
    """

    kind = "twin"
    _runs: dict[str, _Run]

    def __init__(self, units: Iterable[str], platform: PlatformSpec, catalog: Catalog,
                 profiler: Profiler, sink: EventSink, clock: Clock,
                 fail_models: Iterable[str] = ()) -> None:
        super().__init__(units, platform, catalog)
        self._platform = platform
        self._profiler = profiler
        self._sink = sink
        self._clock = clock
        self._fail_models = frozenset(fail_models)
        # victim unit -> [(factor, aggressor units)]: the other units whose activity slows it
        self._interference = {
            name: [(i.factor, tuple(u for u, s in self._specs.items()
                                    if s.kind == i.aggressor and u != name))
                   for i in platform.interference if i.victim == spec.kind]
            for name, spec in self._specs.items()}
        self._t = clock()                 # the instant the accounting has reached
        self._freq = {n: s.max_frequency_hz for n, s in self._specs.items()}   # in effect
        self._target = dict(self._freq)   # last set (reported by frequency_hz)
        self._pending: list[tuple[float, str, int]] = []   # (apply at, unit, Hz), time order
        self._kept: dict[str, int] = {}   # frozen llm job id -> prompt tokens in its KV cache
        self._busy_s = {n: 0.0 for n in self.units}
        self._busy_since = {n: self._t for n in self.units}
        self._outbox: list[tuple[_Run, Event]] = []
        self._batch: list[tuple[_Run, Event]] = []   # being delivered by the worker
        self._worker = threading.Thread(target=self._work, name="twin-backend", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ Backend API

    def start(self, job: Job, unit: str, tokens_done: int = 0,
              payload: Payload | None = None, share: float = 1.0) -> None:
        spec, profile = self._placed(job, unit)
        with self._lock:
            if self._closed:
                raise RuntimeError("twin backend is closed")
            self._catch_up()
            if job.job_id in self._runs:
                raise RuntimeError(f"job {job.job_id} is already running on "
                                   f"{self._runs[job.job_id].unit.name}")
            busy = [r.job_id for r in self._runs.values() if r.unit.name == unit]
            if busy and spec.sharing == "exclusive":
                raise RuntimeError(f"unit {unit} is exclusive and busy with {', '.join(busy)}")
            run = _Run(job=job, unit=spec, profile=profile, share=share)
            if profile.is_llm:
                run.prompt, run.new_tokens = llm_tokens(job, profile)
                run.tokens = min(tokens_done, run.new_tokens)
                kept = self._kept.pop(job.job_id, 0)
                run.prefill_done = run.prompt if tokens_done > 0 else kept
            self._runs[job.job_id] = run
            self._step_done(run)         # enter the first step now, so a freeze comes after it
            self._lock.notify()

    def cancel(self, job_id: str) -> None:
        """Drop the job (running or frozen). An event the worker is handing to the sink at
        this very moment may still arrive (the core ignores such late reports); the sink is
        never called under a lock, so it may call back into the backend."""
        with self._lock:
            self._catch_up()
            self._kept.pop(job_id, None)
            run = self._runs.pop(job_id, None)
            if run is not None:
                run.dead = True
            for pending, _ in self._outbox + self._batch:
                if pending.job_id == job_id:
                    pending.dead = True
            self._lock.notify()

    def set_frequency(self, unit: str, freq_hz: int) -> None:
        spec = self._spec(unit)
        freq = spec.snap(int(freq_hz))
        with self._lock:
            self._catch_up()
            self._target[unit] = freq
            self._pending.append((self._t + self._platform.dvfs_transition_s, unit, freq))
            self._lock.notify()

    def frequency_hz(self, unit: str) -> int:
        self._spec(unit)
        with self._lock:
            return self._target[unit]

    def utilization(self, unit: str) -> float:
        self._spec(unit)
        with self._lock:
            self._catch_up()
            span = self._t - self._busy_since[unit]
            busy = self._busy_s[unit]
            self._busy_s[unit] = 0.0
            self._busy_since[unit] = self._t
            self._lock.notify()
        return min(1.0, busy / span) if span > 0.0 else 0.0

    def power_w(self) -> float:
        """Module power as modelled: idle floor + each unit's PowerModel at its clock in effect,
        with the running jobs' catalog utilization (mean over time-sliced jobs; 0 when idle)."""
        with self._lock:
            self._catch_up()
            self._lock.notify()
            util: dict[str, list[float]] = {}
            for run in self._runs.values():
                util.setdefault(run.unit.name, []).append(
                    run.profile.utilization.get(run.unit.kind, 1.0))
            return self._platform.idle_power_w + sum(
                spec.power.power_w(self._freq[name], spec.max_frequency_hz,
                                   sum(util[name]) / len(util[name]) if name in util else 0.0)
                for name, spec in self._specs.items())

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for run, _ in self._outbox + self._batch:
                run.dead = True
            for run in self._runs.values():
                run.dead = True
            self._runs.clear()
            self._outbox.clear()
            self._lock.notify_all()
        if threading.current_thread() is not self._worker:   # close() may come from the sink
            self._worker.join()

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        """Advance the twin, then hand events to the sink with no lock held."""
        while True:
            with self._lock:
                while True:
                    if self._closed:
                        return
                    rates = self._catch_up()
                    if self._outbox:
                        break
                    self._lock.wait(self._wait_s(rates))
                self._batch, self._outbox = self._outbox, []
            for run, event in self._batch:
                if run.dead:
                    continue
                try:
                    self._sink(event)
                except Exception:  # noqa: BLE001 - a faulty sink must not stop the twin
                    _log.exception("event sink raised on %s", event)
            with self._lock:
                self._batch = []

    def _wait_s(self, rates: dict[str, float]) -> float | None:
        """Time to the next predicted boundary at ``rates`` (from ``_catch_up``), capped;
        None (until notified) when idle."""
        if not self._runs and not self._pending:
            return None
        t_next, _ = self._next_boundary(rates)
        return min(MAX_WAIT_S, max(0.0, t_next - self._t))

    # ------------------------------------------------------------------ accounting (lock held)

    def _catch_up(self) -> dict[str, float]:
        """Run the model up to ``clock()``: boundaries in time order, exact progress between.

        Returns the rates in effect now (progress does not change them; the next boundary,
        a clock change or a start/cancel does)."""
        now = self._clock()
        while True:
            rates = self._rates()
            t_next, run = self._next_boundary(rates)
            if t_next > now:
                break
            self._progress(t_next, rates)
            if run is None:
                _, unit, freq = self._pending.pop(0)
                self._freq[unit] = freq
            else:
                self._step_done(run)
        self._progress(now, rates)
        return rates

    def _rates(self) -> dict[str, float]:
        """Each running job's progress per second of wall time, in max-clock seconds."""
        load: Counter[str] = Counter()
        for run in self._runs.values():
            load[run.unit.name] += run.share
        rates = {}
        for run in self._runs.values():
            name = run.unit.name
            slowdown = math.prod(factor for factor, aggressors in self._interference[name]
                                 if any(load[a] for a in aggressors))
            rates[run.job_id] = self._speed(run) * run.share / load[name] / slowdown
        return rates

    def _speed(self, run: _Run) -> float:
        """Speed of the current step at the unit's clock relative to its max clock."""
        return (self._estimate(run, run.unit.max_frequency_hz)
                / self._estimate(run, self._freq[run.unit.name]))

    def _estimate(self, run: _Run, freq_hz: int) -> float:
        tokens = {"prefill": run.chunk, "decode": 1}.get(run.phase, 0)
        return self._profiler.estimate_s(run.job.model, run.unit.name, freq_hz, tokens, run.phase)

    def _next_boundary(self, rates: dict[str, float]) -> tuple[float, _Run | None]:
        """Earliest step boundary (its run) or clock change (None) at the current rates."""
        t_next, first = (self._pending[0][0], None) if self._pending else (math.inf, None)
        for run in self._runs.values():
            t = self._t + run.remaining / rates[run.job_id]
            if t < t_next:
                t_next, first = t, run
        return max(t_next, self._t), first

    def _progress(self, t: float, rates: dict[str, float]) -> None:
        dt = t - self._t
        if dt <= 0.0:
            return
        for run in self._runs.values():
            run.remaining = max(0.0, run.remaining - dt * rates[run.job_id])
        for name in {run.unit.name for run in self._runs.values()}:
            self._busy_s[name] += dt
        self._t = t

    def _step_done(self, run: _Run) -> None:
        """``run`` reached a step boundary at ``self._t``: report it, then start its next step,
        freeze it or end it."""
        t, job_id, unit = self._t, run.job_id, run.unit.name
        if run.phase != "start" and run.job.model in self._fail_models:
            self._end(run, JobFinished(t, job_id, unit, ok=False, message=FAILURE_MESSAGE))
            return
        if run.phase == "prefill":
            run.prefill_done += run.chunk
            if run.prefilled:       # its logits give the first token
                run.tokens = 1
                self._outbox.append((run, StepFinished(t, job_id, unit, tokens=0)))
                self._outbox.append((run, StepFinished(t, job_id, unit, tokens=1)))
        elif run.phase == "decode":
            run.tokens += 1
            self._outbox.append((run, StepFinished(t, job_id, unit, tokens=run.tokens)))
        if run.profile.is_llm:
            phase = ("prefill" if not run.prefilled
                     else "decode" if run.tokens < run.new_tokens else None)
        else:
            phase = "job" if run.phase == "start" else None
        if phase is None:
            self._end(run, JobFinished(t, job_id, unit, ok=True))
        elif run.freeze:
            if run.prefill_done:
                self._kept[job_id] = run.prefill_done
            self._end(run, JobFrozen(t, job_id, unit, tokens_done=run.tokens))
        else:
            run.phase = phase
            if phase == "prefill":   # in chunks, as the core plans: each one a freeze point
                run.chunk = min(PREFILL_CHUNK_TOKENS, run.prompt - run.prefill_done)
            run.remaining = self._estimate(run, run.unit.max_frequency_hz)

    def _end(self, run: _Run, event: Event) -> None:
        del self._runs[run.job_id]
        self._outbox.append((run, event))
