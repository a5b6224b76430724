"""Conversions between the core's job records and twill_msgs results."""

from __future__ import annotations

from twill_msgs.msg import JobResult

from twill_ros.core.jobs import JobRecord, JobStatus

STATUS_CODES = {
    JobStatus.COMPLETED: JobResult.COMPLETED,
    JobStatus.FAILED: JobResult.FAILED,
    JobStatus.REJECTED: JobResult.REJECTED,
    JobStatus.CANCELLED: JobResult.CANCELLED,
}
STATUS_NAMES = {code: status.value for status, code in STATUS_CODES.items()}


def _ms(seconds: float | None) -> float:
    return 0.0 if seconds is None else seconds * 1000.0


def result_from_record(record: JobRecord, request) -> JobResult:
    """The JobResult for a terminal record; ``request`` is the JobRequest it answers."""
    job = record.job
    first_token = record.first_token_s
    return JobResult(
        job_id=job.job_id,
        client_id=request.client_id,
        model=job.model,
        status=STATUS_CODES[record.status],
        message=record.message,
        unit=record.unit,
        queue_ms=_ms(record.queue_s),
        exec_ms=_ms(record.exec_s),
        frozen_ms=_ms(record.frozen_s),
        total_ms=_ms(record.latency_s),
        deadline_met=not record.deadline_missed,
        migrations=record.migrations,
        freezes=record.freezes,
        tokens=record.tokens,
        ttft_ms=0.0 if first_token is None else _ms(first_token - job.submit_s),
        decode_ms=_ms(record.decode_s),
        stamp=request.stamp,
    )


def rejected_result(request, job_id: str, reason: str) -> JobResult:
    """The result for a request refused before it reached the scheduler."""
    return JobResult(job_id=job_id, client_id=request.client_id, model=request.model,
                     status=JobResult.REJECTED, message=reason, deadline_met=False,
                     stamp=request.stamp)
