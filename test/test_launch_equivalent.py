"""What twill.launch.py starts, started as processes: runs here and on robots.

The launch file passes its params file plus platform/policy/budget overrides to
twill_scheduler; this test does the same on the command line and checks the node runs with
them and answers jobs, so the launch scenario is covered where launch_pytest is missing.
"""

from __future__ import annotations

import ast
from pathlib import Path

from ros_harness import PARAMS_FILE, ClientNode, SchedulerProcess, test_domain_id
from twill_msgs.msg import JobResult

from twill_ros.client import make_request

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
                                          "power_budget_w": 12.0}, params_file=PARAMS_FILE)
    client = ClientNode(domain, name="launch_equivalent_client")
    try:
        assert client.client.wait_for_scheduler(30.0), scheduler.tail()
        job_id = client.client.submit(make_request("resnet50"), via="service")
        result = client.client.wait_result(job_id, 20.0)
        assert result.status == JobResult.COMPLETED and result.unit == "gpu"
        assert client.wait_until(lambda: bool(client.states), 5.0)
        state = client.states[-1][1]
        assert (state.policy, state.power_budget_w) == ("gpu_fifo", 12.0)
        assert any("policy gpu_fifo, budget 12.0 W" in line for line in scheduler.log)
    finally:
        client.close()
        assert scheduler.stop() == 0
