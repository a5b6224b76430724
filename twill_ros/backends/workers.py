"""Per-unit worker threads: the machinery the real backends (torch, llm, tensorrt) share.

Each unit gets one worker thread, so a unit's jobs never race for it and per-thread runtime
state (a CUDA stream, a TensorRT execution context, a CPU affinity mask) lives with the
thread that uses it. A CPU unit's worker pins itself to the unit's cores that this process
may use (``os.sched_setaffinity(0, ...)`` applies to the calling thread on Linux; threads it
starts later, such as its OpenMP team, inherit the mask).

A job is a ``Run`` executed in *steps* (``_step``): a DNN inference is one step, an LLM's
prefill and each decode token are one step each. The worker serves its unit's runs round
robin, one step at a time, so a job dispatched beside a running LLM waits at most one step
(time slicing at step granularity, like a ``processor_shared`` unit). The step boundary is
also where a requested freeze takes effect: the run's ``state`` (the KV cache) is kept by
the backend until ``start(..., tokens_done)`` resumes it on any of its units.

Clocks are not ours to set here (DVFS needs root and belongs to the platform layer):
``set_frequency`` records the snapped value that ``frequency_hz`` reports.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twill_ros.backends.base import Clock, Dispatched, EventSink, Output, Payload, UnitBackend
from twill_ros.core.events import Event, JobFinished, JobFrozen
from twill_ros.core.jobs import Job

if TYPE_CHECKING:
    from twill_ros.core.catalog import Catalog
    from twill_ros.core.platform import PlatformSpec, UnitSpec
    from twill_ros.core.profiler import Profiler

_log = logging.getLogger(__name__)


@dataclass(eq=False, kw_only=True)
class Run(Dispatched):
    """A worker's execution state: the input and the backend's kept per-job state."""

    payload: Payload
    state: Any = None               # the backend's per-job state, kept across a freeze
    resumed: bool = False           # ``state`` is a kept one (the subclass clears this)
    output: Output | None = None    # set by the step that completes the job


def unit_cpus(unit: UnitSpec) -> frozenset[int]:
    """The CPUs a CPU unit's worker runs on: its cores this process may use, or (when none
    are, e.g. a cluster offline or a container with fewer CPUs) every CPU it may use."""
    available = frozenset(os.sched_getaffinity(0))
    return (frozenset(unit.cores) & available) or available


class UnitWorkers(UnitBackend):
    """A Backend whose units each have a worker thread running ``Run``s step by step.

    Subclasses implement ``_step`` (and may override ``_setup_thread``); they set their own
    attributes before calling ``super().__init__``, which starts the threads. ``kind`` names
    the backend in messages and thread names; ``artefact_kinds`` and ``runs_llms`` say which
    catalog models it can run (``supports``).
    """

    kind = "workers"
    artefact_kinds: tuple[str, ...] = ()
    runs_llms = False
    _runs: dict[str, Run]           # queued or running, by job id

    def __init__(self, units: Iterable[str], platform: PlatformSpec, catalog: Catalog,
                 profiler: Profiler, sink: EventSink, clock: Clock) -> None:
        super().__init__(units, platform, catalog)
        self._sink = sink
        self._clock = clock
        self._ready: dict[str, deque[Run]] = {name: deque() for name in self.units}
        self._kept: dict[str, tuple[int, Any]] = {}   # frozen job id -> (tokens, state)
        self._outputs: dict[str, Output] = {}      # finished, not yet taken
        self._freq = {name: spec.max_frequency_hz for name, spec in self._specs.items()}
        now = clock()
        self._busy_s = dict.fromkeys(self.units, 0.0)
        self._busy_since: dict[str, float | None] = dict.fromkeys(self.units)   # step start
        self._window_start = dict.fromkeys(self.units, now)
        self._setup: dict[str, BaseException | None] = {}   # unit -> its thread's setup error
        self._threads = {name: threading.Thread(target=self._work, args=(name,), daemon=True,
                                                name=f"twill-{self.kind}-{name}")
                         for name in self.units}
        for thread in self._threads.values():
            thread.start()
        with self._lock:       # units are pinned and set up once the backend exists
            self._lock.wait_for(lambda: len(self._setup) == len(self.units))
            failed = {unit: exc for unit, exc in self._setup.items() if exc is not None}
        if failed:
            self.close()
            unit, exc = next(iter(failed.items()))
            raise RuntimeError(f"{self.kind} backend: setting up unit {unit} failed: "
                               f"{exc}") from exc

    # ------------------------------------------------------------------ hooks

    def _setup_thread(self, unit: UnitSpec) -> None:
        """Runs first on ``unit``'s worker thread (after CPU pinning): per-thread runtime setup."""

    def _step(self, run: Run) -> bool:
        """Run one step of ``run`` on its unit's thread; True when the job is done (with
        ``run.output`` set). An exception fails the job with its text; the unit goes on."""
        raise NotImplementedError

    # ------------------------------------------------------------------ Backend API

    def supports(self, model_id: str) -> bool:
        """A catalog model of the right kind that names one of ``artefact_kinds``."""
        if model_id not in self._catalog:
            return False
        profile = self._catalog.get(model_id)
        return (profile.is_llm == self.runs_llms
                and any(kind in profile.artefacts for kind in self.artefact_kinds))

    def start(self, job: Job, unit: str, tokens_done: int = 0,
              payload: Payload | None = None, share: float = 1.0) -> None:
        """``share`` is not applied: jobs on one unit take turns a step at a time."""
        spec, profile = self._placed(job, unit)
        if not self.supports(job.model):
            what = "an LLM" if self.runs_llms else "a non-LLM model"
            raise ValueError(f"the {self.kind} backend cannot run model {job.model!r}: it runs "
                             f"{what} that names a {' or '.join(self.artefact_kinds)} "
                             f"artefact in the catalog")
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.kind} backend is closed")
            if job.job_id in self._runs:
                raise RuntimeError(f"job {job.job_id} is already running on "
                                   f"{self._runs[job.job_id].unit.name}")
            run = Run(job=job, unit=spec, profile=profile, payload=payload or Payload(),
                      tokens=tokens_done)
            kept = self._kept.pop(job.job_id, None)
            if kept is not None:
                run.tokens, run.state = kept
                run.resumed = True
                if tokens_done != run.tokens:
                    _log.warning("job %s resumes at %d tokens (kept state), not %d",
                                 job.job_id, run.tokens, tokens_done)
            self._runs[job.job_id] = run
            self._ready[unit].append(run)
            self._lock.notify_all()

    def cancel(self, job_id: str) -> None:
        """Drops a queued run, discards a running one's result, forgets frozen state. An event
        being handed to the sink at this moment may still arrive (the core ignores it)."""
        with self._lock:
            run = self._runs.pop(job_id, None)
            if run is not None:
                run.dead = True
                ready = self._ready[run.unit.name]
                if run in ready:
                    ready.remove(run)
            self._kept.pop(job_id, None)
            self._outputs.pop(job_id, None)

    def take_output(self, job_id: str) -> Output:
        with self._lock:
            return self._outputs.pop(job_id, Output())

    def set_frequency(self, unit: str, freq_hz: int) -> None:
        spec = self._spec(unit)
        with self._lock:
            self._freq[unit] = spec.snap(int(freq_hz))

    def frequency_hz(self, unit: str) -> int:
        self._spec(unit)
        with self._lock:
            return self._freq[unit]

    def utilization(self, unit: str) -> float:
        """Share of wall time the unit's worker spent in steps since the last call."""
        self._spec(unit)
        now = self._clock()
        with self._lock:
            busy = self._busy_s[unit]
            since = self._busy_since[unit]
            if since is not None:          # a step in progress counts up to now
                busy += now - since
                self._busy_since[unit] = now
            span = now - self._window_start[unit]
            self._busy_s[unit] = 0.0
            self._window_start[unit] = now
        return min(1.0, busy / span) if span > 0.0 else 0.0

    def power_w(self) -> float | None:
        """Unknown: a real backend measures nothing itself (the node reads the module sensor)."""
        return None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for run in self._runs.values():
                run.dead = True
            self._runs.clear()
            self._kept.clear()
            self._lock.notify_all()
        current = threading.current_thread()
        for thread in self._threads.values():
            if thread is not current:      # close() may come from the sink on a worker
                thread.join()

    def pinned_cpus(self, unit: str) -> frozenset[int]:
        """The CPUs ``unit``'s worker thread may run on, as the kernel reports them."""
        self._spec(unit)
        thread = self._threads[unit]
        return frozenset(os.sched_getaffinity(thread.native_id or 0))

    # ------------------------------------------------------------------ worker

    def _work(self, unit: str) -> None:
        spec = self._specs[unit]
        error: BaseException | None = None
        try:
            if spec.kind == "cpu":
                os.sched_setaffinity(0, unit_cpus(spec))
            self._setup_thread(spec)
        except Exception as exc:  # noqa: BLE001 - reported by __init__, in the caller's thread
            error = exc
        with self._lock:
            self._setup[unit] = error
            self._lock.notify_all()
        if error is not None:
            return
        while True:
            with self._lock:
                while not self._closed and not self._ready[unit]:
                    self._lock.wait()
                if self._closed:
                    return
                run = self._ready[unit].popleft()
                if run.freeze and run.state is not None:   # a begun run, at a step boundary
                    del self._runs[run.job_id]
                    self._kept[run.job_id] = (run.tokens, run.state)
                    event: Event | None = JobFrozen(self._clock(), run.job_id, unit, run.tokens)
                else:
                    event = None
                    self._busy_since[unit] = self._clock()
            if event is not None:
                self._emit(run, event)
                continue
            event = self._run_step(run)
            with self._lock:
                since = self._busy_since[unit]
                if since is not None:
                    self._busy_s[unit] += self._clock() - since
                self._busy_since[unit] = None
                if run.dead:
                    continue
                if event is None:
                    self._ready[unit].append(run)
                    continue
                del self._runs[run.job_id]
                if event.ok and run.output is not None:
                    self._outputs[run.job_id] = run.output
            self._emit(run, event)

    def _run_step(self, run: Run) -> JobFinished | None:
        """One step; the JobFinished that ends the run, or None if it goes on."""
        try:
            done = self._step(run)
        except Exception as exc:  # noqa: BLE001 - a failing model fails its job, not the unit
            _log.warning("job %s (%s) failed on %s: %s", run.job_id, run.job.model,
                         run.unit.name, exc)
            return JobFinished(self._clock(), run.job_id, run.unit.name, ok=False,
                               message=f"{type(exc).__name__}: {exc}")
        return JobFinished(self._clock(), run.job_id, run.unit.name) if done else None

    def _emit(self, run: Run, event: Event) -> None:
        """Hand ``event`` to the sink (no lock held, so the sink may call back) unless the run
        was cancelled or the backend closed."""
        with self._lock:
            if run.dead:
                return
        try:
            self._sink(event)
        except Exception:  # noqa: BLE001 - a faulty sink must not stop the unit
            _log.exception("event sink raised on %s", event)
