"""Health rules behind /diagnostics, kept apart from rclpy so they are plain to test.

Names follow ros/diagnostics conventions: a stable ``twill/`` prefix, one status per concern,
OK/WARN/ERROR/STALE levels; the node turns these into DiagnosticStatus messages at 1 Hz.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from twill_ros.core.metrics import percentile

OK, WARN, ERROR, STALE = 0, 1, 2, 3
# Over budget for this long (consecutive 1 s windows) is an ERROR, shorter is a WARN.
SUSTAINED_OVERSHOOT_S = 5
# A queue this full (share of its limit) warns before jobs start being rejected.
QUEUE_NEAR_FULL = 0.9
# Over budget in more than this share of the last WINDOWS_SPAN 100 ms windows (the
# evaluation's budget-violation target: 2 or more of the last 10 s) is a WARN even when the
# 1 s mean is within the budget; one window over just after a budget change is not.
WINDOWS_OVER_LIMIT = 0.01
WINDOWS_SPAN = 100
# A job running this many times its estimate (and at least STUCK_MIN_S) is reported stuck.
STUCK_FACTOR = 5.0
STUCK_MIN_S = 2.0


@dataclass(frozen=True)
class Status:
    name: str
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitSnapshot:
    name: str
    frequency_hz: int
    max_frequency_hz: int
    utilization: float
    running: tuple[str, ...]
    # (job id, seconds running, estimated seconds) of each running job
    running_for: tuple[tuple[str, float, float], ...] = ()
    failed: int = 0              # jobs that failed here since the previous snapshot
    last_failure: str = ""       # the latest one's reason


@dataclass(frozen=True)
class Snapshot:
    """What the node knows at one diagnostics period."""

    power_w: float | None        # mean module power over the last second; None = the
                                 # sensor stopped answering
    budget_w: float
    power_source: str
    control: str                 # who can set clocks, e.g. "simulated clocks (full control)"
    control_level: int
    queued: int                  # waiting to start; max_queue counts these
    queue_limit: int
    deadline_misses: int         # since the previous snapshot
    completed: int
    units: tuple[UnitSnapshot, ...]
    overhead_s: dict[str, tuple[float, ...]] = field(default_factory=dict)
    rails_w: dict[str, float] = field(default_factory=dict)   # the sensor's rails, latest
    windows_over: int = 0        # recent 100 ms windows whose mean exceeded the budget
    windows: int = 0             # of this many
    rejected: int = 0            # requests refused since the previous snapshot
    last_rejection: str = ""     # the latest refusal's reason
    alarm: str = ""              # the sensor's worst over-current alarm in the period
    alarm_level: int = OK
    frozen: int = 0              # preempted, waiting to resume (not in the queue)
    power_held: int = 0          # of those, frozen because the budget does not fit them


class HealthMonitor:
    """Turns snapshots into statuses; remembers the recent power history for 'sustained'."""

    def __init__(self) -> None:
        self._over = deque(maxlen=SUSTAINED_OVERSHOOT_S)

    def statuses(self, snap: Snapshot) -> list[Status]:
        return [self._power(snap), self._queue(snap), self._platform(snap),
                self._overhead(snap), *(self._unit(u) for u in snap.units)]

    def _power(self, snap: Snapshot) -> Status:
        """Budget first; an over-current alarm, which can come within the budget (a 10 ms
        peak), raises the level and leads the message."""
        status = self._budget(snap)
        if not snap.alarm:
            return status
        return Status(status.name, max(status.level, snap.alarm_level),
                      f"{snap.alarm}; {status.message}",
                      {**status.values, "over_current_alarm": snap.alarm})

    def _budget(self, snap: Snapshot) -> Status:
        if snap.power_w is None:
            self._over.clear()
            return Status("twill/power", ERROR, f"no power reading from {snap.power_source} "
                          "in the last second; clocks are planned on the power model with its "
                          "last measured correction", {"budget_w": f"{snap.budget_w:.2f}"})
        over = snap.power_w > snap.budget_w
        self._over.append(over)
        values = {"power_w": f"{snap.power_w:.2f}", "budget_w": f"{snap.budget_w:.2f}",
                  "seconds_over_budget": str(sum(self._over)),
                  "windows_over_budget": f"{snap.windows_over}/{snap.windows}",
                  **{f"rail {name} W": f"{w:.2f}" for name, w in snap.rails_w.items()}}
        if over and len(self._over) == self._over.maxlen and all(self._over):
            return Status("twill/power", ERROR, f"over budget for {SUSTAINED_OVERSHOOT_S} s: "
                          f"{snap.power_w:.1f} W > {snap.budget_w:.1f} W", values)
        # every warning that holds, so a short overshoot cannot hide jobs held for power
        warnings = []
        if over:
            warnings.append(f"over budget: {snap.power_w:.1f} W > {snap.budget_w:.1f} W")
        if snap.windows_over > WINDOWS_OVER_LIMIT * WINDOWS_SPAN:
            warnings.append(f"{snap.windows_over} of the last {snap.windows} 100 ms windows "
                            "over budget")
        if snap.power_held:     # within the budget only by starving work: say so
            warnings.append(f"{snap.power_held} LLM job(s) frozen for power: the budget does "
                            "not fit them even at the lowest clocks; they run in turns, far "
                            "slower")
            values["held_for_power"] = str(snap.power_held)
        if warnings:
            return Status("twill/power", WARN, "; ".join(warnings), values)
        return Status("twill/power", OK, "within budget", values)

    @staticmethod
    def _queue(snap: Snapshot) -> Status:
        values = {"queued": str(snap.queued), "frozen": str(snap.frozen),
                  "queue_limit": str(snap.queue_limit),
                  "deadline_misses": str(snap.deadline_misses), "completed": str(snap.completed),
                  "rejected": str(snap.rejected)}
        problems = []
        if snap.rejected:
            problems.append(f"{snap.rejected} request(s) refused in the last period "
                            f"(latest: {snap.last_rejection})")
        if snap.deadline_misses:
            problems.append(f"{snap.deadline_misses} deadline miss(es) in the last period")
        if snap.queued >= QUEUE_NEAR_FULL * snap.queue_limit:
            problems.append(f"queue near its limit ({snap.queued}/{snap.queue_limit})")
        if problems:
            return Status("twill/queue", WARN, "; ".join(problems), values)
        return Status("twill/queue", OK, f"{snap.queued} queued, {snap.frozen} frozen", values)

    @staticmethod
    def _platform(snap: Snapshot) -> Status:
        return Status("twill/platform", snap.control_level, f"power from {snap.power_source}; "
                      f"clocks: "
                      f"{snap.control}", {"power_source": snap.power_source,
                                          "control": snap.control})

    @staticmethod
    def _overhead(snap: Snapshot) -> Status:
        """Informational: the node's own latency on the job path (DESIGN.md section 4)."""
        values = {}
        for name, samples in snap.overhead_s.items():
            if samples:
                values[f"{name}_p50_ms"] = f"{1000 * percentile(samples, 50):.3f}"
                values[f"{name}_p99_ms"] = f"{1000 * percentile(samples, 99):.3f}"
                values[f"{name}_samples"] = str(len(samples))
        return Status("twill/overhead", OK, "node overhead on the job path", values)

    @staticmethod
    def _unit(unit: UnitSnapshot) -> Status:
        values = {"frequency_hz": str(unit.frequency_hz),
                  "max_frequency_hz": str(unit.max_frequency_hz),
                  "utilization": f"{unit.utilization:.2f}",
                  "running": ",".join(unit.running), "failed": str(unit.failed)}
        stuck = [job for job, running_s, estimate_s in unit.running_for
                 if running_s > max(STUCK_MIN_S, STUCK_FACTOR * estimate_s)]
        name = f"twill/units/{unit.name}"
        problems = []
        if unit.failed:
            problems.append(f"{unit.failed} job(s) failed in the last period "
                            f"(latest: {unit.last_failure})")
        if stuck:
            problems.append(f"job(s) running far past their estimate: {', '.join(stuck)}")
        if problems:
            return Status(name, WARN, "; ".join(problems), values)
        state = "busy" if unit.running else "idle"
        return Status(name, OK, f"{state} at {unit.frequency_hz / 1e6:.0f} MHz", values)
