"""Each policy's decision rule on small hand-checked cases (tiny platform, see
engine_fixtures: GPU 10 ms / DLA 20 ms / CPU 200 ms for ``cnn``, interference x1.5)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from engine_fixtures import LLM, PLATFORM, catalog, dnn, job, of, scheduler

from twill_ros.core import policies
from twill_ros.core.events import (
    CancelRequested,
    Complete,
    Dispatch,
    Freeze,
    JobArrived,
    JobFinished,
    JobFrozen,
    Migrate,
    StepFinished,
    Tick,
    Unfreeze,
    WithdrawFreeze,
)
from twill_ros.core.jobs import JobStatus
from twill_ros.core.policies import POLICIES, make_policy
from twill_ros.core.policies.base import Policy
from twill_ros.core.scheduler import Scheduler
from twill_ros.sim.simulator import simulate

BUDGET = 20.0      # everything fits at max clock on the tiny platform (2 + 8 + 2 + 4 = 16 W)


def sched(policy: str) -> Scheduler:
    s = scheduler(policy, BUDGET)
    s.handle(Tick(0.0))
    return s


def dispatches(out):
    return [(a.job_id, a.unit) for a in out if isinstance(a, Dispatch)]


def _class_docstring(cls: type) -> str | None:
    """Read from the source: a class compiled with mypyc (twill_ros.native) keeps no __doc__."""
    source = Path(policies.__file__).parent / (cls.__module__.rsplit(".", 1)[1] + ".py")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    return next(ast.get_docstring(node) for node in tree.body
                if isinstance(node, ast.ClassDef) and node.name == cls.__name__)


def test_registry_has_every_policy_and_rejects_unknown_names():
    assert set(POLICIES) == {"twill", "gpu_fifo", "fcfs_affinity", "edf", "min_finish",
                             "dream", "twill_no_freeze", "twill_no_dvfs", "twill_no_migration"}
    for name in POLICIES:
        p = make_policy(name)
        assert isinstance(p, Policy) and p.name == name
        doc = _class_docstring(type(p))
        assert doc and len(doc) > 80   # decision rule documented
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        make_policy("nope")


def test_ablations_switch_off_exactly_one_feature():
    full = make_policy("twill")
    assert (full.freezing, full.migration, full.dvfs) == (True, True, True)
    assert not make_policy("twill_no_freeze").freezing
    assert not make_policy("twill_no_migration").migration
    assert not make_policy("twill_no_dvfs").dvfs
    assert make_policy("twill_no_dvfs").freezing and make_policy("twill_no_freeze").dvfs


# ------------------------------------------------------------------ twill


def test_twill_maps_idle_cnn_to_fastest_unit():
    assert dispatches(sched("twill").handle(JobArrived(0.0, job("c", "cnn")))) == [("c", "gpu")]


def test_twill_counts_backlog_and_interference_to_pick_the_dla():
    s = sched("twill")
    s.handle(JobArrived(0.0, job("l1", "long", 200)))
    s.handle(JobArrived(0.0, job("l2", "long", 200)))          # queued behind l1
    # GPU: ~100 ms queued at a higher priority; DLA: 20 ms x1.5 (GPU busy) = 30 ms; CPU 200 ms
    out = s.handle(JobArrived(0.001, job("c", "cnn", 100)))
    assert dispatches(out) == [("c", "dla0")]


def test_twill_lets_a_short_job_bypass_a_long_one_on_a_priority_stream():
    s = sched("twill")
    s.handle(JobArrived(0.0, job("l", "long", 200)))
    out = s.handle(JobArrived(0.001, job("c", "cnn", 100)))
    (d,) = of(out, Dispatch)
    # 10 ms <= 25 % of the 100 ms job: starts beside it with most of the GPU
    assert (d.job_id, d.unit, d.share) == ("c", "gpu", 9.0)


def test_twill_starts_a_more_important_job_beside_one_unless_that_is_about_to_finish():
    # weights 1 + priority / 64: hi 4.125, lo 2.5625; hi runs 10 ms alone, 11.1 ms at 90 % of
    # the GPU, and lo waits ~10 ms meanwhile. Saved = lo's 9 ms left + 10 - 11.1 = 7.9 ms:
    # 4.125 x 7.9 > 2.5625 x 10, beside it; with 5 ms left, 4.125 x 3.9 < 25.6: waits.
    for t, started in ((0.001, [("hi", "gpu")]), (0.005, [])):
        s = sched("twill")
        s.handle(JobArrived(0.0, job("lo", "bert", 100)))
        out = s.handle(JobArrived(t, job("hi", "bert", 200)))
        assert dispatches(out) == started
    assert dispatches(s.handle(JobFinished(0.01, "lo", "gpu"))) == [("hi", "gpu")]


def test_twill_freezes_low_priority_llm_for_high_priority_job_and_unfreezes_after():
    s = sched("twill")
    s.handle(JobArrived(0.0, job("llm", "llm", 10, prompt=64, new=10)))
    out = s.handle(JobArrived(0.01, job("hi", "bert", 200)))
    assert of(out, Freeze) == [Freeze("llm")]
    assert dispatches(out) == [("hi", "gpu")]
    assert s.handle(JobFrozen(0.064, "llm", "gpu", 0)) == []     # hi still running
    out = s.handle(JobFinished(0.075, "hi", "gpu"))
    assert of(out, Unfreeze) == [Unfreeze("llm", "gpu")]


def test_twill_withdraws_a_freeze_once_the_job_it_made_room_for_is_done():
    s = sched("twill")
    s.handle(JobArrived(0.0, job("llm", "llm", 10, prompt=64, new=10)))
    out = s.handle(JobArrived(0.01, job("hi", "bert", 200)))
    assert Freeze("llm") in out and dispatches(out) == [("hi", "gpu")]   # beside the llm
    out = s.handle(JobFinished(0.02, "hi", "gpu"))      # before the llm's step boundary
    assert of(out, WithdrawFreeze) == [WithdrawFreeze("llm")]
    assert s.jobs["llm"].status is JobStatus.RUNNING
    out = s.handle(JobFinished(0.3, "llm", "gpu"))
    (done,) = [a.record for a in out if isinstance(a, Complete)]
    assert done.status is JobStatus.COMPLETED and done.freezes == 0


def test_twill_keeps_the_freeze_while_more_important_work_still_waits():
    s = sched("twill")
    s.handle(JobArrived(0.0, job("llm", "llm", 10, prompt=64, new=10)))
    s.handle(JobArrived(0.01, job("hi", "bert", 200, stream="a")))
    s.handle(JobArrived(0.011, job("hi2", "bert", 200, stream="a")))
    out = s.handle(JobFinished(0.02, "hi", "gpu"))
    assert not of(out, WithdrawFreeze)
    assert s.jobs["llm"].freeze_pending


def test_twill_does_not_freeze_for_lower_priority_work():
    s = sched("twill")
    s.handle(JobArrived(0.0, job("llm", "llm", 200, prompt=64, new=10)))
    out = s.handle(JobArrived(0.01, job("lo", "bert", 100)))
    assert not of(out, Freeze)


def test_twill_no_freeze_never_freezes():
    s = sched("twill_no_freeze")
    s.handle(JobArrived(0.0, job("llm", "llm", 10, prompt=64, new=10)))
    out = s.handle(JobArrived(0.01, job("hi", "bert", 200)))
    assert not of(out, Freeze)


def test_twill_ageing_serves_a_long_waiting_lower_priority_job_first():
    s = sched("twill")      # ageing 2 levels/s; the CPU cluster is exclusive (no bypass)
    s.handle(JobArrived(0.0, job("hold", "cpuonly", 255)))
    s.handle(JobArrived(0.0, job("old", "cpuonly", 100)))
    s.handle(JobArrived(60.0, job("new", "cpuonly", 150)))
    # at t=100: old has aged to 100 + 200 = 300 > new at 150 + 80 = 230
    out = s.handle(CancelRequested(100.0, "hold"))
    assert dispatches(out) == [("old", "cpu_a")]
    s2 = sched("twill")     # without the wait, priority wins
    s2.handle(JobArrived(0.0, job("hold", "cpuonly", 255)))
    s2.handle(JobArrived(0.0, job("old", "cpuonly", 100)))
    s2.handle(JobArrived(0.0, job("new", "cpuonly", 150)))
    assert dispatches(s2.handle(CancelRequested(1.0, "hold"))) == [("new", "cpu_a")]


def test_twill_ageing_never_keeps_a_more_important_job_from_starting_beside_running_work():
    s = sched("twill")
    s.handle(JobArrived(0.0, job("hold", "long", 100)))         # runs on the GPU
    s.handle(JobArrived(0.0, job("old", "long", 0)))            # GPU-only, may not bypass it
    assert s.jobs["old"].status is JobStatus.QUEUED
    # at t=100 s old has aged to 0 + 200 levels and heads the GPU queue, but it cannot start
    # beside hold; bert (150) still does, as it would without old (Smith: it saves more of
    # its weighted time than it costs hold)
    out = s.handle(JobArrived(100.0, job("hi", "bert", 150)))
    assert dispatches(out) == [("hi", "gpu")]
    assert s.jobs["old"].status is JobStatus.QUEUED


def test_twill_expects_a_short_job_to_start_beside_a_frozen_llm_once_that_resumes():
    """A frozen LLM that resumes before a short job, once the unit frees, does not hold it
    back: the short job then starts beside it (``_fill``), so the mapping must not count
    the LLM's remaining time as a wait and send the job to a 20x slower CPU."""
    s = sched("twill")
    s.handle(JobArrived(0.0, job("llm", "llm", 100, prompt=64, new=30)))   # 0.354 s on the GPU
    s.handle(JobArrived(0.01, job("hold", "long", 200)))     # freezes the llm, runs beside it
    s.handle(JobFrozen(0.064, "llm", "gpu", 0))
    out = s.handle(JobArrived(0.07, job("b", "bert", 100)))  # the llm's level: resumes first
    # on the GPU it bypasses hold (10 ms <= 25 % of hold's 100 ms): ~21 ms, where counting
    # the llm's 0.29 s left as a wait made cpu_a's 200 ms win
    assert dispatches(out) == [("b", "gpu")]


def test_twill_mapping_weighs_the_less_important_work_a_job_would_delay():
    """Smith's rule in the score: a camera frame with a near-equal DLA leaves a GPU where
    less important GPU work waits; without that queue it takes the GPU."""
    def held_gpu(berts: int):
        s = sched("twill")
        s.handle(JobArrived(0.0, job("hold", "long", 255)))
        for i in range(berts):     # the first starts beside hold (10 ms <= 25 % of it)
            s.handle(JobArrived(0.0, job(f"b{i}", "bert", 100)))
        return s
    s = held_gpu(berts=4)
    out = s.handle(JobArrived(0.001, job("cam", "cnn", 200)))
    cam = s.jobs["cam"]
    # 10 ms x the weight of the three berts (all served within a 100 ms period) / its own
    assert s.displaced_s(cam, "gpu") == pytest.approx(
        0.010 * 3 * (1 + 100 / 64) / (1 + 200 / 64))
    assert s.displaced_s(cam, "dla0") == 0.0
    assert dispatches(out) == [("cam", "dla0")]
    s = held_gpu(berts=0)       # nothing less important waits: beside hold on the GPU
    assert dispatches(s.handle(JobArrived(0.001, job("cam", "cnn", 200)))) == [("cam", "gpu")]


def test_twill_dvfs_counts_the_queued_work_a_period_gets_through_in_serve_order():
    s = sched("twill")
    s.handle(JobArrived(0.0, job("c0", "cpuonly", 100)))      # runs: 50 ms
    s.handle(JobArrived(0.0, job("c1", "cpuonly", 200)))      # queued: 50 ms
    s.handle(JobArrived(0.0, job("c2", "cpuonly", 50)))       # queued: 50 ms
    s.handle(JobArrived(0.0, job("c3", "cpullm", 0)))         # queued: 0.064 + 9 x 0.01 s
    # a 100 ms period gets through c1 and c2: their weights count in full, c3's not at all
    # (spreading the period over the whole 254 ms queue would count 39 % of each)
    assert s._demand()["cpu_a"].weight == pytest.approx(
        (1 + 100 / 64) + (1 + 200 / 64) + (1 + 50 / 64))


def test_twill_dvfs_counts_work_at_its_speed_there_relative_to_its_fastest_unit():
    s = sched("twill")
    for i in range(16):     # 1.6 s of GPU-only work at the highest priority
        s.handle(JobArrived(0.0, job(f"g{i}", "long", 255)))
    s.handle(JobArrived(0.0, job("l", "llm", 10)))     # 0.064 + 9 x 0.01 s on the GPU
    assert s.jobs["l"].unit == "cpu_a"                  # 1.54 s there beats 1.6 s of queue
    # a clock step on the CPU buys a tenth of what it would buy on the GPU for this job
    assert s._demand()["cpu_a"].weight == pytest.approx((1 + 10 / 64) * 0.154 / 1.54)


def test_twill_dvfs_counts_work_that_less_important_work_keeps_off_its_fastest_unit_in_full():
    """A job on a slower unit because less important work it can neither freeze nor start
    beside holds its fastest one: a clock step there serves it, so it counts in full."""
    s = sched("twill_no_freeze")
    s.handle(JobArrived(0.0, job("llm", "llm", 10, prompt=64, new=50)))   # GPU for 0.554 s
    s.handle(JobArrived(0.001, job("hi", "bert", 200)))
    assert s.jobs["hi"].unit == "cpu_a"     # 200 ms there beats waiting for the LLM
    # no clock step on the GPU serves it (it cannot freeze nor start beside the LLM): a
    # step on the CPU is its progress, at its full weight, not 10/200 of it
    assert s._demand()["cpu_a"].weight == pytest.approx(1 + 200 / 64)
    s = sched("twill_no_freeze")            # the GPU held by more important work instead
    for i in range(3):
        s.handle(JobArrived(0.0, job(f"g{i}", "long", 255)))
    s.handle(JobArrived(0.001, job("hi", "bert", 200)))
    assert s.jobs["hi"].unit == "cpu_a"
    assert s._demand()["cpu_a"].weight == pytest.approx((1 + 200 / 64) * 10 / 200)


def test_twill_moves_a_starved_llm_to_an_idle_cpu_once_it_waited_as_long_as_the_cpu_needs():
    s = sched("twill")
    s.handle(JobArrived(0.0, job("hold", "long", 200)))       # never finishes: GPU held
    s.handle(JobArrived(0.001, job("llm", "llm", 10, prompt=64, new=50)))
    # the prefill gives the first token, 49 decode passes follow:
    # 0.064 + 49 x 0.01 = 0.554 s there vs 0.64 + 49 x 0.1 = 5.54 s on cpu_a
    assert s.jobs["llm"].unit == "gpu"
    # expected finish on the GPU = max(snapshot wait, time waited) + 0.554 s; the CPU's 5.54 s
    # beats it by the margins once (waited + 0.554) x 0.85 - 0.002 > 5.54, i.e. after ~5.97 s
    out = s.handle(Tick(5.9))
    assert not of(out, Migrate)
    out = s.handle(Tick(6.1))
    assert Migrate("llm", "gpu", "cpu_a") in out and ("llm", "cpu_a") in dispatches(out)


def _saturating_stream(priority: int, seconds: float) -> list:
    """A 10 ms GPU/200 ms CPU job every 9.9 ms: more than the GPU can do at max clock."""
    return [job(f"h{i}", "bert", priority, i * 0.0099, stream="hi")
            for i in range(int(seconds / 0.0099))]


def test_twill_llm_is_not_starved_by_a_saturating_high_priority_stream():
    # before: the LLM waited on the GPU until the stream ended (done at ~40.7 s); now it moves
    # to the idle CPU cluster after ~6.5 s of waiting and finishes there (~5.6 s)
    jobs = _saturating_stream(200, 40.0) + [job("llm", "llm", 10, 0.005, prompt=64, new=50)]
    recs = {r.job.job_id: r for r in simulate(jobs, PLATFORM, catalog(), "twill", 20.0, 1,
                                              40.0).records}
    assert recs["llm"].status is JobStatus.COMPLETED and recs["llm"].unit == "cpu_a"
    assert recs["llm"].finish_s < 15.0
    assert all(r.status is JobStatus.COMPLETED for r in recs.values())


def test_twill_ageing_runs_a_gpu_only_llm_beside_a_saturating_stream():
    # ageing 2 levels/s: the LLM (10) overtakes the stream's fresh frames (60) after 25 s; then
    # frames start beside it with ~90 % of the GPU, so it takes ~10 x its 0.564 s alone.
    # (1 level/s: not before 50 s, i.e. after this 40 s stream.)
    cat = catalog()
    cat.add(dataclasses.replace(LLM, id="gpullm", prefill_tokens_per_s={"gpu": 1000.0},
                                decode_tokens_per_s={"gpu": 100.0},
                                freq_sensitivity={"gpu": 1.0}, utilization={"gpu": 1.0}))
    jobs = _saturating_stream(60, 40.0) + [job("llm", "gpullm", 10, 0.005, prompt=64, new=50)]
    recs = {r.job.job_id: r for r in simulate(jobs, PLATFORM, cat, "twill", 20.0, 1,
                                              40.0).records}
    llm = recs["llm"]
    assert llm.status is JobStatus.COMPLETED and llm.unit == "gpu"
    assert 24.0 < llm.start_s < 26.0 and llm.finish_s < 35.0
    # the stream kept ~90 % of the GPU meanwhile: its frames were not frozen out
    during = [r for r in recs.values() if r.job.stream == "hi" and llm.start_s < r.finish_s
              < llm.finish_s]
    assert len(during) > 0.85 * (llm.finish_s - llm.start_s) / 0.0099 * 0.9


def llm_frozen_for(urgent_model: str):
    """LLM job "a" frozen at 0.064 s for the urgent job "hi", LLM job "b" of the same
    level queued after it."""
    s = sched("twill")
    s.handle(JobArrived(0.0, job("a", "llm", 10, prompt=64, new=10)))
    s.handle(JobArrived(0.01, job("hi", urgent_model, 200)))
    s.handle(JobArrived(0.02, job("b", "llm", 10, prompt=64, new=10)))   # same level, later
    s.handle(JobFrozen(0.064, "a", "gpu", 0))
    return s


def test_twill_frozen_job_resumes_before_same_priority_newcomer():
    s = llm_frozen_for("bert")
    out = s.handle(JobFinished(0.075, "hi", "gpu"))
    assert of(out, Unfreeze) == [Unfreeze("a", "gpu")]
    assert ("b", "gpu") not in dispatches(out)


def test_a_frozen_job_expects_to_wait_only_for_work_served_before_it():
    s = llm_frozen_for("long")
    a, b = s.jobs["a"], s.jobs["b"]
    hi_left = s.jobs["hi"].expected_end - 0.064
    # a resumes before b (same level, earlier), so only hi is ahead of it (b was counted too)
    assert s.start_s(a, "gpu") == pytest.approx(hi_left)
    assert s.start_s(b, "gpu") == pytest.approx(hi_left + s.estimate_s(a, "gpu"))


def test_twill_migrates_a_queued_job_to_a_unit_that_frees_up():
    s = sched("twill")
    s.handle(JobArrived(0.0, job("l1", "long", 200)))
    s.handle(JobArrived(0.0, job("l2", "long", 200)))
    s.handle(JobArrived(0.0, job("d", "dlaonly", 200)))                 # DLA busy 50 ms
    out = s.handle(JobArrived(0.001, job("c", "cnn", 100)))
    assert dispatches(out) == []                                        # waits on the DLA
    assert s.jobs["c"].unit == "dla0"
    s.handle(CancelRequested(0.002, "l2"))
    out = s.handle(CancelRequested(0.002, "l1"))                        # GPU now idle
    assert Migrate("c", "dla0", "gpu") in out
    assert ("c", "gpu") in dispatches(out)
    assert s.jobs["c"].record.migrations == 1


def test_twill_migration_counts_the_work_held_on_the_source_once():
    # "m": 50 ms on cpu_a, 80 ms on dla0. The CPU LLM (prio 10, 45 tokens x 10 ms left) is
    # frozen for "a" (prio 100, runs 0.104-0.154 s); "b" (prio 100) queues behind "a".
    cat = catalog()
    cat.add(dnn("m", {"dla": 80.0, "cpu": 50.0}, dla=True))
    s = scheduler("twill", BUDGET, cat)
    s.handle(Tick(0.0))
    s.handle(JobArrived(0.0, job("cl", "cpullm", 10, prompt=64, new=50)))
    s.handle(StepFinished(0.064, "cl", "cpu_a", 0))
    s.handle(StepFinished(0.064, "cl", "cpu_a", 1))
    assert of(s.handle(JobArrived(0.1, job("a", "m", 100))), Freeze) == [Freeze("cl")]
    s.handle(JobFrozen(0.104, "cl", "cpu_a", 5))
    s.handle(JobArrived(0.13, job("b", "m", 100)))
    assert s.jobs["b"].unit == "cpu_a"          # 24 + 50 = 74 ms there vs 80 ms on dla0
    # at 0.14 s: 14 ms of "a" + 50 ms = 64 ms on cpu_a (the less important frozen LLM holds
    # no one back) vs 80 ms on the idle dla0: b stays. The migration scan once counted the
    # work held on cpu_a twice (14 + 450 ms again: 528 ms) and moved b to the slower unit.
    out = s.handle(Tick(0.14))
    assert not of(out, Migrate) and s.jobs["b"].unit == "cpu_a"


def test_twill_migration_weighs_the_less_important_work_a_job_delays():
    """Migration decides by the mapping score, Smith's rule included: a job that holds less
    important work back where it waits moves to a unit that finishes it only a bit later."""
    cat = catalog()
    cat.add(dnn("h", {"gpu": 30.0}, dla=False))
    cat.add(dnn("g", {"gpu": 30.0}, dla=False))
    cat.add(dnn("m", {"gpu": 40.0, "cpu": 50.0}, dla=False))
    s = scheduler("twill", BUDGET, cat)
    s.handle(Tick(0.0))
    s.handle(JobArrived(0.0, job("h", "h", 255)))               # GPU busy until 0.03 s
    s.handle(JobArrived(0.0, job("c1", "cpuonly", 255)))        # cpu_a busy until 0.1 s
    s.handle(JobArrived(0.0, job("c2", "cpuonly", 255)))
    s.handle(JobArrived(0.001, job("m", "m", 200)))             # 29 + 40 ms vs 99 + 50 ms
    s.handle(JobArrived(0.002, job("g", "g", 100)))             # GPU only: behind m
    m = s.jobs["m"]
    assert m.unit == "gpu" and s.jobs["g"].unit == "gpu"
    assert s.displaced_s(m, "gpu") == pytest.approx(0.040 * (1 + 100 / 64) / (1 + 200 / 64))
    s.handle(CancelRequested(0.02, "c2"))
    out = s.handle(CancelRequested(0.02, "c1"))                 # cpu_a now idle
    # m on the GPU: waited 19 ms (> h's 10 ms left) + 40 ms + 24.8 ms (g held back) = 83.8
    # ms; on cpu_a 50 ms < 83.8 x 0.85 - 2 ms: it moves and g starts 40 ms sooner. Its own
    # finish alone (59 ms, x 0.85 - 2 = 48 ms) gains too little to move it.
    assert Migrate("m", "gpu", "cpu_a") in out and m.unit == "cpu_a"


def test_twill_no_migration_keeps_the_job_where_it_was_mapped():
    s = sched("twill_no_migration")
    s.handle(JobArrived(0.0, job("l1", "long", 200)))
    s.handle(JobArrived(0.0, job("l2", "long", 200)))
    s.handle(JobArrived(0.0, job("d", "dlaonly", 200)))
    s.handle(JobArrived(0.001, job("c", "cnn", 100)))
    s.handle(CancelRequested(0.002, "l2"))
    out = s.handle(CancelRequested(0.002, "l1"))
    assert not of(out, Migrate)
    assert s.jobs["c"].unit == "dla0"


# ------------------------------------------------------------------ baselines


def test_gpu_fifo_shares_the_gpu_between_streams_and_serialises_each_stream():
    s = sched("gpu_fifo")
    out = s.handle(JobArrived(0.0, job("a1", "cnn", stream="A")))
    out += s.handle(JobArrived(0.0, job("b1", "cnn", stream="B")))
    out += s.handle(JobArrived(0.0, job("a2", "cnn", stream="A")))
    assert dispatches(out) == [("a1", "gpu"), ("b1", "gpu")]         # DLA-able, still GPU
    out = s.handle(JobFinished(0.02, "a1", "gpu"))
    assert dispatches(out) == [("a2", "gpu")]


def test_gpu_fifo_uses_static_caps_for_the_gpu_only():
    s = scheduler("gpu_fifo", 7.0)
    out = s.handle(Tick(0.0))
    freqs = {a.unit: a.freq_hz for a in out}
    # GPU fully busy: 2 + 8 * (f / 1 GHz)^2 <= 7 W -> 500 MHz (1 GHz would be 10 W)
    assert freqs == {"gpu": 500_000_000, "dla0": 500_000_000, "cpu_a": 1_000_000_000}
    assert s.controller is None


def test_fcfs_affinity_shares_the_gpu_between_streams():
    s = sched("fcfs_affinity")
    out = s.handle(JobArrived(0.0, job("a1", "bert", stream="A")))
    out += s.handle(JobArrived(0.0, job("b1", "bert", stream="B")))
    out += s.handle(JobArrived(0.0, job("a2", "bert", stream="A")))
    assert dispatches(out) == [("a1", "gpu"), ("b1", "gpu")]
    assert dispatches(s.handle(JobFinished(0.02, "a1", "gpu"))) == [("a2", "gpu")]


def test_fcfs_affinity_sends_dla_compatible_models_to_the_dla_even_if_gpu_idle():
    s = sched("fcfs_affinity")
    out = s.handle(JobArrived(0.0, job("c", "cnn")))
    out += s.handle(JobArrived(0.0, job("b", "bert")))
    out += s.handle(JobArrived(0.0, job("x", "cpuonly")))
    assert dispatches(out) == [("c", "dla0"), ("b", "gpu"), ("x", "cpu_a")]
    out = s.handle(JobArrived(0.001, job("c2", "cnn")))
    assert dispatches(out) == []              # waits for the DLA rather than using the GPU


def test_edf_serves_the_earliest_deadline_first():
    s = sched("edf")
    s.handle(JobArrived(0.0, job("l", "long", deadline_s=1.0)))
    s.handle(JobArrived(0.001, job("none", "bert")))                     # no deadline
    s.handle(JobArrived(0.002, job("late", "bert", deadline_s=0.5)))     # due at 0.502
    out = s.handle(JobArrived(0.003, job("urgent", "bert", deadline_s=0.2)))   # due at 0.203
    assert dispatches(out) == []        # a DNN with a deadline runs to the end, alone
    assert s.jobs["none"].unit == s.jobs["late"].unit == s.jobs["urgent"].unit == "gpu"
    assert dispatches(s.handle(JobFinished(0.1, "l", "gpu"))) == [("urgent", "gpu")]
    assert dispatches(s.handle(JobFinished(0.11, "urgent", "gpu"))) == [("late", "gpu")]
    assert dispatches(s.handle(JobFinished(0.12, "late", "gpu"))) == [("none", "gpu")]


def test_edf_preempts_work_without_a_deadline_for_work_with_one():
    s = sched("edf")
    s.handle(JobArrived(0.0, job("llm", "llm", 200, prompt=64, new=10)))   # priority is no key
    out = s.handle(JobArrived(0.01, job("lo", "bert", 10)))                 # no deadline: waits
    assert not of(out, Freeze) and dispatches(out) == []
    out = s.handle(JobArrived(0.02, job("due", "bert", 10, deadline_s=0.05)))
    # the LLM stops at its next step boundary; on the GPU the job starts beside it at once
    assert of(out, Freeze) == [Freeze("llm")]
    assert dispatches(out) == [("due", "gpu")]
    s2 = sched("edf")
    s2.handle(JobArrived(0.0, job("l", "long")))                # a DNN without a deadline
    out = s2.handle(JobArrived(0.01, job("due", "bert", deadline_s=0.05)))
    assert dispatches(out) == [("due", "gpu")]                  # beside it, on a priority stream
    assert s2.jobs["due"].share > s2.jobs["l"].share


def test_only_twill_lets_a_short_job_bypass_one_as_important():
    for policy, started in (("twill", [("short", "gpu")]), ("edf", [])):
        s = sched(policy)
        s.handle(JobArrived(0.0, job("l", "long", deadline_s=1.0)))
        out = s.handle(JobArrived(0.01, job("short", "bert", deadline_s=1.0)))
        assert dispatches(out) == started, policy


def test_min_finish_is_fifo_and_picks_the_earliest_expected_finish():
    s = sched("min_finish")
    s.handle(JobArrived(0.0, job("l", "long")))
    s.handle(JobArrived(0.001, job("first", "bert")))
    s.handle(JobArrived(0.002, job("second", "bert", deadline_s=0.2)))
    out = s.handle(JobFinished(0.1, "l", "gpu"))
    assert dispatches(out) == [("first", "gpu")]                       # arrival order
    s2 = sched("min_finish")
    for i in range(3):
        s2.handle(JobArrived(0.0, job(f"l{i}", "long")))                # 300 ms of GPU work
    out = s2.handle(JobArrived(0.0, job("b", "bert")))                  # CPU: 200 ms < 310 ms
    assert dispatches(out) == [("b", "cpu_a")]


def test_dream_serves_the_most_urgent_job_first():
    s = sched("dream")
    s.handle(JobArrived(0.0, job("l", "long")))
    s.handle(JobArrived(0.001, job("relaxed", "bert", deadline_s=5.0)))
    s.handle(JobArrived(0.002, job("tight", "bert", deadline_s=0.15)))
    out = s.handle(JobFinished(0.1, "l", "gpu"))
    assert dispatches(out) == [("tight", "gpu")]


def test_dream_prefers_the_energy_cheaper_unit_when_finish_times_are_close():
    s = sched("dream")
    s.handle(JobArrived(0.0, job("l", "long")))      # GPU: 100 ms, only 1 ms short of...
    # cnn: GPU finish 110 ms at 80 mJ vs DLA 30 ms (x1.5 interference) at 40 mJ -> DLA
    out = s.handle(JobArrived(0.0, job("c", "cnn")))
    assert dispatches(out) == [("c", "dla0")]
