"""Names and QoS of Twill's ROS interfaces: one place for the contract in the README.

The names are relative, so they resolve in the node's namespace: ``/twill/jobs`` at the
root, ``/robot1/twill/jobs`` for nodes launched with ``namespace:=robot1``; a namespace thus
separates whole Twill stacks. /diagnostics stays absolute (one aggregator per robot).
Requests and results use a deep RELIABLE queue: a burst of jobs must not be dropped by DDS
(a publisher is not told when a subscriber's queue overflows).
"""

from __future__ import annotations

from rclpy.qos import QoSProfile, ReliabilityPolicy

NAMESPACE = "twill"
JOBS = "jobs"
RESULTS = "results"
STATE = "state"
SUBMIT = "submit"
CANCEL = "cancel"
SET_POWER_BUDGET = "set_power_budget"
RUN = "run"
DIAGNOSTICS = "/diagnostics"

JOB_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def name(leaf: str, namespace: str = NAMESPACE) -> str:
    """The name of one of the interfaces, e.g. ``name(JOBS)`` -> ``twill/jobs``."""
    return f"{namespace}/{leaf}"
