"""The README's main job, ``python -m twill_ros.cli demo``, as a user runs it: its own process,
real DDS on loopback, a report whose summary.json has the ``compare`` results format."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ros_harness import REPO, test_domain_id
from test_cli import RESULT_KEYS

from twill_ros.loopback import child_env

STREAMS = {"detector", "classifier", "planner", "intent"}
PLOTS = ("latency_cdf", "power", "frequencies", "streams")


def run_demo(tmp_path, domain: int, *args: str) -> tuple[dict, str]:
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "twill_ros.cli", "demo", "--quiet", "--report", str(report),
         *args], cwd=REPO, env=child_env(domain), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return json.loads((report / "summary.json").read_text()), proc.stdout


def check_summary(summary: dict, policy: str, budget_w: float, platform: str) -> dict:
    assert list(summary) == ["workload", "platform", "seed", "results"]
    assert summary["platform"] == platform
    (result,) = summary["results"]
    # the compare contract's fields, in its order, plus how many jobs got no result
    assert list(result) == [*RESULT_KEYS, "lost"]
    assert (result["policy"], result["budget_w"], result["lost"]) == (policy, budget_w, 0)
    assert set(result["per_stream"]) == STREAMS
    assert result["jobs"] == result["completed"] > 0
    assert result["jobs"] == sum(s["jobs"] for s in result["per_stream"].values())
    assert 0.0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    return result


def test_twin_demo_writes_the_compare_summary_and_plots(tmp_path):
    summary, out = run_demo(tmp_path, test_domain_id() + 10, "--duration", "6",
                            "--policy", "gpu_fifo", "--budget", "12")
    result = check_summary(summary, "gpu_fifo", 12.0, "orin_nx_16gb")
    assert result["static_caps"] == "all-used"      # the node's default profile
    # the 30 Hz camera holds its rate on the MultiThreadedExecutor (it fell to ~20 Hz when
    # rclpy's pool threads were starved; see node.lifecycle.spin_while)
    assert result["per_stream"]["detector"]["jobs"] >= 30 * 6 * 0.9
    for plot in PLOTS:
        assert (tmp_path / "report" / f"{plot}_12W.png").stat().st_size > 1000
    assert "detector" in out and "gpu_fifo" in out     # the per-stream table was printed


def test_real_demo_runs_the_tiny_models_on_the_cpu_units(tmp_path):
    # the twin test above runs the default MultiThreadedExecutor; this covers the other
    summary, out = run_demo(tmp_path, test_domain_id() + 11, "--real", "--duration", "6",
                            "--executor", "single")
    result = check_summary(summary, "twill", 30.0, "host")
    assert result["static_caps"] is None            # its own DVFS
    assert result["llm"]["tps_mean"] > 0                      # the tiny LLM really decoded
    assert "planner-1: completed on cpu_" in out


@pytest.mark.parametrize("args, message", [
    (("--budget", "150"), "twill demo: --budget: power budget must be 1 to 100 W, got 150"),
    (("--platform", "xavier"), "twill demo: cannot start: resource 'config/platforms/xavier.yaml'"),
])
def test_demo_refuses_bad_arguments_in_one_line(args, message):
    proc = subprocess.run([sys.executable, "-m", "twill_ros.cli", "demo", "--quiet", *args],
                          cwd=REPO, env=child_env(test_domain_id() + 12), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
