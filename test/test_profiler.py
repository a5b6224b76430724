"""Profiler: frequency scaling, eligibility, LLM phases, power, EWMA convergence to observations."""

from __future__ import annotations

from itertools import pairwise

import pytest

from twill_ros.core.catalog import load_catalog
from twill_ros.core.jobs import Job
from twill_ros.core.platform import load_platform
from twill_ros.core.profiler import Profiler

MHZ = 1_000_000
F_MAX = 918 * MHZ


@pytest.fixture(scope="module")
def platform():
    return load_platform("orin_nx_16gb")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture
def profiler(catalog, platform):
    return Profiler(catalog, platform)


def test_eligible_units_follow_dla_compatibility(profiler):
    assert profiler.eligible_units("resnet50") == ("gpu", "dla0", "dla1", "cpu_a", "cpu_b")
    assert profiler.eligible_units("bert-base") == ("gpu", "cpu_a", "cpu_b")
    assert profiler.eligible_units("llama-3.2-1b") == ("gpu", "cpu_a", "cpu_b")


def test_estimate_at_max_frequency_is_the_catalog_figure(profiler, catalog):
    assert profiler.estimate_s("resnet50", "gpu", F_MAX) == pytest.approx(
        catalog.get("resnet50").latency_s["gpu"]
    )


def test_frequency_scaling_uses_the_sensitivity(profiler, catalog):
    s = catalog.get("resnet50").freq_sensitivity["gpu"]
    base = catalog.get("resnet50").latency_s["gpu"]
    expected = base * (s * 918 / 306 + 1 - s)
    assert profiler.estimate_s("resnet50", "gpu", 306 * MHZ) == pytest.approx(expected)


def test_speed_scale_multiplies_the_catalog_latency(catalog):
    nx8 = load_platform("orin_nx_8gb")
    profiler = Profiler(catalog, nx8)
    cpu_b = nx8.unit("cpu_b")
    assert profiler.estimate_s("resnet50", "cpu_b", cpu_b.max_frequency_hz) == pytest.approx(
        catalog.get("resnet50").latency_s["cpu"] * cpu_b.speed_scale
    )
    assert "dla1" not in profiler.eligible_units("resnet50")


def test_llm_prefill_scales_with_tokens_and_decode_is_per_token(profiler, catalog):
    llm = catalog.get("llama-3.2-1b")
    prefill = profiler.estimate_s("llama-3.2-1b", "gpu", F_MAX, 256, "prefill")
    assert prefill == pytest.approx(256 / llm.prefill_tokens_per_s["gpu"])
    step = profiler.estimate_s("llama-3.2-1b", "gpu", F_MAX, 1, "decode")
    assert step == pytest.approx(1 / llm.decode_tokens_per_s["gpu"])
    assert profiler.estimate_s("llama-3.2-1b", "gpu", F_MAX, 10, "decode") == pytest.approx(
        10 * step
    )
    # decode is memory-bound: halving the clock costs decode much less than prefill
    slow_prefill = profiler.estimate_s("llama-3.2-1b", "gpu", 408 * MHZ, 256, "prefill") / prefill
    slow_decode = profiler.estimate_s("llama-3.2-1b", "gpu", 408 * MHZ, 1, "decode") / step
    assert slow_decode < slow_prefill


def test_llm_job_phase_uses_the_default_token_budget(profiler, catalog):
    llm = catalog.get("tinyllama-1.1b")
    whole = profiler.estimate_s("tinyllama-1.1b", "gpu", F_MAX)
    # the prefill gives the first token, each further one is a decode pass
    assert whole == pytest.approx(
        llm.default_prompt_tokens / llm.prefill_tokens_per_s["gpu"]
        + (llm.default_max_new_tokens - 1) / llm.decode_tokens_per_s["gpu"]
    )


def test_isolated_latency_picks_the_best_unit(profiler, catalog):
    job = Job("j1", "resnet50", 100, 0.0)
    assert profiler.isolated_latency_s(job) == pytest.approx(
        catalog.get("resnet50").latency_s["gpu"]
    )
    llm = catalog.get("qwen2.5-1.5b")
    chat = Job("j2", "qwen2.5-1.5b", 50, 0.0, prompt_tokens=256, max_new_tokens=32)
    assert profiler.isolated_latency_s(chat) == pytest.approx(
        256 / llm.prefill_tokens_per_s["gpu"] + 31 / llm.decode_tokens_per_s["gpu"]
    )


def test_ineligible_unit_or_wrong_phase_is_an_error(profiler):
    with pytest.raises(ValueError, match="cannot run on unit 'dla0'"):
        profiler.estimate_s("bert-base", "dla0", 614_400_000)
    with pytest.raises(ValueError, match="phase"):
        profiler.estimate_s("resnet50", "gpu", F_MAX, phase="decode")
    with pytest.raises(KeyError):
        profiler.estimate_s("nope", "gpu", F_MAX)


def test_power_uses_the_model_utilization(profiler, platform, catalog):
    gpu = platform.unit("gpu")
    util = catalog.get("mobilenetv2").utilization["gpu"]
    assert profiler.power_w("mobilenetv2", "gpu", F_MAX) == pytest.approx(
        gpu.power.power_w(F_MAX, F_MAX, util)
    )
    # a small model keeps the GPU less busy than a large one -> less power
    assert profiler.power_w("mobilenetv2", "gpu", F_MAX) < profiler.power_w(
        "bert-large", "gpu", F_MAX
    )
    assert profiler.power_w("resnet50", "dla0", 614_400_000) < profiler.power_w(
        "resnet50", "gpu", F_MAX
    )


def test_ewma_converges_to_observed_runtimes(profiler):
    prior = profiler.estimate_s("resnet50", "gpu", 612 * MHZ)
    truth = prior * 1.5
    errors = []
    for _ in range(20):
        profiler.observe("resnet50", "gpu", 612 * MHZ, truth)
        errors.append(abs(profiler.estimate_s("resnet50", "gpu", 612 * MHZ) - truth))
    assert errors[-1] < 0.01 * truth
    assert all(b <= a for a, b in pairwise(errors))  # monotone approach
    # the correction is per (model, unit): another unit keeps its prior
    assert profiler.estimate_s("resnet50", "dla0", 614_400_000) == pytest.approx(2.2e-3)


def test_unobserved_levels_borrow_the_unit_wide_correction(profiler):
    prior_low = profiler.estimate_s("yolov8s", "gpu", 306 * MHZ)
    for _ in range(30):
        profiler.observe(
            "yolov8s", "gpu", F_MAX, 2.0 * profiler._predict("yolov8s", "gpu", F_MAX, "job")
        )
    assert profiler.estimate_s("yolov8s", "gpu", 306 * MHZ) == pytest.approx(
        2.0 * prior_low, rel=0.01
    )


def test_per_level_corrections_stay_separate(profiler):
    f_lo, f_hi = 408 * MHZ, F_MAX
    pred_lo = profiler.estimate_s("resnet152", "gpu", f_lo)
    pred_hi = profiler.estimate_s("resnet152", "gpu", f_hi)
    for _ in range(40):
        profiler.observe("resnet152", "gpu", f_lo, 1.3 * pred_lo)
        profiler.observe("resnet152", "gpu", f_hi, 0.8 * pred_hi)
    assert profiler.estimate_s("resnet152", "gpu", f_lo) == pytest.approx(1.3 * pred_lo, rel=0.01)
    assert profiler.estimate_s("resnet152", "gpu", f_hi) == pytest.approx(0.8 * pred_hi, rel=0.01)


def test_llm_observations_are_normalised_per_token(profiler):
    step = profiler.estimate_s("llama-3.2-1b", "gpu", F_MAX, 1, "decode")
    for _ in range(30):
        profiler.observe("llama-3.2-1b", "gpu", F_MAX, 64 * step * 1.25, tokens=64, phase="decode")
    assert profiler.estimate_s("llama-3.2-1b", "gpu", F_MAX, 1, "decode") == pytest.approx(
        1.25 * step, rel=0.01
    )
    with pytest.raises(ValueError):
        profiler.observe("llama-3.2-1b", "gpu", F_MAX, 1.0)


def test_invalid_alpha_is_rejected(catalog, platform):
    with pytest.raises(ValueError, match="ewma_alpha"):
        Profiler(catalog, platform, ewma_alpha=0.0)
