"""Power model, static caps and the DVFS controller (hand-checked on the tiny platform, and
on the Orin NX file for the numbers the evaluation depends on)."""

from __future__ import annotations

import dataclasses

import pytest
from engine_fixtures import PLATFORM, catalog, job, of, scheduler

from twill_ros.core import power as pw
from twill_ros.core.events import (
    BudgetChanged,
    Dispatch,
    Freeze,
    JobArrived,
    JobFinished,
    JobFrozen,
    PowerSample,
    SetFrequency,
    Tick,
    Unfreeze,
    WithdrawFreeze,
)
from twill_ros.core.platform import load_platform
from twill_ros.core.scheduler import POWER_HOLD_MAX_S, Scheduler

GHZ = 1_000_000_000
ORIN = load_platform("orin_nx_16gb")


def test_module_power_is_idle_plus_static_plus_dynamic():
    freqs = {"gpu": GHZ, "dla0": GHZ // 2, "cpu_a": GHZ}
    p = pw.module_power_w(PLATFORM, freqs, {"gpu": 1.0, "dla0": 1.0, "cpu_a": 0.5})
    assert p == pytest.approx(2.0 + 8.0 + 2.0 * 0.25 + 4.0 * 0.5 * 0.25)


def test_speed_law_matches_the_profiler_latency_law():
    assert pw.speed(500, 1000, 1.0) == pytest.approx(0.5)
    assert pw.speed(500, 1000, 0.0) == pytest.approx(1.0)
    assert pw.speed(500, 1000, 0.5) == pytest.approx(1 / 1.5)


def test_static_caps_gpu_only_orin_15w_is_714mhz():
    # 4.6 W floor + 14 W * (714/918)^1.8 = 13.5 W <= 15; 816 MHz would be 15.9 W
    caps = pw.static_caps(ORIN, 15.0, ["gpu"])
    assert caps["gpu"] == 714_000_000
    assert all(caps[u.name] == u.min_frequency_hz for u in ORIN.units if u.name != "gpu")


@pytest.mark.parametrize("used", [["gpu"], ["gpu", "dla0", "dla1"], list(ORIN.unit_names)])
def test_static_caps_fit_the_budget_worst_case_and_fall_with_the_budget(used):
    prev = None
    for budget in (20.0, 15.0, 10.0):
        caps = pw.static_caps(ORIN, budget, used)
        worst = pw.module_power_w(ORIN, caps, dict.fromkeys(used, 1.0))
        assert worst <= budget
        if prev is not None:
            assert all(caps[n] <= prev[n] for n in caps)
            assert caps != prev or budget >= 18.6      # something must give below MAXN power
        prev = caps


def test_a_caps_profile_holds_its_kinds_low_and_gives_the_rest_their_budget():
    shared = pw.static_caps(ORIN, 15.0, ORIN.unit_names)
    for profile, held in (("accelerators", {"cpu"}), ("gpu", {"cpu", "dla"})):
        caps = pw.static_caps(ORIN, 15.0, ORIN.unit_names, profile=profile)
        assert all(caps[u.name] == u.min_frequency_hz for u in ORIN.units if u.kind in held)
        # still counted fully busy, so the worst case fits; what they leave goes elsewhere
        assert pw.module_power_w(ORIN, caps, dict.fromkeys(ORIN.unit_names, 1.0)) <= 15.0
        rest = [u.name for u in ORIN.units if u.kind not in held]
        assert all(caps[n] >= shared[n] for n in rest)
        assert any(caps[n] > shared[n] for n in rest)
    assert pw.static_caps(ORIN, 15.0, ORIN.unit_names, profile="all-used") == shared
    with pytest.raises(ValueError, match="unknown static-cap profile 'cpu'; known: all-used"):
        pw.static_caps(ORIN, 15.0, ["gpu"], profile="cpu")


def test_static_caps_use_lowest_clocks_when_nothing_fits():
    caps = pw.static_caps(PLATFORM, 1.0, PLATFORM.unit_names)
    assert caps == {u.name: u.min_frequency_hz for u in PLATFORM.units}


def demand(weight=1.0, util=1.0, sens=1.0):
    return pw.UnitDemand(weight, util, sens)


def test_controller_parks_units_without_demand_at_lowest_clock_when_headroom_is_short():
    # 12 W (limit 11.82): GPU busy at 1 GHz = 2 + 8 = 10 W; DLA + CPU fully busy at their
    # lowest clocks 0.5 + 1 W fit, at max 2 + 4 W do not
    ctrl = pw.DvfsController(PLATFORM, 12.0)
    freqs = ctrl.plan({"gpu": demand()})
    assert freqs == {"gpu": GHZ, "dla0": GHZ // 2, "cpu_a": GHZ}
    assert not ctrl.overshoot


def test_controller_keeps_units_without_demand_ready_with_the_headroom_left():
    # 20 W (limit 19.7): GPU busy at 1 GHz = 10 W leaves room for DLA and CPU fully busy at
    # max (2 + 4 W): they wait there, so work landing on them starts at full speed
    ctrl = pw.DvfsController(PLATFORM, 20.0)
    assert ctrl.plan({"gpu": demand()}) == {"gpu": GHZ, "dla0": GHZ, "cpu_a": 2 * GHZ}
    # nothing busy at 8 W (limit 7.85): reserving each at its lowest clock fully busy takes
    # 2 + (2 + 0.5 + 1) W and leaves 2.35 W, enough for the DLA alone to take work at max
    # (+1.5 W), not the GPU (+6 W) or the CPU (+3 W)
    assert pw.DvfsController(PLATFORM, 8.0).plan({}) == {"gpu": GHZ // 2, "dla0": GHZ,
                                                         "cpu_a": GHZ}
    # the headroom goes to busy units first: at 11 W (limit 10.85) the GPU cannot reach
    # 1 GHz (10 W + the 1.5 W reserve), so it gets a boost and the idle units stay lowest
    ctrl = pw.DvfsController(PLATFORM, 11.0)
    freqs = ctrl.plan({"gpu": demand()})
    assert ctrl.boost is not None and ctrl.boost.unit == "gpu"
    assert freqs == {"gpu": GHZ // 2, "dla0": GHZ // 2, "cpu_a": GHZ}


def test_a_fixed_clock_is_counted_at_that_clock_and_never_planned():
    # 12 W (limit 11.82), GPU and DLA busy, the CPU reserved at its lowest clock (1 W). A
    # plannable DLA takes the cheap step (1 GHz: +1.5 W) and the GPU stays at 0.5 GHz ...
    both = {"gpu": demand(), "dla0": demand()}
    assert pw.DvfsController(PLATFORM, 12.0).plan(both) == {
        "gpu": GHZ // 2, "dla0": GHZ, "cpu_a": GHZ}
    # ... a DLA fixed at 0.5 GHz (a Jetson DLA at its nvpmodel cap) draws 0.5 W there, which
    # leaves the GPU room for 1 GHz: 2 + 0.5 + 1 + 8 = 11.5 W
    slow = pw.DvfsController(PLATFORM, 12.0, fixed_hz={"dla0": GHZ // 2})
    assert slow.plan(both) == {"gpu": GHZ, "dla0": GHZ // 2, "cpu_a": GHZ}
    # fixed at 1 GHz it draws 2 W: the GPU's step no longer fits (13 W), a boost pays part
    ctrl = pw.DvfsController(PLATFORM, 12.0, fixed_hz={"dla0": GHZ})
    assert ctrl.plan(both) == {"gpu": GHZ // 2, "dla0": GHZ, "cpu_a": GHZ}
    assert ctrl.boost is not None and ctrl.boost.unit == "gpu"
    # idle, it draws its static power only (0 W here): no reserve for a clock nothing lowers
    assert ctrl.plan({"gpu": demand()}) == {"gpu": GHZ, "dla0": GHZ, "cpu_a": GHZ}
    # work on the DLA does not move its clock, however heavy
    assert ctrl.plan({"dla0": demand(weight=100.0)})["dla0"] == GHZ
    # static caps (policies without a controller), all units used at 12 W: 2 W idle + the
    # DLA busy at 1 GHz (2 W) + GPU and CPU at half clock (2 + 1 W) = 7 W; of the 5 W left
    # the CPU's step (+3 W) fits, the GPU's (+6 W) does not
    assert pw.static_caps(PLATFORM, 12.0, PLATFORM.unit_names, {"dla0": GHZ}) == {
        "gpu": GHZ // 2, "dla0": GHZ, "cpu_a": 2 * GHZ}


def test_scheduler_never_commands_a_fixed_clock_and_estimates_at_it():
    s = scheduler(budget_w=12.0, fixed_clocks_hz={"dla0": GHZ // 2 + 1})   # snapped down
    first = s.handle(Tick(0.0))
    assert SetFrequency("dla0", GHZ // 2) in first       # once, as the start commands all
    later = s.handle(JobArrived(0.01, job("d", "dlaonly")))
    later += s.handle(JobArrived(0.02, job("g", "long")))
    for k in range(1, 6):
        later += s.handle(Tick(0.1 * k))
    assert of(later, Dispatch)[0] == Dispatch("d", "dla0")
    assert not [a for a in of(later, SetFrequency) if a.unit == "dla0"]
    dla = s.units["dla0"]
    assert dla.freq_hz == dla.work_freq_hz == GHZ // 2
    # dlaonly takes 50 ms at 1 GHz, fully clock-sensitive: 100 ms at the fixed half clock
    assert s.profiler.estimate_s("dlaonly", "dla0", dla.work_freq_hz) == pytest.approx(0.1)


def test_controller_lowers_clocks_with_the_budget():
    d = {"gpu": demand(), "dla0": demand(), "cpu_a": demand()}
    high = pw.DvfsController(PLATFORM, 20.0).plan(d)
    low = pw.DvfsController(PLATFORM, 9.0).plan(d)
    assert all(low[n] <= high[n] for n in d) and low != high
    # the plan keeps predicted power (with margin) under the budget
    assert pw.module_power_w(PLATFORM, low, dict.fromkeys(d, 1.0)) <= 9.0 - 0.2


def test_controller_spends_budget_where_weighted_progress_is_highest():
    ctrl = pw.DvfsController(PLATFORM, 8.0)
    # 2 W idle + 8 W GPU at 1 GHz does not fit; at 500 MHz it is 2 W. DLA 1 GHz costs 2 W.
    favour_gpu = ctrl.plan({"gpu": demand(weight=10.0), "dla0": demand(weight=1.0)})
    favour_dla = ctrl.plan({"gpu": demand(weight=0.1), "dla0": demand(weight=10.0)})
    assert favour_dla["dla0"] == GHZ
    assert favour_gpu["gpu"] == GHZ // 2      # GPU max (10+ W) never fits 8 W
    assert pw.module_power_w(PLATFORM, favour_gpu, {"gpu": 1, "dla0": 1}) <= 7.8


def test_controller_flags_overshoot_it_cannot_absorb():
    ctrl = pw.DvfsController(PLATFORM, 4.0)     # 2 W idle + GPU 2 W at 500 MHz busy > 3.8 W
    freqs = ctrl.plan({"gpu": demand()})
    assert ctrl.overshoot and freqs["gpu"] == GHZ // 2


def test_measured_error_correction_lowers_the_plan():
    ctrl = pw.DvfsController(PLATFORM, 12.0)
    d = {"gpu": demand()}
    # 2 W idle + 8 W GPU + 1.5 W reserved for the parked DLA/CPU at their lowest clock
    assert ctrl.plan(d)["gpu"] == GHZ            # 11.5 W <= 12 - 0.24
    for _ in range(20):
        ctrl.correct(measured_w=11.0, predicted_w=10.0)   # the module draws 1 W more
    assert ctrl.offset_w == pytest.approx(1.0, abs=0.01)
    assert ctrl.plan(d)["gpu"] == GHZ // 2


def test_scheduler_dvfs_parks_idle_units_to_give_their_headroom_to_busy_ones():
    # 11 W, limit 10.835 W; reserve for idle units fully busy at their lowest clocks: GPU 2 +
    # DLA 0.5 + CPU 1 W. Nothing busy: 2 + 3.5 W leaves 5.3 W, enough for the DLA (+1.5 W) or
    # the CPU (+3 W) to take work at max, not for the GPU (+6 W): they wait there.
    s = scheduler(budget_w=11.0)
    out = s.handle(Tick(0.0))
    assert {(a.unit, a.freq_hz) for a in of(out, SetFrequency)} == {
        ("gpu", GHZ // 2), ("dla0", GHZ), ("cpu_a", 2 * GHZ)}
    # work lands on the GPU: it would need 2 + 1.5 + 8 = 11.5 W at max, so the headroom goes
    # to it (a boost at the next tick) and the idle units park at their lowest clocks
    out = s.handle(JobArrived(0.01, job("a", "long")))
    assert set(of(out, SetFrequency)) == {SetFrequency("dla0", GHZ // 2),
                                          SetFrequency("cpu_a", GHZ)}
    for i in range(1, 10):
        s.handle(PowerSample(0.01 * i, 10.0))
    assert SetFrequency("gpu", GHZ) in s.handle(Tick(0.1))          # the boost
    s.handle(JobFinished(0.15, "a", "gpu"))
    for k in range(2, 14):                                  # long idle: memory decays
        s.handle(Tick(0.1 * k))
    assert {n: (u.freq_hz, u.parked) for n, u in s.units.items()} == {
        "gpu": (GHZ // 2, True), "dla0": (GHZ, True), "cpu_a": (2 * GHZ, True)}


def test_with_headroom_idle_units_wait_at_speed_and_a_lone_job_runs_at_max_clock():
    s = scheduler()                                         # 20 W: every unit fits at max
    out = s.handle(Tick(0.0))
    assert {(a.unit, a.freq_hz) for a in of(out, SetFrequency)} == {
        ("gpu", GHZ), ("dla0", GHZ), ("cpu_a", 2 * GHZ)}
    assert s.units["gpu"].parked
    out = s.handle(JobArrived(0.01, job("a", "cnn")))
    assert of(out, Dispatch) == [Dispatch("a", "gpu")] and not of(out, SetFrequency)
    # the estimate knows there is no ramp: 10 ms at 1 GHz
    a = s.jobs["a"]
    assert s.estimate_s(a, "gpu") == pytest.approx(0.010)
    s.handle(JobFinished(0.02, "a", "gpu"))
    for k in range(1, 20):                                  # idle: parked again, still at max
        s.handle(Tick(0.1 * k))
    gpu = s.units["gpu"]
    assert gpu.parked and gpu.freq_hz == GHZ and s._parked_slowdown(a, gpu) == 1.0
    # 11 W leaves no headroom for the GPU at max: parked at its lowest clock, work landing
    # there ramps up (see the test above)
    out = s.handle(BudgetChanged(2.0, 11.0))
    assert SetFrequency("gpu", GHZ // 2) in out
    assert s._parked_slowdown(a, gpu) == pytest.approx(2.0)


def test_scheduler_budgets_the_present_work_not_an_older_hungrier_model():
    # 'light' keeps a quarter of the GPU busy; 7 W budget, limit 6.85 W, parked DLA and CPU
    # reserved fully busy at their lowest clocks (0.5 + 1 W): base 3.5 W. GPU at 1 GHz costs
    # 8 W x util: 2 W for 'light' (fits), 8 W for 'long' (only 500 MHz fits)
    cat = catalog()
    cat.add(dataclasses.replace(cat.get("long"), id="light", latency_s={"gpu": 10.0},
                                utilization={"gpu": 0.25}))
    s = scheduler(budget_w=7.0, cat=cat)
    s.handle(Tick(0.0))
    s.handle(JobArrived(0.0, job("a", "long")))
    s.handle(JobFinished(0.1, "a", "gpu"))
    s.handle(JobArrived(0.1, job("b", "light")))
    s.handle(Tick(0.1))
    assert s.units["gpu"].freq_hz == GHZ // 2      # 'long' ran in this period: budget for it
    s.handle(Tick(0.2))
    assert s.units["gpu"].freq_hz == GHZ           # only 'light' now (it was kept at 1.0 before)


def test_a_long_low_priority_queue_does_not_buy_the_clocks_of_a_unit_serving_urgent_work():
    # 12.3 W budget, limit 12.12 W; base 2 W + parked CPU reserved at 1 W; GPU and DLA at
    # half clock fully busy 2 + 0.5 W. One more step: GPU +6 W (11.5 W) or DLA +1.5 W (7 W),
    # not both (13 W). Greedy order = weight x 0.5 speed / watt: the GPU first iff its weight
    # is > 4x the DLA's (1 + 255/64 = 4.98). 50 queued 100 ms jobs of priority 0 weighed 50;
    # now the queue counts as far as one 0.1 s period gets through its 4.9 s: 1 + 49 x 0.1/4.9
    s = scheduler(budget_w=12.3)
    s.handle(Tick(0.0))
    for i in range(50):
        s.handle(JobArrived(0.0, job(f"q{i}", "long", 0, stream="bulk")))
    s.handle(JobArrived(0.0, job("urgent", "dlaonly", 255)))
    s.handle(Tick(0.05))
    assert (s.units["gpu"].freq_hz, s.units["dla0"].freq_hz) == (GHZ // 2, GHZ)


def test_scheduler_lower_budget_gives_lower_gpu_clock_under_load():
    def gpu_clock(budget):
        s = scheduler(budget_w=budget)
        s.handle(Tick(0.0))
        for i in range(5):
            s.handle(JobArrived(0.0, job(f"l{i}", "long", stream="x")))
        s.handle(Tick(0.1))
        return s.units["gpu"].freq_hz
    assert gpu_clock(20.0) == GHZ
    assert gpu_clock(6.0) == GHZ // 2


def test_twill_no_dvfs_uses_static_caps_and_never_changes_clocks():
    s = Scheduler(ORIN, catalog_orin(), "twill_no_dvfs", 15.0, seed=0)
    first = s.handle(Tick(0.0))
    caps = pw.static_caps(ORIN, 15.0, ORIN.unit_names)
    assert {a.unit: a.freq_hz for a in first if isinstance(a, SetFrequency)} == caps
    assert not of(s.handle(Tick(0.1)), SetFrequency)


def catalog_orin():
    from twill_ros.core.catalog import load_catalog
    return load_catalog()


def test_overshoot_dvfs_cannot_absorb_freezes_lowest_priority_work_until_budget_allows():
    s = scheduler()
    s.handle(Tick(0.0))
    s.handle(JobArrived(0.0, job("hi", "llm", 20, prompt=64, new=1000)))
    s.handle(JobArrived(0.0, job("lo", "cpullm", 10, prompt=64, new=1000)))
    assert s.jobs["hi"].unit == "gpu" and s.jobs["lo"].unit == "cpu_a"
    # 5 W: 2 W idle + 2 W GPU + 1 W CPU at their lowest clocks fully busy -> overshoot;
    # the controller runs at once on a budget change and freezes the lowest priority first
    out = s.handle(BudgetChanged(0.05, 5.0))
    assert of(out, Freeze) == [Freeze("lo")]
    assert s.handle(JobFrozen(0.06, "lo", "cpu_a", 3)) == []             # held, not resumed
    out = s.handle(Tick(0.1))                                            # still over: next
    assert of(out, Freeze) == [Freeze("hi")]
    s.handle(JobFrozen(0.11, "hi", "gpu", 5))
    # nothing runs now, so nothing is over; but released, "hi" would not fit either, and
    # would only run over the budget until the next period froze it again
    assert not of(s.handle(Tick(0.2)), Unfreeze)
    out = s.handle(BudgetChanged(0.25, 20.0))          # headroom again: highest priority first
    assert [(a.job_id, a.unit) for a in out if isinstance(a, Unfreeze)] == [("hi", "gpu")]
    out = s.handle(Tick(0.3))
    assert [(a.job_id, a.unit) for a in out if isinstance(a, Unfreeze)] == [("lo", "cpu_a")]


def test_a_held_job_that_never_fits_still_runs_a_period_every_power_hold_max_s():
    s = scheduler()
    s.handle(Tick(0.0))
    s.handle(JobArrived(0.0, job("hi", "llm", 20, prompt=64, new=1000)))
    assert of(s.handle(BudgetChanged(0.05, 5.0)), Freeze) == [Freeze("hi")]   # never fits
    s.handle(JobFrozen(0.06, "hi", "gpu", 3))
    assert not of(s.handle(Tick(0.1)), Unfreeze)
    assert not of(s.handle(Tick(0.06 + POWER_HOLD_MAX_S - 0.01)), Unfreeze)
    out = s.handle(Tick(0.06 + POWER_HOLD_MAX_S))           # delayed, never starved
    assert of(out, Unfreeze) == [Unfreeze("hi", "gpu")]
    assert of(s.handle(Tick(0.16 + POWER_HOLD_MAX_S)), Freeze) == [Freeze("hi")]   # again


def test_a_job_being_frozen_for_more_important_work_is_held_for_power_too():
    """Its priority freeze is withdrawn when that work ends before the job's step boundary
    (under a camera stream, every frame); held for power, it freezes at the boundary."""
    s = scheduler()
    s.handle(Tick(0.0))
    s.handle(JobArrived(0.0, job("llm", "llm", 10, prompt=64, new=1000)))
    out = s.handle(JobArrived(0.01, job("hi", "bert", 200)))
    assert Freeze("llm") in out and s.jobs["llm"].freeze_pending
    out = s.handle(BudgetChanged(0.02, 4.0))          # even the lowest clocks do not fit
    assert not of(out, Freeze) and s.jobs["llm"].power_hold      # the pending freeze stays
    assert not of(s.handle(JobFinished(0.03, "hi", "gpu")), WithdrawFreeze)
    assert s.handle(JobFrozen(0.04, "llm", "gpu", 2)) == []       # held, not resumed


def test_budget_change_recomputes_static_caps_for_baselines():
    s = scheduler("gpu_fifo")
    s.handle(Tick(0.0))
    assert s.units["gpu"].freq_hz == GHZ
    out = s.handle(BudgetChanged(1.0, 7.0))
    assert out == [SetFrequency("gpu", GHZ // 2)]
