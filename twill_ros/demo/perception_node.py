"""perception_node: camera-rate DNN jobs, as a robot's perception pipeline sends them.

Two streams through TwillClient by topic: a detector at camera rate with a per-frame
deadline, and a slower classifier. Models, rates, priorities and deadlines are parameters.
"""

from __future__ import annotations

import rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from twill_msgs.msg import JobRequest, JobResult

from twill_ros.client import TwillClient
from twill_ros.demo.streams import StreamConfig, StreamSubmitter, declare_stream
from twill_ros.node.lifecycle import spin_until_stopped

DETECTOR = StreamConfig(name="detector", model="yolov8s", period_s=1 / 30,
                        priority=JobRequest.HIGH, deadline_ms=50.0)
CLASSIFIER = StreamConfig(name="classifier", model="resnet50", period_s=1 / 5,
                          priority=JobRequest.NORMAL, deadline_ms=200.0)


class PerceptionNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("perception_node", **kwargs)
        self.client = TwillClient(self, on_result=self._on_result)
        self.streams = [StreamSubmitter(self, self.client, declare_stream(self, default))
                        for default in (DETECTOR, CLASSIFIER)]
        self.misses = 0

    def _on_result(self, result: JobResult) -> None:
        for stream in self.streams:
            stream.record(result)
        if result.status == JobResult.COMPLETED and not result.deadline_met:
            self.misses += 1

    def stop(self) -> None:
        for stream in self.streams:
            stream.stop()


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = PerceptionNode()
        spin_until_stopped([node])
    finally:
        rclpy.try_shutdown()
