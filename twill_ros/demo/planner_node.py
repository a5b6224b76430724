"""planner_node: language and planning jobs, as a robot's task planner sends them.

LLM plan requests on a timer, or one per message on ``~/request`` (std_msgs/String, the
prompt), run as actions whose feedback streams tokens and state (queued/running/frozen);
plus bursts of high-priority intent classification (a transformer), as when a spoken command
arrives and must be understood at once.
"""

from __future__ import annotations

import rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import String
from twill_msgs.msg import JobRequest, JobResult

from twill_ros.client import TwillClient
from twill_ros.demo.streams import StreamConfig, StreamSubmitter, declare_stream
from twill_ros.node.lifecycle import spin_until_stopped

PLANNER = StreamConfig(name="planner", model="llama-3.2-1b", period_s=8.0,
                       priority=JobRequest.LOW, max_new_tokens=64, via="action",
                       prompt="You are a mobile robot. Plan the route to the charging dock, "
                              "avoiding the loading bay.")
INTENT = StreamConfig(name="intent", model="bert-base", period_s=10.0,
                      priority=JobRequest.CRITICAL, deadline_ms=100.0, burst=5)


class PlannerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("planner_node", **kwargs)
        self.client = TwillClient(self, on_result=self._on_result)
        self.planner = StreamSubmitter(self, self.client, declare_stream(self, PLANNER),
                                       on_feedback=self._on_feedback)
        self.intent = StreamSubmitter(self, self.client, declare_stream(self, INTENT))
        self.streams = [self.planner, self.intent]
        self.create_subscription(String, "~/request", self._on_request, 10)
        self._state: dict[str, str] = {}

    def _on_request(self, msg: String) -> None:
        self.planner.submit(prompt=msg.data)

    def _on_feedback(self, job_id: str, feedback) -> None:
        """Log state changes (queued -> running -> frozen -> running) as they stream in."""
        if self._state.get(job_id) != feedback.state:
            self._state[job_id] = feedback.state
            self.get_logger().info(f"{job_id}: {feedback.state} on {feedback.unit or '-'} "
                                   f"after {feedback.tokens} tokens")

    def _on_result(self, result: JobResult) -> None:
        for stream in self.streams:
            stream.record(result)
        self._state.pop(result.job_id, None)

    def stop(self) -> None:
        for stream in self.streams:
            stream.stop()


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = PlannerNode()
        spin_until_stopped([node])
    finally:
        rclpy.try_shutdown()
