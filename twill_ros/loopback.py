"""DDS stays on this machine: the environment every ROS process Twill starts runs with.

The Kilted wheels read ROS_AUTOMATIC_DISCOVERY_RANGE, Humble reads ROS_LOCALHOST_ONLY, so
both are set. No rclpy import: the benches and the CLI's argument checks load this too.
"""

from __future__ import annotations

import os

LOOPBACK_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOCALHOST_ONLY": "1"}


def child_env(domain_id: int) -> dict[str, str]:
    """The current environment for a child ROS process: its own domain, discovery on
    loopback, output unbuffered (it is read line by line)."""
    return {**os.environ, **LOOPBACK_ENV, "ROS_DOMAIN_ID": str(domain_id),
            "PYTHONUNBUFFERED": "1"}
