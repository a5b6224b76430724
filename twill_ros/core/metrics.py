"""Metrics of one run (DESIGN.md §4): job records + a power trace -> one ``compare`` result.

The inputs are plain (records, power samples) so the same definitions serve the twin and a
live ROS run. Conventions, stated once:

* latency = finish - submit, over completed jobs; percentiles interpolate linearly between
  closest ranks (numpy's default "linear", Hyndman & Fan type 7).
* slowdown = latency / ``profiler.isolated_latency_s(job)``, over completed jobs; the mean
  of those isolated latencies is the floor of the mean latency (``isolated_floor_ms``).
* deadline violation rate = jobs with a deadline that did not complete by submit + deadline
  (a job that did not complete counts as a violation) / jobs with a deadline; ``None`` when
  no job has a deadline (there is nothing to violate, and 0.0 would read as a success).
* power: mean and peak of the periodic samples; a 100 ms window ``[k*0.1, (k+1)*0.1)`` of
  the run violates the budget when the mean of its samples exceeds it (windows without
  samples are not counted).
* energy per job = module energy over the run / completed jobs: the twin's exact integral
  where given (``run_energy_j``), else from the samples, each held until the next one.
* LLM: TTFT = first token - submit, TPS = decode rate = (tokens - 1) / decode time (the
  prefill gives the first token, each further one a decode step), averaged over completed
  LLM jobs (jobs with ``first_token_s``; TPS over those with more than one token).
Statistics over an empty set are ``None`` (JSON null).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

from twill_ros.core.jobs import JobRecord, JobStatus

WINDOW_S = 0.1


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return sum(items) / len(items) if items else None


def latency_summary_ms(latencies_s: Sequence[float]) -> dict[str, float | None]:
    ms = [x * 1000.0 for x in latencies_s]
    return {"mean": mean(ms), "p50": percentile(ms, 50), "p95": percentile(ms, 95),
            "p99": percentile(ms, 99)}


def deadline_violation_rate(records: Iterable[JobRecord]) -> float | None:
    misses = [r.deadline_missed for r in records if r.deadline_missed is not None]
    return sum(misses) / len(misses) if misses else None


def window_means(power_trace: Sequence[tuple[float, float]],
                 window_s: float = WINDOW_S) -> list[tuple[float, float]]:
    """(start, mean sample) of each ``window_s`` window ``[k*window_s, (k+1)*window_s)``
    (aligned on t = 0) that has samples, in time order."""
    windows: dict[int, list[float]] = {}
    for t, p in power_trace:
        windows.setdefault(math.floor(t / window_s + 1e-9), []).append(p)
    return [(k * window_s, sum(windows[k]) / len(windows[k])) for k in sorted(windows)]


def budget_violation_fraction(power_trace: Sequence[tuple[float, float]],
                              budget_w: float, window_s: float = WINDOW_S) -> float | None:
    """Share of the ``window_s`` windows (aligned on t = 0) whose mean sample exceeds the
    budget."""
    means = window_means(power_trace, window_s)
    if not means:
        return None
    over = sum(1 for _, p in means if p > budget_w)
    return over / len(means)


def energy_j(power_trace: Sequence[tuple[float, float]], end_s: float | None = None) -> float:
    """Module energy: each sample's power held until the next sample (the last one until
    ``end_s`` when given)."""
    total = 0.0
    for (t0, p), (t1, _) in itertools.pairwise(power_trace):
        total += p * (t1 - t0)
    if power_trace and end_s is not None and end_s > power_trace[-1][0]:
        total += power_trace[-1][1] * (end_s - power_trace[-1][0])
    return total


def isolated_floor_ms(records: Iterable[JobRecord], profiler) -> float | None:
    """Mean isolated latency of the completed jobs: with each job alone on its best unit at
    max clock, no schedule that completes them has a lower mean latency."""
    return mean(1000.0 * profiler.isolated_latency_s(r.job) for r in records if _done(r))


def completed_latency_s(records: Iterable[JobRecord]) -> dict[str, float]:
    """Latency of each completed job, by job id: to compare two runs over the jobs both
    completed."""
    return {r.job.job_id: r.finish_s - r.job.submit_s for r in records if _done(r)}


def _done(record: JobRecord) -> bool:
    return record.status is JobStatus.COMPLETED and record.finish_s is not None


def _job_stats(records: Sequence[JobRecord],
               slowdowns: Sequence[float | None]) -> dict[str, object]:
    """The fields shared by the whole run and each stream; ``slowdowns[i]`` is the slowdown
    of ``records[i]`` (None when it did not complete)."""
    latencies = [r.latency_s for r in records if _done(r)]
    return {"jobs": len(records), "latency_ms": latency_summary_ms(latencies),
            "slowdown_mean": mean(s for s in slowdowns if s is not None),
            "deadline_violation_rate": deadline_violation_rate(records)}


def summarize(records: Sequence[JobRecord], power_trace: Sequence[tuple[float, float]], *,
              policy: str, budget_w: float, profiler, duration_s: float | None = None,
              streams: Sequence[str] = (), static_caps: str | None = None,
              run_energy_j: float | None = None) -> dict[str, object]:
    """One object of the ``compare`` JSON ``results`` list.

    ``streams`` lists stream names to report even when they produced no job (their order is
    kept; streams seen only in the records follow, sorted). ``duration_s`` is the end of
    the run for the energy integral over the samples; ``run_energy_j``, the run's exact
    energy where known (the twin's: the samples miss the time before the first one, all of
    a run shorter than a sample period). ``static_caps``: the static-cap profile the policy
    ran on (``power.CAP_PROFILES``), None for a policy with its own DVFS."""
    counts = {status: 0 for status in JobStatus}
    for r in records:
        counts[r.status] += 1
    # each completed job's isolated latency is computed once, for the run and its stream;
    # none for a model the catalog lacks (a replayed scheduler may run its own models)
    slowdowns = [r.latency_s / profiler.isolated_latency_s(r.job)
                 if _done(r) and r.job.model in profiler.catalog else None for r in records]
    stats = _job_stats(records, slowdowns)
    powers = [p for _, p in power_trace]
    energy = energy_j(power_trace, duration_s) if run_energy_j is None else run_energy_j
    completed = counts[JobStatus.COMPLETED]
    llm = [r for r in records if r.status is JobStatus.COMPLETED and r.first_token_s is not None]
    names = list(streams) + sorted({r.job.stream for r in records} - set(streams))
    per_stream = {}
    for name in names:
        mine = [i for i, r in enumerate(records) if r.job.stream == name]
        per_stream[name] = _job_stats([records[i] for i in mine], [slowdowns[i] for i in mine])
    return {
        "policy": policy,
        "budget_w": budget_w,
        "jobs": stats["jobs"],
        "completed": completed,
        "failed": counts[JobStatus.FAILED],
        "rejected": counts[JobStatus.REJECTED],
        "cancelled": counts[JobStatus.CANCELLED],
        "latency_ms": stats["latency_ms"],
        "slowdown_mean": stats["slowdown_mean"],
        "deadline_violation_rate": stats["deadline_violation_rate"],
        "power_w": {"mean": mean(powers), "peak": max(powers) if powers else None},
        "budget_violation_fraction": budget_violation_fraction(power_trace, budget_w),
        "energy_j_per_job": energy / completed if completed else None,
        "llm": {
            "ttft_ms_mean": mean((r.first_token_s - r.job.submit_s) * 1000.0 for r in llm),
            "tps_mean": mean((r.tokens - 1) / r.decode_s for r in llm
                             if r.tokens > 1 and r.decode_s > 0),
        },
        "per_stream": per_stream,
        "static_caps": static_caps,
    }
