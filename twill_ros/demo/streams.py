"""Job streams of the demo nodes: parameters, timers and what each stream sent.

A stream submits jobs of one model at a fixed period (``burst`` jobs each time, e.g. a
camera frame or a burst of voice-command intents). Job ids are ``<stream>-<n>``, so results
can be told apart per stream by anyone listening on /twill/results.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from rclpy.node import Node
from twill_msgs.msg import JobRequest, JobResult

from twill_ros.client import SchedulerError, TwillClient, make_request
from twill_ros.monitor import SentLedger
from twill_ros.node.lifecycle import spin_while
from twill_ros.node.params import descriptor
from twill_ros.node.results import STATUS_NAMES


@dataclass(frozen=True)
class StreamConfig:
    name: str
    model: str
    period_s: float
    priority: int = JobRequest.NORMAL
    deadline_ms: float = 0.0
    burst: int = 1
    prompt: str = ""
    max_new_tokens: int = 0
    via: str = "topic"          # topic | action


def declare_stream(node: Node, default: StreamConfig) -> StreamConfig:
    """Declare ``<stream>.*`` parameters (descriptors, ranges) and read them back."""
    name = default.name

    def declare(key: str, value, description: str, **ranges):
        return node.declare_parameter(f"{name}.{key}", value,
                                      descriptor(description, read_only=True, **ranges)).value

    model = declare("model", default.model, f"Catalog model id of the {name} stream.")
    rate_hz = declare("rate_hz", 1.0 / default.period_s,
                      f"Periods per second of {name} (each submits burst jobs).",
                      float_range=(0.01, 1000.0))
    priority = declare("priority", default.priority, f"Priority of {name} jobs (0..255).",
                       int_range=(0, 255))
    deadline_ms = declare("deadline_ms", default.deadline_ms,
                          f"Relative deadline of {name} jobs in ms (0 = none).",
                          float_range=(0.0, 1e6))
    burst = declare("burst", default.burst, f"Jobs submitted at once per {name} period.",
                    int_range=(1, 1000))
    llm = {}
    if default.max_new_tokens:
        llm = {"prompt": declare("prompt", default.prompt, f"Prompt of {name} LLM jobs."),
               "max_new_tokens": declare("max_new_tokens", default.max_new_tokens,
                                         f"Tokens to generate per {name} job (at most the "
                                         "scheduler's max_new_tokens, 1024 by default).",
                                         int_range=(1, 1024))}
    return StreamConfig(name=name, model=model, period_s=1.0 / rate_hz, priority=priority,
                        deadline_ms=deadline_ms, burst=burst, via=default.via, **llm)


class StreamSubmitter:
    """Submits a stream's jobs on a timer through TwillClient and keeps what it sent."""

    def __init__(self, node: Node, client: TwillClient, config: StreamConfig,
                 on_feedback=None) -> None:
        self.node, self.client, self.config = node, client, config
        self.on_feedback = on_feedback
        self.sent = SentLedger()
        self._lock = threading.RLock()
        self._timer = node.create_timer(config.period_s, self.submit_burst)

    def submit_burst(self) -> None:
        try:
            for _ in range(self.config.burst):
                self.submit()
        except SchedulerError as error:
            self.node.get_logger().warning(f"{self.config.name}: not submitted: {error}",
                                           throttle_duration_sec=5.0)

    def submit(self, prompt: str = "") -> str:
        """Submit one job; SchedulerError (nothing recorded) while no scheduler listens."""
        c = self.config
        with self._lock:  # one submission at a time keeps ids gap-free: <stream>-1, -2, ...
            job_id = f"{c.name}-{len(self.sent) + 1}"
            request = make_request(c.model, priority=c.priority, deadline_ms=c.deadline_ms,
                                   prompt=prompt or c.prompt, max_new_tokens=c.max_new_tokens,
                                   job_id=job_id)
            request.stamp = self.node.get_clock().now().to_msg()
            if c.via == "action":
                run = self.client.run(request, feedback=lambda fb: self._feedback(job_id, fb))
                run.add_done_callback(self.record)
            else:
                self.client.submit(request, via="topic")
            self.sent.add(c.name, request)
        return job_id

    def _feedback(self, job_id: str, feedback) -> None:
        if self.on_feedback is not None:
            self.on_feedback(job_id, feedback)

    def record(self, result: JobResult) -> None:
        with self._lock:    # a result that beats its submit() waits until the job is recorded
            self.sent.record(result)

    def stop(self) -> None:
        self._timer.cancel()

    def pending(self) -> int:
        return self.sent.pending()


class StreamClientNode(Node):
    """A node whose job streams submit through one TwillClient and collect their results."""

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.client = TwillClient(self, on_result=self.on_result)
        self.streams: list[StreamSubmitter] = []

    def on_result(self, result: JobResult) -> None:
        for stream in self.streams:
            stream.record(result)
        if result.status in (JobResult.REJECTED, JobResult.FAILED):
            self.get_logger().warning(
                f"{result.job_id}: {STATUS_NAMES[result.status]}: {result.message}",
                throttle_duration_sec=5.0)

    def stop(self) -> None:
        for stream in self.streams:
            stream.stop()

    def on_exit(self, executor) -> None:
        """Stop submitting and give the last requests time to reach the scheduler."""
        self.stop()
        spin_while(executor, lambda: True, timeout_s=0.5)
