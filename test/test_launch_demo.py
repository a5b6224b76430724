"""launch/demo.launch.py under launch_pytest (ROS installs); test_demo_e2e.py runs the same
three processes everywhere."""

from __future__ import annotations

import pytest

launch_pytest = pytest.importorskip(
    "launch_pytest", reason="launch_pytest is not installed (it ships with ROS 2, not PyPI)")

from launch import LaunchDescription  # noqa: E402
from launch_pytest.tools import process as process_tools  # noqa: E402
from launch_ros.actions import Node  # noqa: E402
from ros_harness import load_launch_file  # noqa: E402


@pytest.fixture
def demo_launch() -> LaunchDescription:
    return load_launch_file("demo.launch.py")


@pytest.fixture
def planner_action(demo_launch) -> Node:
    return next(e for e in demo_launch.entities
                if isinstance(e, Node) and e.node_executable == "planner_node")


@launch_pytest.fixture
def launch_description(demo_launch):
    return LaunchDescription([*demo_launch.entities, launch_pytest.actions.ReadyToTest()])


@pytest.mark.launch(fixture=launch_description)
async def test_planner_job_runs_through_the_scheduler(planner_action, launch_context):
    def plan_finished(output: str) -> bool:
        return "planner-1: completed on" in output

    assert await process_tools.wait_for_output(launch_context, planner_action, plan_finished,
                                               timeout=60)
