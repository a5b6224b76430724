"""Names and QoS of Twill's ROS interfaces: one place for the contract in the README.

The names are relative, so they resolve in the node's namespace: ``/twill/jobs`` at the
root, ``/robot1/twill/jobs`` for nodes launched with ``namespace:=robot1``; a namespace thus
separates whole Twill stacks. /diagnostics stays absolute (one aggregator per robot).
Requests and results, and the service and action calls, use a deep RELIABLE queue on both
sides: a burst of jobs must not be dropped by DDS. A publisher is not told when a
subscriber's queue overflows, and a service keeps only its newest 10 unserved calls by
default: of 300 calls sent at once the node saw about 25, the rest got no answer.
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
# keyword arguments of ActionServer and ActionClient: its goal, result and cancel services
ACTION_QOS = {f"{service}_service_qos_profile": JOB_QOS for service in ("goal", "result", "cancel")}


def name(leaf: str, namespace: str = NAMESPACE) -> str:
    """The name of one of the interfaces, e.g. ``name(JOBS)`` -> ``twill/jobs``."""
    return f"{namespace}/{leaf}"
