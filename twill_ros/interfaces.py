"""Names and QoS of Twill's ROS interfaces: one place for the contract in the README.

Requests and results use a deep RELIABLE queue: a burst of jobs must not be dropped by DDS
(a publisher is not told when a subscriber's queue overflows).
"""

from __future__ import annotations

from rclpy.qos import QoSProfile, ReliabilityPolicy

NAMESPACE = "/twill"
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
    """The full name of one of the interfaces, e.g. ``name(JOBS)`` -> ``/twill/jobs``."""
    return f"{namespace}/{leaf}"
