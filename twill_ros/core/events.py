"""Events fed to the scheduler and the actions it returns.

The scheduler is a pure state machine: a driver (the digital twin, the ROS node, a test)
observes the world, turns what happened into events stamped with the driver's time ``t``
(seconds), calls ``Scheduler.handle(event)`` and applies the returned actions in order.

The events and actions made for every job, power sample or tick write their ``__init__``
out: mypyc compiles it, while a dataclass's generated one runs interpreted, for a frozen
class about ten times slower (making them took a sixth of the twin's time).
"""

from __future__ import annotations

from dataclasses import dataclass

from twill_ros.core.jobs import Job, JobRecord

# ---------------------------------------------------------------- events (driver -> core)


@dataclass(frozen=True, slots=True)
class JobArrived:
    """A job was submitted. The scheduler answers with Dispatch/Reject (maybe later)."""

    t: float
    job: Job

    def __init__(self, t: float, job: Job) -> None:
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "job", job)


@dataclass(frozen=True, slots=True)
class JobFinished:
    """A dispatched job ended on ``unit`` (``ok`` False means it failed, ``message`` says why)."""

    t: float
    job_id: str
    unit: str
    ok: bool = True
    message: str = ""

    def __init__(self, t: float, job_id: str, unit: str, ok: bool = True,
                 message: str = "") -> None:
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "job_id", job_id)
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "ok", ok)
        object.__setattr__(self, "message", message)


@dataclass(frozen=True, slots=True)
class StepFinished:
    """An LLM job reached a step boundary; ``tokens`` = tokens generated so far.

    Drivers must report ``tokens=0`` when prefill ends and ``tokens=1`` at the first token;
    further per-token reports are optional (the scheduler only needs these two).
    """

    t: float
    job_id: str
    unit: str
    tokens: int


@dataclass(frozen=True, slots=True)
class JobFrozen:
    """A Freeze took effect at a step boundary; the job keeps its state (LLM KV cache)."""

    t: float
    job_id: str
    unit: str
    tokens_done: int


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """A client (or the driver, e.g. at a simulation's hard stop) withdrew a job."""

    t: float
    job_id: str
    reason: str = "cancelled by client"


@dataclass(frozen=True, slots=True)
class PowerSample:
    """A module power reading (VDD_IN), averaged over the sensor period ending at ``t``."""

    t: float
    power_w: float

    def __init__(self, t: float, power_w: float) -> None:
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "power_w", power_w)


@dataclass(frozen=True, slots=True)
class Tick:
    """Periodic control tick (the DVFS controller runs on these, ~100 ms apart)."""

    t: float

    def __init__(self, t: float) -> None:
        object.__setattr__(self, "t", t)


@dataclass(frozen=True, slots=True)
class BudgetChanged:
    """The module power budget changed (e.g. the robot switched battery mode)."""

    t: float
    budget_w: float


Event = (JobArrived | JobFinished | StepFinished | JobFrozen | CancelRequested | PowerSample
         | Tick | BudgetChanged)

# ---------------------------------------------------------------- actions (core -> driver)


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Start ``job_id`` on ``unit`` now.

    ``share`` is the job's relative throughput weight while it shares a processor-shared
    unit (1.0 = an equal time slice). Twill starts a high-priority job beside an LLM that
    is freezing with a larger share: on a GPU that is a high-priority CUDA stream, whose
    blocks are scheduled before the LLM's until the LLM reaches its step boundary. A driver
    that cannot prioritise may ignore it (the job then gets an equal slice).
    """

    job_id: str
    unit: str
    share: float = 1.0

    def __init__(self, job_id: str, unit: str, share: float = 1.0) -> None:
        object.__setattr__(self, "job_id", job_id)
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "share", share)


@dataclass(frozen=True, slots=True)
class Freeze:
    """Stop issuing steps for a running preemptible job at its next step boundary.

    The driver answers with a ``JobFrozen`` event when it took effect (or a ``JobFinished``
    if the job ended first).
    """

    job_id: str


@dataclass(frozen=True, slots=True)
class WithdrawFreeze:
    """The ``Freeze`` asked for ``job_id`` is no longer wanted (what it made room for is
    done or gone): a driver that has not frozen the job yet lets it run on. One that already
    did answers with ``JobFrozen`` as usual, and the core resumes the job."""

    job_id: str


@dataclass(frozen=True, slots=True)
class Unfreeze:
    """Resume a frozen job on ``unit`` (a different unit than before means a migration)."""

    job_id: str
    unit: str


@dataclass(frozen=True, slots=True)
class Migrate:
    """A job moved from ``src`` to ``dst``.

    For a queued job this is advisory (the driver may warm up an engine on ``dst``; the
    job is started later with Dispatch on ``dst``). For a frozen job it is followed by
    ``Unfreeze(job_id, dst)``.
    """

    job_id: str
    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class SetFrequency:
    """Pin ``unit``'s clock to ``freq_hz`` (a value of its frequency table)."""

    unit: str
    freq_hz: int

    def __init__(self, unit: str, freq_hz: int) -> None:
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "freq_hz", freq_hz)


@dataclass(frozen=True, slots=True)
class Reject:
    """The job is not admitted; a terminal ``Complete`` record follows in the same list."""

    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop a running/frozen job now and drop its state; a ``Complete`` record follows."""

    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Complete:
    """The job's terminal record; emitted exactly once per job."""

    record: JobRecord

    def __init__(self, record: JobRecord) -> None:
        object.__setattr__(self, "record", record)


Action = (Dispatch | Freeze | WithdrawFreeze | Unfreeze | Migrate | SetFrequency | Reject | Cancel
          | Complete)
