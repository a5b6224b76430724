"""planner_node: language and planning jobs, as a robot's task planner sends them.

LLM plan requests on a timer, or one per message on ``~/request`` (std_msgs/String, the
prompt), run as actions whose feedback streams tokens and state (queued/running/frozen);
plus bursts of high-priority intent classification (a transformer), as when a spoken command
arrives and must be understood at once.
"""

from __future__ import annotations

from std_msgs.msg import String
from twill_msgs.msg import JobRequest, JobResult

from twill_ros.demo.streams import (
    StreamClientNode,
    StreamConfig,
    StreamSubmitter,
    declare_stream,
)
from twill_ros.node.lifecycle import node_main
from twill_ros.node.results import STATUS_NAMES

PLANNER = StreamConfig(name="planner", model="llama-3.2-1b", period_s=8.0,
                       priority=JobRequest.LOW, max_new_tokens=64, via="action",
                       prompt="You are a mobile robot. Plan the route to the charging dock, "
                              "avoiding the loading bay.")
INTENT = StreamConfig(name="intent", model="bert-base", period_s=10.0,
                      priority=JobRequest.CRITICAL, deadline_ms=100.0, burst=5)


class PlannerNode(StreamClientNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("planner_node", **kwargs)
        self.planner = StreamSubmitter(self, self.client, declare_stream(self, PLANNER),
                                       on_feedback=self._on_feedback)
        self.intent = StreamSubmitter(self, self.client, declare_stream(self, INTENT))
        self.streams = [self.planner, self.intent]
        self.create_subscription(String, "~/request", self._on_request, 10)
        self._state: dict[str, str] = {}
        self._seen: dict[str, set[str]] = {}

    def _on_request(self, msg: String) -> None:
        self.planner.submit(prompt=msg.data)

    def _on_feedback(self, job_id: str, feedback) -> None:
        """Log where a plan runs and when it is first frozen; every change at debug level."""
        if self._state.get(job_id) == feedback.state:
            return
        self._state[job_id] = feedback.state
        first_time = feedback.state not in self._seen.setdefault(job_id, set())
        self._seen[job_id].add(feedback.state)
        log = self.get_logger().info if first_time else self.get_logger().debug
        where = f" on {feedback.unit}" if feedback.unit else ""
        log(f"{job_id}: {feedback.state}{where} after {feedback.tokens} tokens"
            if feedback.tokens else f"{job_id}: {feedback.state}{where}")

    def on_result(self, result: JobResult) -> None:
        super().on_result(result)
        if self._state.pop(result.job_id, None) is not None:
            self._seen.pop(result.job_id, None)
            self.get_logger().info(
                f"{result.job_id}: {STATUS_NAMES[result.status]} on {result.unit or '-'}, "
                f"{result.tokens} tokens, TTFT {result.ttft_ms:.0f} ms, frozen "
                f"{result.freezes} times ({result.frozen_ms:.0f} ms), total "
                f"{result.total_ms:.0f} ms")


main = node_main(PlannerNode)
