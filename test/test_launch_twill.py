"""launch/twill.launch.py under launch_pytest, on machines that have it (a ROS install).

Where launch_pytest is missing (PyPI-wheel environments) this module skips as a whole;
test_launch_equivalent.py runs the same scenario with processes everywhere.
"""

from __future__ import annotations

import pytest

launch_pytest = pytest.importorskip(
    "launch_pytest", reason="launch_pytest is not installed (it ships with ROS 2, not PyPI)")

from launch import LaunchDescription  # noqa: E402
from launch.actions import SetLaunchConfiguration  # noqa: E402
from launch_pytest.tools import process as process_tools  # noqa: E402
from launch_ros.actions import Node  # noqa: E402
from ros_harness import load_launch_file  # noqa: E402


@pytest.fixture
def twill_launch() -> LaunchDescription:
    return load_launch_file("twill.launch.py")


@pytest.fixture
def scheduler_action(twill_launch) -> Node:
    return next(e for e in twill_launch.entities if isinstance(e, Node))


@launch_pytest.fixture
def launch_description(twill_launch):
    # Launch arguments given on the command line are launch configurations set beforehand.
    return LaunchDescription([
        SetLaunchConfiguration("policy", "gpu_fifo"),
        SetLaunchConfiguration("budget", "12"),    # an integer, as a user types it
        *twill_launch.entities,
        launch_pytest.actions.ReadyToTest(),
    ])


@pytest.mark.launch(fixture=launch_description)
async def test_scheduler_starts_with_launch_arguments(scheduler_action, launch_context):
    def started(output: str) -> bool:
        return "policy gpu_fifo, budget 12.0 W" in output

    assert await process_tools.wait_for_output(launch_context, scheduler_action, started,
                                               timeout=30)
