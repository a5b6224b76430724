"""The evaluation document's computed parts: target checks, losses, preserved discussion."""

from __future__ import annotations

import pytest

from twill_ros.comparison import Comparison, Run, run_comparison
from twill_ros.core.catalog import load_catalog
from twill_ros.core.jobs import Job, JobRecord, JobStatus
from twill_ros.core.metrics import isolated_floor_ms
from twill_ros.core.platform import load_platform
from twill_ros.core.profiler import Profiler
from twill_ros.evaluation import (
    HAND_BEGIN,
    HAND_END,
    HAND_PLACEHOLDER,
    bench_markdown,
    checks_markdown,
    latency_floors_ms,
    losses,
    lost_jobs,
    preserved_discussion,
    target_checks,
)
from twill_ros.report import paired_markdown, paired_means, write_report
from twill_ros.resources import find_resource
from twill_ros.sim.simulator import EXEC_NOISE, SimResult
from twill_ros.sim.workload import Arrival, StreamSpec, Workload

WORKLOAD = Workload(name="paper_mix", duration_s=10.0, streams=(
    StreamSpec("camera", "yolov8s", Arrival("poisson", {"rate_hz": 1.0}), priority=200),
    StreamSpec("chat", "llama-3.2-1b", Arrival("poisson", {"rate_hz": 1.0}), priority=50),
))


def summary(policy: str, mean: float, *, camera_slowdown: float = 1.0, bvf: float = 0.0,
            tps: float | None = 20.0, chat_mean: float | None = 500.0) -> dict:
    def lat(m):
        return {"mean": m, "p50": m, "p95": m, "p99": m}

    return {"policy": policy, "budget_w": 15.0, "jobs": 10, "completed": 10, "failed": 0,
            "rejected": 0, "cancelled": 0, "latency_ms": lat(mean), "slowdown_mean": 1.0,
            "deadline_violation_rate": None, "power_w": {"mean": 9.0, "peak": 12.0},
            "budget_violation_fraction": bvf, "energy_j_per_job": 0.5,
            "llm": {"ttft_ms_mean": 100.0, "tps_mean": tps},
            "per_stream": {
                "camera": {"jobs": 8, "latency_ms": lat(mean), "slowdown_mean": camera_slowdown,
                           "deadline_violation_rate": None},
                "chat": {"jobs": 2, "latency_ms": lat(chat_mean), "slowdown_mean": 1.0,
                         "deadline_violation_rate": None}}}


def comparison(*summaries: dict) -> Comparison:
    runs = tuple(Run(s["policy"], s["budget_w"], s, SimResult([], [], [], 10.0))
                 for s in summaries)
    return Comparison(workload=WORKLOAD, platform="orin_nx_16gb", seed=1, runs=runs)


def test_targets_against_gpu_fifo_best_baseline_budget_and_high_priority_slowdown():
    checks = target_checks(comparison(
        summary("twill", 40.0, camera_slowdown=1.6, bvf=0.005),
        summary("gpu_fifo", 100.0),
        summary("edf", 50.0),
        summary("twill_no_dvfs", 10.0),          # ablations are not baselines
    ))
    by_name = {c.criterion.split(" (")[0]: c for c in checks}
    fifo = by_name["mean latency ≤ 0.46 × gpu_fifo"]
    assert (fifo.value, fifo.limit, fifo.passed) == (40.0, pytest.approx(46.0), True)
    best = by_name["mean latency ≤ 0.9 × best baseline"]
    assert "edf" in best.criterion and best.limit == pytest.approx(45.0) and best.passed
    assert by_name["budget violation fraction"].passed
    slow = [c for c in checks if "slowdown" in c.criterion]
    assert len(slow) == 1 and "'camera'" in slow[0].criterion      # chat has priority 50
    assert (slow[0].value, slow[0].passed) == (1.6, False)


def test_a_mean_latency_limit_below_the_floor_is_marked_unreachable():
    runs = comparison(summary("twill", 40.0), summary("gpu_fifo", 80.0), summary("edf", 50.0))
    checks = target_checks(runs, {15.0: 38.0})
    by_name = {c.criterion.split(" (")[0]: c for c in checks}
    fifo = by_name["mean latency ≤ 0.46 × gpu_fifo"]            # limit 36.8 < floor 38
    best = by_name["mean latency ≤ 0.9 × best baseline"]          # limit 45 >= floor: reachable
    assert (fifo.passed, fifo.unreachable) == (False, True)
    assert (best.passed, best.unreachable) == (True, False)
    assert by_name["budget violation fraction"].floor is None     # no floor outside latency
    table = checks_markdown(checks)
    assert "| 36.8 | 38 | **FAIL** (limit below floor) |" in table
    assert "| 45 | 38 | PASS |" in table
    assert not target_checks(runs)[0].unreachable                  # no floors: nothing marked


def test_the_latency_floor_bounds_every_policy_and_a_lone_job_reaches_it():
    lone = Workload(name="lone", duration_s=1.0, streams=(
        StreamSpec("classify", "resnet50", Arrival("trace", {"times_s": [0.1]})),))
    # at 20 W the idle GPU waits at its max clock: the lone job runs as fast as it can
    (run,) = run_comparison(lone, "orin_nx_16gb", (20.0,), ("twill",), seed=1).runs
    floor = isolated_floor_ms(run.result.records,
                              Profiler(load_catalog(), load_platform("orin_nx_16gb")))
    latency = run.summary["latency_ms"]["mean"]
    assert 1 - EXEC_NOISE <= latency / floor <= 1 + EXEC_NOISE
    mixed = run_comparison(WORKLOAD, "orin_nx_16gb", (10.0, 20.0), ("twill", "gpu_fifo", "edf"),
                           seed=3)
    floors = latency_floors_ms(mixed)
    assert set(floors) == {10.0, 20.0}
    for run in mixed.runs:
        assert run.summary["completed"] == run.summary["jobs"] > 0
        assert run.summary["latency_ms"]["mean"] >= floors[run.budget_w]


def test_the_latency_floor_is_on_the_platform_the_runs_used(tmp_path):
    """A platform file that reuses a shipped platform's name: the floors came from the
    shipped one, reloaded by name (a name no file ships ended the evaluation)."""
    shipped = find_resource("config/platforms/orin_nx_16gb.yaml").read_text()
    slow = tmp_path / "slow_gpu.yaml"       # the GPU half as fast, the name the same
    slow.write_text(shipped.replace("speed_scale: 1.0            # the catalog's reference",
                                    "speed_scale: 2.0            # the catalog's reference", 1))
    lone = Workload(name="lone", duration_s=1.0, streams=(
        StreamSpec("classify", "resnet50", Arrival("trace", {"times_s": [0.1]})),))
    comparison = run_comparison(lone, str(slow), (20.0,), ("twill",), seed=1)
    latency = comparison.runs[0].summary["latency_ms"]["mean"]
    floor = latency_floors_ms(comparison)[20.0]
    assert floor <= latency <= floor * (1 + EXEC_NOISE) / (1 - EXEC_NOISE)


def test_losses_report_the_best_rival_beyond_the_margin():
    found = losses(comparison(
        summary("twill", 40.0, tps=20.0, chat_mean=None),
        summary("gpu_fifo", 39.0, tps=25.0),       # 2.5 % better latency: below the margin
        summary("edf", 30.0, tps=21.0),            # 25 % better latency
        summary("dream", 35.0, tps=30.0),          # best tokens/s
    ))
    found = {loss.metric: loss for loss in found}
    assert (found["mean latency (ms)"].winner, found["mean latency (ms)"].value) == ("edf", 30.0)
    assert found["LLM tokens/s"].winner == "dream"
    chat = found["'chat' mean latency (ms)"]          # Twill completed no chat job
    assert chat.twill is None and chat.winner == "gpu_fifo"
    assert "budget violation fraction" not in found   # all equal


def test_lost_jobs_detects_missing_duplicate_and_unfinished_records():
    def rec(job_id: str, status: JobStatus = JobStatus.COMPLETED) -> JobRecord:
        return JobRecord(job=Job(job_id, "m", 100, 0.0), status=status)

    good = Run("twill", 15.0, {}, SimResult([rec("a"), rec("b")], [], [], 1.0))
    dup = Run("edf", 15.0, {}, SimResult([rec("a"), rec("a")], [], [], 1.0))
    live = Run("dream", 15.0, {}, SimResult([rec("a"), rec("b", JobStatus.QUEUED)], [], [], 1.0))
    c = Comparison(workload=WORKLOAD, platform="p", seed=0, runs=(good, dup, live))
    problems = lost_jobs(c, ["a", "b"])
    assert len(problems) == 2
    assert "edf" in problems[0] and "dream" in problems[1]


def test_policies_that_complete_other_jobs_are_compared_over_the_jobs_both_completed():
    """Leaving the 9 s job unfinished makes edf's overall mean (1.5 s) look better than
    Twill's (3.5 s); over the jobs both completed Twill is the faster (1 s against 1.5 s)."""
    def rec(job_id: str, latency_s: float | None) -> JobRecord:
        done = latency_s is not None
        return JobRecord(job=Job(job_id, "m", 100, 1.0),
                         status=JobStatus.COMPLETED if done else JobStatus.CANCELLED,
                         finish_s=1.0 + latency_s if done else None)

    def run(policy: str, budget: float, *latencies: float | None) -> Run:
        records = [rec(i, lat) for i, lat in zip("abc", latencies, strict=True)]
        return Run(policy, budget, {}, SimResult(records, [], [], 10.0))

    c = Comparison(workload=WORKLOAD, platform="p", seed=0, runs=(
        run("twill", 10.0, 0.5, 1.5, 9.0), run("edf", 10.0, 1.0, 2.0, None),
        run("gpu_fifo", 10.0, 0.7, 1.0, 2.0),                 # the same jobs: no row
        run("twill", 15.0, 0.5, None, None), run("edf", 15.0, None, 1.0, 2.0)))  # none shared
    (p,) = paired_means(c)
    assert (p.budget_w, p.policy, p.jobs) == (10.0, "edf", 2)
    assert (p.twill_ms, p.other_ms) == pytest.approx((1000.0, 1500.0))
    assert "| 10 W | edf | 2 | 1000.0 | 1500.0 | 0.67 |" in paired_markdown("w", [p])


def test_compare_report_compares_over_the_jobs_both_completed_when_the_sets_differ(tmp_path):
    """A flood of camera frames: gpu_fifo refuses more of them than Twill (a full queue), so
    REPORT.md adds the like-for-like table; where both complete every job it has none."""
    frames = StreamSpec("camera", "yolov8s", Arrival(
        "periodic", {"period_ms": 1.0, "jitter_ms": 0.0, "phase_ms": 0.0}), priority=200)
    flood = Workload(name="flood", duration_s=2.0, streams=(frames,))
    c = run_comparison(flood, "orin_nx_16gb", (10.0,), ("twill", "gpu_fifo"), seed=1)
    done = {run.policy: run.summary["completed"] for run in c.runs}
    assert done["twill"] > done["gpu_fifo"]
    (p,) = paired_means(c)
    assert p.policy == "gpu_fifo" and 0 < p.jobs <= done["gpu_fifo"]
    report = open(write_report(c, str(tmp_path / "flood")), encoding="utf-8").read()
    assert "## flood: like for like" in report
    assert f"| 10 W | gpu_fifo | {p.jobs} | {p.twill_ms:.1f} | {p.other_ms:.1f} |" in report
    lone = Workload(name="lone", duration_s=1.0, streams=(StreamSpec(
        "one", "resnet50", Arrival("trace", {"times_s": [0.1]})),))
    c = run_comparison(lone, "orin_nx_16gb", (10.0,), ("twill", "gpu_fifo"), seed=1)
    assert paired_means(c) == []
    assert "like for like" not in open(write_report(c, str(tmp_path / "lone")),
                                       encoding="utf-8").read()


def test_hand_written_discussion_is_preserved(tmp_path):
    doc = tmp_path / "EVALUATION.md"
    assert preserved_discussion(str(doc)) == HAND_PLACEHOLDER
    doc.write_text(f"# old\n{HAND_BEGIN}\nTwill loses on energy because...\n{HAND_END}\nrest\n")
    assert preserved_discussion(str(doc)) == "Twill loses on energy because..."


def test_bench_rows_show_verdicts_and_the_spread_of_repeated_runs():
    table = bench_markdown({"machine": "test box", "results": [
        {"name": "twin throughput, paper_mix: median of 9 runs", "value": 21000.0,
         "unit": "jobs/s", "target": 20000.0, "target_text": "≥ 20,000 jobs/s",
         "passed": True, "range": [17000.0, 31000.0]},
        {"name": "decision (tick): median", "value": 120.0, "unit": "µs", "target": 100.0,
         "target_text": "≤ 100 µs", "passed": False},
        {"name": "decision (tick): p99", "value": 300.0, "unit": "µs", "target": None,
         "target_text": "", "passed": None}]})
    assert ("| twin throughput, paper_mix: median of 9 runs | 21,000.0 jobs/s (slowest 17,000, "
            "fastest 31,000) | ≥ 20,000 jobs/s | PASS |") in table
    assert "| decision (tick): median | 120.0 µs | ≤ 100 µs | **FAIL** |" in table
    assert "| decision (tick): p99 | 300.0 µs |  |  |" in table
    assert table.endswith("Machine: test box.")
