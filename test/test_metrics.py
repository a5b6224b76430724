"""Metrics on small hand-computed cases."""

from __future__ import annotations

import pytest

from twill_ros.core.jobs import Job, JobRecord, JobStatus
from twill_ros.core.metrics import (
    budget_violation_fraction,
    energy_j,
    percentile,
    summarize,
)


class FixedProfiler:
    """Isolated latency 10 ms for every job of the one model it knows."""

    catalog = ("m",)

    def isolated_latency_s(self, job: Job) -> float:
        return 0.010


def record(job_id: str, submit: float, finish: float | None, *, stream: str = "s",
           status: JobStatus = JobStatus.COMPLETED, deadline: float | None = None,
           **extra) -> JobRecord:
    job = Job(job_id=job_id, model="m", priority=100, submit_s=submit, deadline_s=deadline,
              stream=stream)
    return JobRecord(job=job, status=status, finish_s=finish, **extra)


def test_percentile_interpolates_linearly_between_closest_ranks():
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 95) == pytest.approx(3.85)   # rank 2.85 -> 3 + 0.85 * 1
    assert percentile(values, 99) == pytest.approx(3.97)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_budget_windows_are_100ms_means():
    # 10 ms samples over 0.3 s: window 0 at 9 W, window 1 alternating 9/12 W (mean 10.5),
    # window 2 one spike of 30 W among 9 W samples (mean 11.1)
    trace = [(i * 0.01, 9.0) for i in range(10)]
    trace += [(0.1 + i * 0.01, 9.0 if i % 2 else 12.0) for i in range(10)]
    trace += [(0.2 + i * 0.01, 30.0 if i == 3 else 9.0) for i in range(10)]
    assert budget_violation_fraction(trace, 10.0) == pytest.approx(2 / 3)
    assert budget_violation_fraction(trace, 11.0) == pytest.approx(1 / 3)
    assert budget_violation_fraction(trace, 12.0) == 0.0
    assert budget_violation_fraction([], 10.0) is None


def test_energy_holds_each_sample_until_the_next():
    trace = [(0.0, 10.0), (0.5, 20.0), (1.0, 5.0)]
    assert energy_j(trace) == pytest.approx(10.0 * 0.5 + 20.0 * 0.5)
    assert energy_j(trace, end_s=2.0) == pytest.approx(15.0 + 5.0)


def test_summary_counts_latency_slowdown_and_deadlines():
    records = [
        record("a-0", 0.0, 0.010, stream="a", deadline=0.015),    # 10 ms, met
        record("a-1", 1.0, 1.030, stream="a", deadline=0.015),    # 30 ms, missed
        record("b-0", 0.5, 0.520, stream="b"),                    # 20 ms, no deadline
        record("a-2", 2.0, 2.001, stream="a", deadline=0.015, status=JobStatus.REJECTED),
        record("b-1", 3.0, None, stream="b", status=JobStatus.CANCELLED),
        record("b-2", 3.0, 3.5, stream="b", status=JobStatus.FAILED),
    ]
    trace = [(0.0, 8.0), (0.05, 12.0), (0.1, 8.0)]
    out = summarize(records, trace, policy="p", budget_w=9.5, profiler=FixedProfiler(),
                    duration_s=0.15, streams=("a", "b", "idle"))
    assert (out["jobs"], out["completed"], out["failed"], out["rejected"], out["cancelled"]) \
        == (6, 3, 1, 1, 1)
    assert out["latency_ms"]["mean"] == pytest.approx(20.0)
    assert out["latency_ms"]["p50"] == pytest.approx(20.0)
    assert out["slowdown_mean"] == pytest.approx(2.0)          # (1 + 3 + 2) / 3
    assert out["deadline_violation_rate"] == pytest.approx(2 / 3)   # missed + rejected
    assert out["power_w"] == {"mean": pytest.approx(28 / 3), "peak": 12.0}
    assert out["budget_violation_fraction"] == pytest.approx(0.5)   # windows: 10 W > 9.5, 8 W
    assert out["energy_j_per_job"] == pytest.approx((0.4 + 0.6 + 0.4) / 3)
    assert out["llm"] == {"ttft_ms_mean": None, "tps_mean": None}
    a, b, idle = (out["per_stream"][k] for k in ("a", "b", "idle"))
    assert (a["jobs"], a["latency_ms"]["mean"], a["deadline_violation_rate"]) == \
        (3, pytest.approx(20.0), pytest.approx(2 / 3))
    assert (b["jobs"], b["latency_ms"]["mean"], b["deadline_violation_rate"]) == \
        (3, pytest.approx(20.0), None)
    assert idle == {"jobs": 0, "latency_ms": {"mean": None, "p50": None, "p95": None,
                                              "p99": None},
                    "slowdown_mean": None, "deadline_violation_rate": None}


def test_llm_ttft_and_tokens_per_second():
    records = [
        # the prefill gives the first token: 49 and 29 decode passes after it
        record("l-0", 1.0, 4.0, first_token_s=1.2, tokens=50, decode_s=2.45),   # 200 ms, 20/s
        record("l-1", 2.0, 6.0, first_token_s=2.6, tokens=30, decode_s=29 / 30), # 600 ms, 30/s
        record("l-3", 2.0, 2.5, first_token_s=2.5, tokens=1),     # 500 ms, no decode rate
        record("d-0", 0.0, 0.01),                                               # not an LLM
        record("l-2", 3.0, None, status=JobStatus.CANCELLED, first_token_s=3.1, tokens=2),
    ]
    out = summarize(records, [], policy="p", budget_w=10.0, profiler=FixedProfiler())
    assert out["llm"]["ttft_ms_mean"] == pytest.approx(1300.0 / 3)
    assert out["llm"]["tps_mean"] == pytest.approx(25.0)
    assert out["power_w"] == {"mean": None, "peak": None}
    assert out["budget_violation_fraction"] is None
    assert out["deadline_violation_rate"] is None


def test_result_keys_follow_the_compare_contract():
    out = summarize([record("a-0", 0.0, 0.01)], [(0.0, 5.0)], policy="p", budget_w=15,
                    profiler=FixedProfiler())
    assert list(out) == ["policy", "budget_w", "jobs", "completed", "failed", "rejected",
                         "cancelled", "latency_ms", "slowdown_mean", "deadline_violation_rate",
                         "power_w", "budget_violation_fraction", "energy_j_per_job", "llm",
                         "per_stream", "static_caps"]
    assert set(out["per_stream"]["s"]) == {"jobs", "latency_ms", "slowdown_mean",
                                           "deadline_violation_rate"}


def test_a_model_the_catalog_lacks_has_no_slowdown_and_breaks_nothing():
    """A replayed scheduler may run models of its own catalog."""
    job = Job(job_id="c-0", model="custom-net", priority=100, submit_s=0.0, stream="c")
    records = [record("a-0", 0.0, 0.020), JobRecord(job=job, status=JobStatus.COMPLETED,
                                                     finish_s=0.5)]
    out = summarize(records, [], policy="p", budget_w=10.0, profiler=FixedProfiler())
    assert out["completed"] == 2 and out["slowdown_mean"] == pytest.approx(2.0)
    assert out["per_stream"]["c"]["slowdown_mean"] is None
    assert out["per_stream"]["c"]["latency_ms"]["mean"] == pytest.approx(500.0)
