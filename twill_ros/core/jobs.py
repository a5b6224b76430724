"""Job lifecycle types shared by the scheduler, the twin, metrics and the ROS shell.

A job is immutable once submitted (``Job``); everything that happens to it is accumulated
in a mutable ``JobRecord`` that the scheduler emits exactly once, in a terminal status.
Metrics read only records, so a record must carry every number a report needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from twill_ros.native import mypyc_attr


class JobStatus(str, Enum):
    """Lifecycle states; the last four are terminal (a job ends in exactly one of them)."""

    QUEUED = "queued"
    RUNNING = "running"
    FROZEN = "frozen"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.REJECTED, JobStatus.CANCELLED}
)


@mypyc_attr(native_class=False)   # mypyc: frozen native dataclasses cannot be deep-copied
@dataclass(frozen=True)
class Job:
    """One inference request. Times are seconds; ``deadline_s`` is relative to submit."""

    job_id: str
    model: str
    priority: int
    submit_s: float
    deadline_s: float | None = None
    stream: str = ""
    prompt_tokens: int = 0
    max_new_tokens: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.priority <= 255:
            raise ValueError(f"job {self.job_id}: priority {self.priority} not in 0..255")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError(f"job {self.job_id}: deadline_s must be > 0")
        if self.prompt_tokens < 0 or self.max_new_tokens < 0:
            raise ValueError(f"job {self.job_id}: token counts must be >= 0")

    @property
    def absolute_deadline_s(self) -> float | None:
        return None if self.deadline_s is None else self.submit_s + self.deadline_s


@dataclass
class JobRecord:
    """What a job reports when it ends; the only input metrics need."""

    job: Job
    status: JobStatus
    unit: str = ""
    start_s: float | None = None
    finish_s: float | None = None
    exec_s: float = 0.0
    frozen_s: float = 0.0
    migrations: int = 0
    freezes: int = 0
    first_token_s: float | None = None
    tokens: int = 0
    decode_s: float = 0.0
    energy_j: float = 0.0
    message: str = ""

    @property
    def latency_s(self) -> float | None:
        return None if self.finish_s is None else self.finish_s - self.job.submit_s

    @property
    def queue_s(self) -> float | None:
        lat = self.latency_s
        return None if lat is None else max(0.0, lat - self.exec_s - self.frozen_s)

    @property
    def deadline_missed(self) -> bool | None:
        """None when the job has no deadline; non-completed jobs count as misses."""
        dl = self.job.absolute_deadline_s
        if dl is None:
            return None
        return self.status is not JobStatus.COMPLETED or self.finish_s is None or self.finish_s > dl
