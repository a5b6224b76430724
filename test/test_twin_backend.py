"""TwinBackend: real threads, real (short) time, against the real platform file and Profiler.

The catalog is built here with models slow enough (tens of ms) to measure in real time. The
twin stamps events with the exact predicted instants, so an event time is checked against the
interval in which the call that caused it read the clock (robust to a loaded machine), and
the delivery bound (event received shortly after its ``t``) checks the worker wakes in time.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from backend_fixtures import Recorder as BaseRecorder

from twill_ros.backends import Backend, make_backend
from twill_ros.backends.twin import FAILURE_MESSAGE, TwinBackend
from twill_ros.core.catalog import Catalog, ModelProfile
from twill_ros.core.events import Event, JobFinished, JobFrozen, StepFinished
from twill_ros.core.jobs import Job
from twill_ros.core.platform import load_platform
from twill_ros.core.profiler import Profiler

CNN = ModelProfile(
    id="cnn", kind="dnn", precision="fp16", input="test", inputs=(), dla_fraction=1.0,
    dla_compatible=True, latency_s={"gpu": 0.08, "dla": 0.12, "cpu": 0.15},
    freq_sensitivity={"gpu": 0.8, "dla": 0.8, "cpu": 0.8},
    utilization={"gpu": 0.5, "dla": 1.0, "cpu": 1.0}, memory_mb=1.0, sources=("test",))
LLM = ModelProfile(
    id="llm", kind="llm", precision="fp16", input="test", inputs=(), dla_fraction=0.0,
    dla_compatible=False, prefill_tokens_per_s={"gpu": 1000.0, "cpu": 500.0},
    decode_tokens_per_s={"gpu": 100.0, "cpu": 50.0}, freq_sensitivity={"gpu": 0.3, "cpu": 0.5},
    utilization={"gpu": 0.9, "cpu": 1.0}, memory_mb=1.0, default_prompt_tokens=40,
    default_max_new_tokens=8, sources=("test",))
UNITS = ("gpu", "dla0", "dla1", "cpu_a", "cpu_b")
PLATFORM = load_platform("orin_nx_16gb")
EPS = 1e-4          # float noise in the twin's interpolated event times
LATE_S = 0.1        # an event reaches the sink at most this long after its t


# The twin's events must also arrive promptly: short waits, lateness checked.
Recorder = functools.partial(BaseRecorder, timeout_s=3.0, max_late_s=LATE_S)


@pytest.fixture
def profiler() -> Profiler:
    return Profiler(Catalog({"cnn": CNN, "llm": LLM}), PLATFORM)


@pytest.fixture
def twin(profiler):
    """Factory: ``twin(fail_models=...)`` -> (backend, recorder); every backend is closed after."""
    made: list[TwinBackend] = []

    def make(**kwargs) -> tuple[TwinBackend, Recorder]:
        rec = Recorder()
        backend = TwinBackend(UNITS, PLATFORM, profiler.catalog, profiler, rec, time.monotonic,
                              **kwargs)
        made.append(backend)
        return backend, rec

    yield make
    for backend in made:
        backend.close()


def cnn(job_id: str) -> Job:
    return Job(job_id, "cnn", priority=100, submit_s=0.0)


def llm(job_id: str, new_tokens: int = 8, prompt_tokens: int = 40) -> Job:
    return Job(job_id, "llm", priority=100, submit_s=0.0, prompt_tokens=prompt_tokens,
               max_new_tokens=new_tokens)


@dataclass(frozen=True)
class Window:
    """The twin read its clock for a call somewhere in ``[lo, hi]``."""

    lo: float
    hi: float


def timed(call: Callable[..., None], *args: object) -> Window:
    lo = time.monotonic()
    call(*args)
    return Window(lo, time.monotonic())


def assert_after(t: float, window: Window, offset: float) -> None:
    """``t`` is ``offset`` seconds after the call made in ``window``."""
    assert window.lo + offset - EPS <= t <= window.hi + offset + EPS, (t - window.lo, offset)


def f_max(unit: str) -> int:
    return PLATFORM.unit(unit).max_frequency_hz


def tokens_of(events: list[Event]) -> list[int]:
    return [e.tokens for e in events if isinstance(e, StepFinished)]


def test_dnn_job_occupies_its_unit_for_the_estimate(twin, profiler):
    backend, rec = twin()
    est = profiler.estimate_s("cnn", "gpu", f_max("gpu"))
    window = timed(backend.start, cnn("a"), "gpu")
    done = rec.finished("a")
    assert done.ok and done.unit == "gpu"
    assert_after(done.t, window, est)
    assert rec.of("a") == [done]


def test_halving_the_clock_slows_by_the_profiler_ratio(twin, profiler):
    backend, rec = twin()
    backend.set_frequency("dla1", 400_000_000)          # snaps down to the 307.2 MHz step
    half = backend.frequency_hz("dla1")
    assert half == 307_200_000 == f_max("dla1") // 2
    time.sleep(PLATFORM.dvfs_transition_s + 0.01)
    fast = timed(backend.start, cnn("fast"), "dla0")
    slow = timed(backend.start, cnn("slow"), "dla1")
    est = profiler.estimate_s("cnn", "dla1", f_max("dla1"))
    ratio = profiler.estimate_s("cnn", "dla1", half) / est
    assert ratio == pytest.approx(1.8)                  # s = 0.8: 0.8 * 2 + 0.2
    assert_after(rec.finished("fast").t, fast, est)
    assert_after(rec.finished("slow").t, slow, est * ratio)


def test_clock_change_mid_job_applies_after_the_transition_to_the_work_left(twin, profiler):
    backend, rec = twin()
    est = profiler.estimate_s("cnn", "cpu_a", f_max("cpu_a"))
    start = timed(backend.start, cnn("a"), "cpu_a")
    time.sleep(est / 2)
    change = timed(backend.set_frequency, "cpu_a", f_max("cpu_a") // 2)
    low = backend.frequency_hz("cpu_a")
    stretch = profiler.estimate_s("cnn", "cpu_a", low) / est
    assert stretch > 1.5
    end = rec.finished("a").t

    def expected(started: float, changed: float) -> float:
        """Full speed until the clock switches (dvfs later), the work left stretched after."""
        switch = changed + PLATFORM.dvfs_transition_s
        return switch + (est - (switch - started)) * stretch

    # the end moves later with the start and earlier with the switch
    assert expected(start.lo, change.hi) - EPS <= end <= expected(start.hi, change.lo) + EPS


def test_jobs_sharing_a_processor_shared_unit_each_take_twice_as_long(twin, profiler):
    backend, rec = twin()
    assert PLATFORM.unit("gpu").sharing == "processor_shared"
    est = profiler.estimate_s("cnn", "gpu", f_max("gpu"))
    a = timed(backend.start, cnn("a"), "gpu")
    b = timed(backend.start, cnn("b"), "gpu")
    # a runs alone until b starts, then both at half speed: b ends 2 * est after a started
    assert_after(rec.finished("b").t, a, 2 * est)
    a_end = rec.finished("a").t
    assert 2 * a.lo - b.hi + 2 * est - EPS <= a_end <= 2 * a.hi - b.lo + 2 * est + EPS


def test_gpu_and_dla_jobs_slow_each_other_by_the_interference_factors(twin, profiler):
    backend, rec = twin()
    factor = {(i.victim, i.aggressor): i.factor for i in PLATFORM.interference}
    gpu_est = profiler.estimate_s("cnn", "gpu", f_max("gpu"))
    dla_est = profiler.estimate_s("cnn", "dla0", f_max("dla0"))
    g = timed(backend.start, cnn("g"), "gpu")
    d = timed(backend.start, cnn("d"), "dla0")
    gpu_end = rec.finished("g").t
    dla_end = rec.finished("d").t
    # both start together (to within the calls); the gpu job runs wholly beside the longer
    # dla job, which is slowed until the gpu job ends and then runs at full speed
    skew = 3 * (d.hi - g.lo) + EPS
    assert gpu_end - g.lo == pytest.approx(gpu_est * factor[("gpu", "dla")], abs=skew)
    dla_left = dla_est - (gpu_end - d.lo) / factor[("dla", "gpu")]
    assert dla_end == pytest.approx(gpu_end + dla_left, abs=skew)
    assert dla_end - d.lo > dla_est + 0.01


def test_llm_reports_prefill_every_token_and_its_end(twin, profiler):
    backend, rec = twin()
    prefill = profiler.estimate_s("llm", "gpu", f_max("gpu"), 40, "prefill")
    decode = profiler.estimate_s("llm", "gpu", f_max("gpu"), 1, "decode")
    window = timed(backend.start, llm("q"), "gpu")
    done = rec.finished("q")
    events = rec.of("q")
    assert tokens_of(events) == list(range(9))          # 0 = prefill end, then 1..8
    assert events[-1] is done and done.ok and len(events) == 10
    assert_after(events[0].t, window, prefill)
    assert events[1].t == events[0].t                   # the prefill gives the first token
    gaps = [b.t - a.t for a, b in zip(events[1:-2], events[2:-1], strict=True)]
    assert gaps == pytest.approx([decode] * 7, abs=1e-6)
    assert done.t == events[-2].t                       # the last token ends the job


def test_freeze_mid_decode_then_resume_elsewhere_generates_only_the_rest(twin, profiler):
    backend, rec = twin()
    backend.start(llm("q"), "gpu")
    rec.wait_for(lambda e: isinstance(e, StepFinished) and e.tokens == 3)
    backend.freeze("q")
    frozen = rec.wait_for(lambda e: isinstance(e, JobFrozen))
    assert isinstance(frozen, JobFrozen) and frozen.unit == "gpu"
    k = frozen.tokens_done
    assert 3 <= k < 8
    assert tokens_of(rec.of("q")) == list(range(k + 1))
    time.sleep(0.03)
    assert not any(isinstance(e, (StepFinished, JobFinished)) and e.t > frozen.t
                   for e in rec.of("q")), "a frozen job must not progress"

    seen = len(rec.of("q"))
    window = timed(backend.start, llm("q"), "cpu_a", k)
    done = rec.finished("q")
    resumed = rec.of("q")[seen:]
    assert [e.unit for e in resumed] == ["cpu_a"] * len(resumed)
    assert tokens_of(resumed) == list(range(k + 1, 9))  # no second prefill
    decode_cpu = profiler.estimate_s("llm", "cpu_a", f_max("cpu_a"), 1, "decode")
    assert done.ok
    assert_after(done.t, window, (8 - k) * decode_cpu)


def test_freeze_during_prefill_keeps_the_prompt_for_the_resume(twin, profiler):
    backend, rec = twin()
    backend.start(llm("q", new_tokens=3, prompt_tokens=100), "gpu")
    backend.freeze("q")        # takes effect after the first chunk of 64 prompt tokens
    frozen = rec.wait_for(lambda e: isinstance(e, JobFrozen))
    assert tokens_of(rec.of("q")) == [] and frozen.tokens_done == 0
    window = timed(backend.start, llm("q", new_tokens=3, prompt_tokens=100), "gpu")
    done = rec.finished("q")
    resumed = rec.of("q")[1:]
    assert tokens_of(resumed) == [0, 1, 2, 3]
    rest = profiler.estimate_s("llm", "gpu", f_max("gpu"), 100 - 64, "prefill")
    assert_after(resumed[0].t, window, rest)            # only the rest of the prompt
    decode = profiler.estimate_s("llm", "gpu", f_max("gpu"), 1, "decode")
    assert_after(done.t, window, rest + 2 * decode)


def test_a_withdrawn_freeze_never_takes_effect(profiler):
    box: list[TwinBackend] = []

    def freeze_then_withdraw(event: Event) -> None:     # at a token boundary, as the node
        if isinstance(event, StepFinished) and event.tokens == 3:
            box[0].freeze(event.job_id)
            box[0].withdraw_freeze(event.job_id)

    rec = Recorder(freeze_then_withdraw)
    backend = TwinBackend(UNITS, PLATFORM, profiler.catalog, profiler, rec, time.monotonic)
    box.append(backend)
    try:
        backend.start(llm("q"), "gpu")
        assert rec.finished("q").ok
        assert tokens_of(rec.of("q")) == list(range(9))
        assert not any(isinstance(e, JobFrozen) for e in rec.events)
    finally:
        backend.close()


def test_freeze_on_a_dnn_job_lets_it_finish(twin, profiler):
    backend, rec = twin()
    est = profiler.estimate_s("cnn", "dla0", f_max("dla0"))
    window = timed(backend.start, cnn("a"), "dla0")
    backend.freeze("a")
    done = rec.finished("a")
    assert done.ok
    assert_after(done.t, window, est)
    assert rec.of("a") == [done]


def test_cancel_stops_jobs_silently_and_frees_the_unit(twin, profiler):
    backend, rec = twin()
    backend.start(cnn("a"), "dla0")
    backend.start(llm("q"), "gpu")
    time.sleep(0.02)                                    # both mid-step (prefill is 40 ms)
    backend.cancel("a")
    backend.cancel("q")
    backend.cancel("never-started")                     # unknown ids are ignored
    backend.start(cnn("b"), "dla0")                     # exclusive unit is free again
    rec.finished("b")
    time.sleep(0.15)                                    # past both jobs' natural end
    assert rec.of("a") == [] and rec.of("q") == []


def test_cancel_of_a_frozen_llm_drops_its_kv_cache(twin, profiler):
    backend, rec = twin()
    backend.start(llm("q", new_tokens=2), "gpu")
    backend.freeze("q")
    rec.wait_for(lambda e: isinstance(e, JobFrozen))
    backend.cancel("q")
    window = timed(backend.start, llm("q", new_tokens=2), "gpu")   # starts from the prompt
    rec.finished("q")
    restarted = rec.of("q")[3:]        # after 0 and 1 at the prefill's end, and the freeze
    assert tokens_of(restarted) == [0, 1, 2]
    prefill = profiler.estimate_s("llm", "gpu", f_max("gpu"), 40, "prefill")
    assert_after(restarted[0].t, window, prefill)


def test_exclusive_busy_unit_and_invalid_starts_are_refused(twin):
    backend, rec = twin()
    assert PLATFORM.unit("dla0").sharing == "exclusive"
    backend.start(cnn("a"), "dla0")
    with pytest.raises(RuntimeError, match="exclusive"):
        backend.start(cnn("b"), "dla0")
    with pytest.raises(RuntimeError, match="already running"):
        backend.start(cnn("a"), "dla1")
    with pytest.raises(ValueError, match="cannot run on dla1"):
        backend.start(llm("q"), "dla1")
    with pytest.raises(ValueError, match="not run by this twin"):
        backend.start(cnn("c"), "npu")
    rec.finished("a")
    assert rec.of("b") == [] and rec.of("q") == []


def test_failure_injection_ends_the_job_with_ok_false(twin, profiler):
    backend, rec = twin(fail_models={"cnn"})
    est = profiler.estimate_s("cnn", "cpu_b", f_max("cpu_b"))
    window = timed(backend.start, cnn("a"), "cpu_b")
    backend.start(llm("q", new_tokens=2), "gpu")
    failed = rec.finished("a")
    assert not failed.ok and failed.message == FAILURE_MESSAGE
    assert_after(failed.t, window, est)
    assert rec.finished("q").ok


def test_power_and_utilization_follow_the_busy_units(twin, profiler):
    backend, rec = twin()
    assert backend.power_w() == pytest.approx(PLATFORM.floor_power_w)
    backend.utilization("gpu")                          # start a fresh window
    t0 = time.monotonic()
    backend.start(cnn("a"), "gpu")
    gpu = PLATFORM.unit("gpu")
    busy_power = PLATFORM.floor_power_w + gpu.power.dynamic_max_w * CNN.utilization["gpu"]
    assert backend.power_w() == pytest.approx(busy_power)
    backend.set_frequency("gpu", gpu.min_frequency_hz)
    time.sleep(PLATFORM.dvfs_transition_s + 0.005)
    assert backend.power_w() == pytest.approx(PLATFORM.floor_power_w + profiler.power_w(
        "cnn", "gpu", gpu.min_frequency_hz) - gpu.power.static_w)
    done = rec.finished("a")
    time.sleep(0.05)
    util = backend.utilization("gpu")
    window = time.monotonic() - t0
    assert util == pytest.approx((done.t - t0) / window, abs=0.05)
    assert backend.utilization("dla0") == 0.0
    assert backend.power_w() == pytest.approx(PLATFORM.floor_power_w)


def test_sink_may_call_back_into_the_backend(profiler):
    """The node applies the scheduler's answer inside the sink: dispatch the next job on the
    exclusive unit the finished one just released, from the worker thread."""
    rec = Recorder()
    box: list[TwinBackend] = []

    def sink(event: Event) -> None:
        rec(event)
        if isinstance(event, JobFinished) and event.job_id == "a":
            box[0].start(cnn("b"), event.unit)

    backend = TwinBackend(UNITS, PLATFORM, profiler.catalog, profiler, sink, time.monotonic)
    box.append(backend)
    try:
        backend.start(cnn("a"), "dla0")
        first = rec.finished("a")
        second = rec.finished("b")
        est = profiler.estimate_s("cnn", "dla0", f_max("dla0"))
        assert second.ok and second.unit == "dla0"
        assert second.t - first.t >= est - EPS
    finally:
        backend.close()


def test_close_silences_running_jobs(twin):
    backend, rec = twin()
    backend.start(cnn("a"), "gpu")
    backend.close()
    time.sleep(0.12)
    assert rec.events == []
    with pytest.raises(RuntimeError, match="closed"):
        backend.start(cnn("b"), "gpu")


def test_make_backend_builds_the_twin_and_names_known_kinds(profiler):
    rec = Recorder()
    backend = make_backend("simulated", ("gpu", "dla0"), PLATFORM, profiler.catalog, profiler,
                           rec, time.monotonic)
    try:
        assert isinstance(backend, Backend) and isinstance(backend, TwinBackend)
        assert backend.units == ("gpu", "dla0")
        assert backend.frequency_hz("gpu") == f_max("gpu")
    finally:
        backend.close()
    with pytest.raises(ValueError, match=r"'cuda'.*known kinds: .*simulated"):
        make_backend("cuda", ("gpu",), PLATFORM, profiler.catalog, profiler, rec, time.monotonic)



def test_dispatch_share_weights_a_processor_shared_unit(twin, profiler):
    """Started beside another job with share 9, a job gets 90 % of the GPU (Dispatch.share)."""
    backend, rec = twin()
    est = profiler.estimate_s("cnn", "gpu", f_max("gpu"))
    lo = time.monotonic()
    backend.start(cnn("background"), "gpu")
    backend.start(cnn("urgent"), "gpu", share=9.0)
    both = Window(lo, time.monotonic())
    # urgent: all its work at 9/10 speed. background: 1/10 speed meanwhile, full speed after;
    # however long it ran alone before urgent came, it ends est/0.9 + 8/9 est after its start.
    assert_after(rec.finished("urgent").t, both, est / 0.9)
    assert_after(rec.finished("background").t, both, est / 0.9 + est * 8 / 9)


def test_long_prefill_runs_in_chunks_each_a_freeze_point(twin, profiler):
    """A 160-token prompt prefills as 64 + 64 + 32 tokens (the core's PREFILL_CHUNK_TOKENS):
    a freeze takes effect after the first chunk, and the resume does only the other two."""
    long_prompt = Job("p", "llm", priority=100, submit_s=0.0, prompt_tokens=160,
                      max_new_tokens=2)
    backend, rec = twin()

    def prefill(tokens: int) -> float:
        return profiler.estimate_s("llm", "gpu", f_max("gpu"), tokens, "prefill")

    start = timed(backend.start, long_prompt, "gpu")
    backend.freeze("p")
    frozen = rec.wait_for(lambda e: isinstance(e, JobFrozen))
    assert frozen.tokens_done == 0 and tokens_of(rec.of("p")) == []  # prefill not finished
    assert_after(frozen.t, start, prefill(64))
    resume = timed(backend.start, long_prompt, "gpu")
    first = rec.wait_for(lambda e: isinstance(e, StepFinished) and e.job_id == "p")
    assert_after(first.t, resume, prefill(64) + prefill(32))
    assert rec.finished("p").ok and tokens_of(rec.of("p")) == [0, 1, 2]
