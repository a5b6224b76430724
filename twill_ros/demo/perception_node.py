"""perception_node: camera-rate DNN jobs, as a robot's perception pipeline sends them.

Two streams through TwillClient by topic: a detector at camera rate with a per-frame
deadline, and a slower classifier. Models, rates, priorities and deadlines are parameters
(``detector.*``, ``classifier.*``).
"""

from __future__ import annotations

from twill_msgs.msg import JobRequest

from twill_ros.demo.streams import (
    StreamClientNode,
    StreamConfig,
    StreamSubmitter,
    declare_stream,
)
from twill_ros.node.lifecycle import node_main

DETECTOR = StreamConfig(name="detector", model="yolov8s", period_s=1 / 30,
                        priority=JobRequest.HIGH, deadline_ms=50.0)
CLASSIFIER = StreamConfig(name="classifier", model="resnet50", period_s=1 / 5,
                          priority=JobRequest.NORMAL, deadline_ms=200.0)


class PerceptionNode(StreamClientNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("perception_node", **kwargs)
        self.streams = [StreamSubmitter(self, self.client, declare_stream(self, default))
                        for default in (DETECTOR, CLASSIFIER)]


main = node_main(PerceptionNode)
