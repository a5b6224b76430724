"""What twill.launch.py starts, started as processes: runs here and on robots.

The launch file passes its params file plus platform/policy/budget overrides to
twill_scheduler; this test does the same on the command line and checks the node runs with
them and answers jobs, so the launch scenario is covered where launch_pytest is missing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from ros_harness import (
    PARAMS_FILE,
    REPO,
    ClientNode,
    SchedulerProcess,
    test_domain_id,
)
from twill_msgs.msg import JobResult

from twill_ros.bags import write_requests
from twill_ros.client import make_request
from twill_ros.loopback import child_env

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "twill.launch.py"


def launch_arguments() -> dict[str, str]:
    """DeclareLaunchArgument names and defaults, read from the launch file's source."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    found = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument":
            name = call.args[0].value
            default = next((k.value for k in call.keywords if k.arg == "default_value"), None)
            found[name] = default.value if isinstance(default, ast.Constant) else None
    return found


def test_launch_file_declares_documented_arguments():
    args = launch_arguments()
    assert set(args) == {"namespace", "params_file", "platform", "policy", "budget"}
    assert args["platform"] == "orin_nx_16gb" and args["policy"] == "twill"
    assert float(args["budget"]) > 0


def test_launch_scenario_as_processes():
    domain = test_domain_id() + 1
    scheduler = SchedulerProcess(domain, {"platform": "orin_nx_16gb", "policy": "gpu_fifo",
                                          "power_budget_w": 12.0, "static_caps_profile": "gpu"},
                                 params_file=PARAMS_FILE)
    client = ClientNode(domain, name="launch_equivalent_client")
    try:
        assert client.client.wait_for_scheduler(30.0), scheduler.tail()
        job_id = client.client.submit(make_request("resnet50"), via="service")
        result = client.client.wait_result(job_id, 20.0)
        assert result.status == JobResult.COMPLETED and result.unit == "gpu"
        assert client.wait_until(lambda: bool(client.states), 5.0)
        state = client.states[-1][1]
        assert (state.policy, state.static_caps, state.power_budget_w) == ("gpu_fifo", "gpu", 12.0)
        assert any("policy gpu_fifo, budget 12.0 W" in line for line in scheduler.log)
    finally:
        client.close()
        assert scheduler.stop() == 0


def test_a_launch_namespace_holds_a_whole_twill_stack(tmp_path):
    # what `ros2 launch twill_ros twill.launch.py namespace:=robot1 policy:=gpu_fifo` starts,
    # with the shipped params file (its node key must match a namespaced scheduler)
    params = tmp_path / "twill.yaml"
    params.write_text(PARAMS_FILE.read_text().replace("policy: twill ", "policy: gpu_fifo "))
    domain = test_domain_id() + 14
    scheduler = SchedulerProcess(domain, params_file=params, namespace="/robot1")
    inside = ClientNode(domain, name="robot1_client", namespace="/robot1")
    outside = ClientNode(domain, name="root_client")
    try:
        assert inside.client.wait_for_scheduler(30.0), scheduler.tail()
        job_id = inside.client.submit(make_request("resnet50"), via="service")
        assert inside.client.wait_result(job_id, 20.0).status == JobResult.COMPLETED
        assert inside.wait_until(lambda: bool(inside.states), 5.0)
        assert inside.states[-1][1].policy == "gpu_fifo"          # the params file applied
        assert inside.wait_until(lambda: inside.results_for(job_id), 5.0)
        # a bag replayed into the namespace reaches it
        bag = tmp_path / "bag"
        write_requests(bag, [(i * 10**7, make_request("resnet50", job_id=f"ns-{i}"))
                             for i in range(3)])
        replay = subprocess.run(
            [sys.executable, "-m", "twill_ros.cli", "replay", str(bag), "--namespace",
             "/robot1", "--quiet"], cwd=REPO, env=child_env(domain), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=60)
        assert replay.returncode == 0, replay.stdout[-2000:]
        assert inside.wait_until(lambda: all(inside.results_for(f"ns-{i}") for i in range(3)),
                                 5.0)
        # nothing of it at the root: no /twill/* services, results or state
        assert not outside.client.wait_for_scheduler(1.0)
        assert not outside.results and not outside.states
        # /diagnostics is the robot's one topic: the stack's statuses carry its namespace
        assert outside.wait_until(lambda: outside.newest_status("robot1/twill/power"), 5.0)
        assert outside.newest_status("twill/power") is None
    finally:
        inside.close()
        outside.close()
        assert scheduler.stop() == 0, scheduler.tail()
