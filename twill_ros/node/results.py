"""Conversions between twill_msgs and the core (records) and backends (payloads, outputs)."""

from __future__ import annotations

from twill_msgs.msg import JobRequest, JobResult, Tensor

from twill_ros.backends.base import Output, Payload, TensorData
from twill_ros.core.jobs import JobRecord, JobStatus

STATUS_CODES = {
    JobStatus.COMPLETED: JobResult.COMPLETED,
    JobStatus.FAILED: JobResult.FAILED,
    JobStatus.REJECTED: JobResult.REJECTED,
    JobStatus.CANCELLED: JobResult.CANCELLED,
}
STATUS_OF_CODE = {code: status for status, code in STATUS_CODES.items()}
STATUS_NAMES = {code: status.value for code, status in STATUS_OF_CODE.items()}


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


def payload_of(request: JobRequest) -> Payload:
    """What a backend computes on: the request's tensors and prompt."""
    return Payload(inputs=tuple(TensorData(t.name, t.dtype, tuple(int(d) for d in t.shape),
                                           bytes(t.data)) for t in request.inputs),
                   prompt=request.prompt)


def attach_output(result: JobResult, output: Output) -> None:
    result.text = output.text
    result.outputs = [Tensor(name=t.name, shape=list(t.shape), dtype=t.dtype, data=t.data)
                      for t in output.tensors]
