"""Watches a live run from the outside, as any ROS tool could: /twill/state and /twill/results.

It prints the one-line live status and, at the end, turns what the clients sent and what
came back into the core's JobRecords and traces, so a live run is summarised and plotted
exactly like a simulated one (core.metrics, report).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rclpy.node import Node
from twill_msgs.msg import JobRequest, JobResult, SchedulerState

from twill_ros import interfaces as ifc
from twill_ros.core.jobs import JobRecord
from twill_ros.node.requests import job_of
from twill_ros.node.results import STATUS_OF_CODE
from twill_ros.sim.simulator import SimResult


@dataclass
class Sent:
    """A request a client sent, and its result once it came back."""

    request: JobRequest
    result: JobResult | None = None


class SentLedger:
    """The requests a live run sent, each with its stream, and the first result of each
    (thread-safe: results come from other callbacks). How many still wait is counted as
    results come in, because spin conditions ask on every callback."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: dict[str, tuple[str, Sent]] = {}    # job id -> (stream, what was sent)
        self._pending = 0
        self.duplicates = 0                             # results beyond the first per job

    def add(self, stream: str, request: JobRequest) -> None:
        with self._lock:
            self._sent[request.job_id] = (stream, Sent(request=request))
            self._pending += 1

    def record(self, result: JobResult) -> None:
        """Keep the first result of a job sent here; count any further one."""
        with self._lock:
            entry = self._sent.get(result.job_id)
            if entry is None:
                return
            sent = entry[1]
            if sent.result is not None:
                self.duplicates += 1
                return
            sent.result = result
            self._pending -= 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._sent)

    def pending(self) -> int:
        """Requests sent without a result yet."""
        with self._lock:
            return self._pending

    def entries(self) -> list[tuple[str, Sent]]:
        """(stream, sent) in the order sent."""
        with self._lock:
            return list(self._sent.values())

    def streams(self) -> list[str]:
        """Stream names in order of first appearance."""
        with self._lock:
            return list(dict.fromkeys(stream for stream, _ in self._sent.values()))


def stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class RunMonitor(Node):
    def __init__(self, on_result: Callable[[JobResult], None] | None = None, **kwargs) -> None:
        """``on_result`` gets every result on /twill/results (whoever submitted the job)."""
        super().__init__("twill_run_monitor", **kwargs)
        self._on_result_cb = on_result
        self._lock = threading.Lock()
        self.states: list[SchedulerState] = []
        self._done_times: deque[float] = deque()
        self.create_subscription(SchedulerState, ifc.name(ifc.STATE), self._on_state, 50)
        self.create_subscription(JobResult, ifc.name(ifc.RESULTS), self._on_result,
                                 ifc.JOB_QOS)

    def _on_state(self, msg: SchedulerState) -> None:
        with self._lock:
            self.states.append(msg)

    def _on_result(self, msg: JobResult) -> None:
        if self._on_result_cb is not None:
            self._on_result_cb(msg)
        now = time.monotonic()
        with self._lock:
            self._done_times.append(now)
            while self._done_times and self._done_times[0] < now - 1.0:
                self._done_times.popleft()

    def status_line(self, elapsed_s: float) -> str:
        with self._lock:
            rate = len(self._done_times)
            state = self.states[-1] if self.states else None
        if state is None:
            return f"[{elapsed_s:5.1f} s] waiting for /twill/state"
        over = " OVER BUDGET" if state.power_w > state.power_budget_w else ""
        clocks = " ".join(f"{u.name}:{u.frequency_hz / 1e6:.0f}" for u in state.units)
        return (f"[{elapsed_s:5.1f} s] {rate:3d} jobs/s | power {state.power_w:5.1f} W / "
                f"budget {state.power_budget_w:4.1f} W{over} | running {state.running} "
                f"queued {state.queued} frozen {state.frozen} | done {state.completed} | "
                f"MHz {clocks}")

    def with_status(self, keep_going: Callable[[float], bool],
                    quiet: bool = False) -> Callable[[], bool]:
        """A ``spin_while`` condition: ``keep_going(seconds since now)``, printing the live
        status line once a second unless ``quiet``."""
        started = time.monotonic()
        lines = 0

        def condition() -> bool:
            nonlocal lines
            elapsed = time.monotonic() - started
            if not quiet and elapsed >= lines + 1:
                lines += 1
                print(self.status_line(elapsed), flush=True)
            return keep_going(elapsed)
        return condition

    def sim_result(self, sent: Iterable[tuple[str, Sent]], t0_s: float, catalog) -> SimResult:
        """The live run as the core's SimResult: a record per answered job (``sent`` pairs
        each request with its stream's name), power/clock traces.

        Times are ROS time (the clients' request stamps and the state stamps) minus ``t0_s``.
        Jobs sent but never answered are not invented a status: the caller reports them.
        """
        records = [self._record(stream, one, t0_s, catalog) for stream, one in sent
                   if one.result is not None]
        with self._lock:
            states = list(self.states)
        power = [(stamp_s(s.stamp) - t0_s, float(s.power_w)) for s in states]
        freqs, last = [], {}
        for s in states:
            for unit in s.units:
                if last.get(unit.name) != unit.frequency_hz:
                    last[unit.name] = unit.frequency_hz
                    freqs.append((stamp_s(s.stamp) - t0_s, unit.name, int(unit.frequency_hz)))
        end = max([power[-1][0] if power else 0.0] +
                  [r.finish_s for r in records if r.finish_s is not None])
        return SimResult(records=records, power_trace=power, freq_trace=freqs, duration_s=end)

    @staticmethod
    def _record(stream: str, sent: Sent, t0_s: float, catalog) -> JobRecord:
        request, result = sent.request, sent.result
        profile = catalog.get(request.model) if request.model in catalog else None
        job = job_of(request, profile, request.job_id,
                     stamp_s(request.stamp) - t0_s, stream=stream)
        return JobRecord(
            job=job, status=STATUS_OF_CODE[result.status], unit=result.unit,
            finish_s=job.submit_s + result.total_ms / 1000.0,
            start_s=job.submit_s + result.queue_ms / 1000.0 if result.unit else None,
            exec_s=result.exec_ms / 1000.0, frozen_s=result.frozen_ms / 1000.0,
            migrations=result.migrations, freezes=result.freezes,
            first_token_s=job.submit_s + result.ttft_ms / 1000.0 if result.tokens else None,
            tokens=result.tokens, decode_s=result.decode_ms / 1000.0, message=result.message)
