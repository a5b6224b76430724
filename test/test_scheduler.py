"""Scheduler mechanics shared by every policy: admission, terminal records, cancellation,
the driver contract (events in, actions out), no clock reads."""

from __future__ import annotations

import copy

import pytest
from engine_fixtures import PLATFORM, job, of
from engine_fixtures import scheduler as sched

from twill_ros.core.events import (
    Cancel,
    CancelRequested,
    Complete,
    Dispatch,
    Freeze,
    JobArrived,
    JobFinished,
    JobFrozen,
    Reject,
    SetFrequency,
    StepFinished,
    Tick,
    Unfreeze,
    WithdrawFreeze,
)
from twill_ros.core.jobs import JobStatus


def records(actions):
    return [a.record for a in of(actions, Complete)]


def test_first_event_sets_every_clock():
    s = sched()
    out = s.handle(Tick(0.0))
    assert {a.unit for a in of(out, SetFrequency)} == set(PLATFORM.unit_names)


def test_unknown_model_is_rejected_with_one_terminal_record():
    out = sched().handle(JobArrived(0.0, job("x", model="resnet9000")))
    assert of(out, Reject)[0].reason == "unknown model 'resnet9000'"
    (rec,) = records(out)
    assert rec.status is JobStatus.REJECTED and rec.finish_s == 0.0 and "unknown" in rec.message


def test_no_eligible_unit_is_rejected():
    # gpu_fifo runs everything on the GPU; a CPU-only model has nowhere to go
    out = sched("gpu_fifo").handle(JobArrived(0.0, job("x", model="cpuonly")))
    (rej,) = of(out, Reject)
    assert "no eligible unit" in rej.reason
    assert records(out)[0].status is JobStatus.REJECTED


def test_queue_limit_rejects_beyond_max_queue():
    s = sched("gpu_fifo", max_queue=2)
    out = []
    for i in range(4):   # one stream: the first runs, the next two queue, the fourth bounces
        out += s.handle(JobArrived(0.0, job(f"j{i}", model="long", stream="one")))
    assert [a.job_id for a in of(out, Dispatch)] == ["j0"]
    (rej,) = of(out, Reject)
    assert rej.job_id == "j3" and "queue full" in rej.reason


def test_duplicate_job_id_is_rejected_and_original_survives():
    s = sched()
    s.handle(JobArrived(0.0, job("a", model="long")))
    out = s.handle(JobArrived(0.001, job("a", model="long")))
    assert of(out, Reject) and records(out)[0].status is JobStatus.REJECTED
    done = records(s.handle(JobFinished(0.1, "a", "gpu")))
    assert [r.status for r in done] == [JobStatus.COMPLETED]


def test_a_deep_copy_decides_on_its_own():
    """bench/bench_core.py times decisions on deep copies: a copy must neither act on the
    original (as bound methods kept by a compiled scheduler once did) nor differ from it."""
    s = sched()
    s.handle(JobArrived(0.0, job("a", model="long")))
    s.handle(JobArrived(0.0, job("b", model="long")))
    shared = (s.catalog, s.platform, *s.catalog, *s.platform.units)   # read-only, as the bench
    first, second = (copy.deepcopy(s, {id(x): x for x in shared}) for _ in range(2))
    out = first.handle(JobFinished(0.1, "a", "gpu"))
    assert [r.job.job_id for r in records(out)] == ["a"] and of(out, Dispatch)
    assert second.handle(JobFinished(0.1, "a", "gpu")) == out
    assert set(s.jobs) == {"a", "b"} and s.jobs["a"].status is JobStatus.RUNNING
    assert s.now == 0.0


def test_completion_record_fields():
    s = sched()
    s.handle(JobArrived(0.0, job("a", model="long")))
    (rec,) = records(s.handle(JobFinished(0.1, "a", "gpu")))
    assert rec.status is JobStatus.COMPLETED
    assert rec.unit == "gpu" and rec.start_s == 0.0 and rec.finish_s == 0.1
    assert rec.exec_s == pytest.approx(0.1) and rec.latency_s == pytest.approx(0.1)
    assert rec.energy_j > 0.0
    assert s.live_jobs == 0


def test_failed_job_gets_failed_record_with_message():
    s = sched()
    s.handle(JobArrived(0.0, job("a", model="long")))
    (rec,) = records(s.handle(JobFinished(0.05, "a", "gpu", ok=False, message="engine crash")))
    assert rec.status is JobStatus.FAILED and rec.message == "engine crash"


def test_cancel_queued_job():
    s = sched("gpu_fifo")
    s.handle(JobArrived(0.0, job("a", model="long", stream="s")))
    s.handle(JobArrived(0.0, job("b", model="long", stream="s")))     # queued behind a
    out = s.handle(CancelRequested(0.01, "b"))
    assert not of(out, Cancel)                 # never started: nothing for the driver to stop
    (rec,) = records(out)
    assert rec.status is JobStatus.CANCELLED and rec.start_s is None


def test_cancel_running_job_stops_it_and_dispatches_next():
    s = sched("gpu_fifo")
    s.handle(JobArrived(0.0, job("a", model="long", stream="s")))
    s.handle(JobArrived(0.0, job("b", model="long", stream="s")))
    out = s.handle(CancelRequested(0.03, "a", "operator abort"))
    assert of(out, Cancel) == [Cancel("a", "operator abort")]
    (rec,) = records(out)
    assert rec.status is JobStatus.CANCELLED and rec.exec_s == pytest.approx(0.03)
    assert of(out, Dispatch) == [Dispatch("b", "gpu")]
    # a late finish report for the cancelled job is ignored: no second record
    assert records(s.handle(JobFinished(0.1, "a", "gpu"))) == []


def test_cancel_frozen_job():
    s = sched()
    s.handle(JobArrived(0.0, job("llm1", model="llm", priority=10, prompt=64, new=10)))
    out = s.handle(JobArrived(0.01, job("hi", model="bert", priority=200)))
    assert of(out, Freeze) == [Freeze("llm1")]
    s.handle(JobFrozen(0.064, "llm1", "gpu", 0))
    out = s.handle(CancelRequested(0.07, "llm1"))
    assert of(out, Cancel)[0].job_id == "llm1"
    (rec,) = records(out)
    assert rec.status is JobStatus.CANCELLED and rec.freezes == 1
    assert rec.frozen_s == pytest.approx(0.006)


def test_cancel_unknown_or_finished_job_is_a_no_op():
    s = sched()
    s.handle(Tick(0.0))
    assert s.handle(CancelRequested(0.0, "nope")) == []
    s.handle(JobArrived(0.0, job("a", model="long")))
    s.handle(JobFinished(0.1, "a", "gpu"))
    assert s.handle(CancelRequested(0.2, "a")) == []


def test_llm_record_tokens_ttft_and_decode_time():
    s = sched()
    s.handle(JobArrived(0.0, job("l", model="llm", priority=10, prompt=100, new=10)))
    s.handle(StepFinished(0.1, "l", "gpu", 0))          # prefill done
    s.handle(StepFinished(0.11, "l", "gpu", 1))         # first token
    s.handle(StepFinished(0.2, "l", "gpu", 10))         # last token
    (rec,) = records(s.handle(JobFinished(0.2, "l", "gpu")))
    assert rec.tokens == 10
    assert rec.first_token_s == pytest.approx(0.11)
    assert rec.decode_s == pytest.approx(0.1)           # 0.1 .. 0.2
    assert rec.tokens / rec.decode_s == pytest.approx(100.0)


def test_an_llm_that_stops_at_its_end_of_sequence_token_keeps_its_token_count():
    s = sched()
    s.handle(JobArrived(0.0, job("l", model="llm", priority=10, prompt=100, new=10)))
    s.handle(StepFinished(0.1, "l", "gpu", 0))
    for k in range(1, 5):
        s.handle(StepFinished(0.1 + 0.01 * (k - 1), "l", "gpu", k))
    (rec,) = records(s.handle(JobFinished(0.13, "l", "gpu")))     # EOS was token 4
    assert rec.status is JobStatus.COMPLETED and rec.tokens == 4


def test_every_job_ends_once_in_a_random_event_sequence():
    """Drive the core by hand with a seeded random driver: arrivals, finishes of dispatched
    jobs, freezes honoured, random cancels; then drain. Each job: exactly one record."""
    import random
    rng = random.Random(7)
    s = sched()
    running: dict[str, str] = {}
    frozen_pending: set[str] = set()
    seen: dict[str, int] = {}
    t = 0.0
    ids = []

    def apply(out):
        for a in out:
            if isinstance(a, (Dispatch, Unfreeze)):
                running[a.job_id] = a.unit
            elif isinstance(a, Freeze):
                frozen_pending.add(a.job_id)
            elif isinstance(a, WithdrawFreeze):
                frozen_pending.discard(a.job_id)
            elif isinstance(a, Cancel):
                running.pop(a.job_id, None)
            elif isinstance(a, Complete):
                seen[a.record.job.job_id] = seen.get(a.record.job.job_id, 0) + 1
                running.pop(a.record.job.job_id, None)

    for i in range(300):
        t += rng.uniform(0.0, 0.01)
        r = rng.random()
        if r < 0.45:
            model = rng.choice(["cnn", "bert", "long", "llm", "cpuonly", "ghost"])
            jid = f"j{i}"
            ids.append(jid)
            apply(s.handle(JobArrived(t, job(jid, model=model, priority=rng.randrange(256),
                                             t=t, prompt=8, new=3))))
        elif r < 0.8 and running:
            jid = rng.choice(sorted(running))
            if jid in frozen_pending:
                frozen_pending.discard(jid)
                unit = running.pop(jid)
                apply(s.handle(JobFrozen(t, jid, unit, 1)))
            else:
                apply(s.handle(JobFinished(t, jid, running.pop(jid), ok=rng.random() > 0.1)))
        elif r < 0.9 and ids:
            apply(s.handle(CancelRequested(t, rng.choice(ids))))
        else:
            apply(s.handle(Tick(t)))
    for jid in ids:
        apply(s.handle(CancelRequested(t + 1.0, jid, "drain")))
    assert s.live_jobs == 0
    assert sorted(seen) == sorted(ids)
    assert set(seen.values()) == {1}


def test_scheduler_reads_no_clock(monkeypatch):
    import time
    calls = []
    for name in ("time", "monotonic", "perf_counter", "sleep"):
        monkeypatch.setattr(time, name, lambda *a, _n=name: calls.append(_n) or 0.0)
    s = sched()
    s.handle(JobArrived(0.0, job("a")))
    s.handle(Tick(0.1))
    s.handle(JobFinished(0.2, "a", "gpu"))
    assert calls == []


def test_a_learned_run_time_refreshes_the_parked_slowdown_of_its_model_and_unit():
    # 11 W: the GPU alone would need 11.5 W at 1 GHz fully busy, so idle it waits at 500 MHz
    # (test_power); a short job's small duty cycle lets it run at 1 GHz
    s = sched(budget_w=11.0)
    s.handle(Tick(0.0))
    gpu = s.units["gpu"]
    half = gpu.spec.min_frequency_hz
    assert gpu.parked and gpu.freq_hz == half and gpu.work_freq_hz == 2 * half
    p = s.profiler
    # an earlier run at 500 MHz, as the catalog predicts it: that level is now known
    p.observe("cnn", "gpu", half, p.estimate_s("cnn", "gpu", half))

    def fresh() -> float:           # what the profiler says now, uncached
        return p.estimate_s("cnn", "gpu", half) / p.estimate_s("cnn", "gpu", gpu.work_freq_hz)

    s.handle(JobArrived(0.0, job("a", "cnn")))      # unparks the GPU: not a clean run
    a = s.jobs["a"]
    assert a.unit == "gpu" and not gpu.parked and gpu.freq_hz == 2 * half
    assert s._parked_slowdown(a, gpu) == pytest.approx(fresh()) == 2.0   # what it was mapped with
    s.handle(JobFinished(0.02, "a", "gpu"))
    s.handle(JobArrived(0.02, job("b", "cnn")))     # alone, at one clock: a clean run
    # "b" took 5x its estimate: the profiler learns that the clock matters less for it
    s.handle(JobFinished(0.02 + 5 * 0.01, "b", "gpu"))
    for k in range(1, 20):                          # idle: the GPU parks at 500 MHz again
        s.handle(Tick(0.1 * k))
    assert gpu.parked and gpu.freq_hz == half
    assert fresh() < 1.5
    assert s._parked_slowdown(a, gpu) == pytest.approx(fresh())
