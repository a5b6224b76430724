"""Job streams of the demo nodes: parameters, timers and what each stream sent.

A stream submits jobs of one model at a fixed period (``burst`` jobs each time, e.g. a
camera frame or a burst of voice-command intents). Job ids are ``<stream>-<n>``, so results
can be told apart per stream by anyone listening on /twill/results.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from twill_msgs.msg import JobRequest, JobResult

from twill_ros.client import TwillClient, make_request


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


@dataclass
class Sent:
    request: JobRequest
    sent_s: float               # time.monotonic() when submitted
    result: JobResult | None = None


def declare_stream(node: Node, default: StreamConfig) -> StreamConfig:
    """Declare ``<stream>.*`` parameters (descriptors, ranges) and read them back."""
    name = default.name

    def declare(key: str, value, description: str, **ranges):
        desc = ParameterDescriptor(description=description, read_only=True)
        if "float_range" in ranges:
            low, high = ranges["float_range"]
            desc.floating_point_range = [FloatingPointRange(from_value=low, to_value=high)]
        if "int_range" in ranges:
            low, high = ranges["int_range"]
            desc.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
        return node.declare_parameter(f"{name}.{key}", value, desc).value

    model = declare("model", default.model, f"Catalog model id of the {name} stream.")
    rate_hz = declare("rate_hz", 1.0 / default.period_s, f"Submissions per second of {name}.",
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
                                         f"Tokens to generate per {name} job.",
                                         int_range=(1, 4096))}
    return StreamConfig(name=name, model=model, period_s=1.0 / rate_hz, priority=priority,
                        deadline_ms=deadline_ms, burst=burst, via=default.via, **llm)


class StreamSubmitter:
    """Submits a stream's jobs on a timer through TwillClient and keeps what it sent."""

    def __init__(self, node: Node, client: TwillClient, config: StreamConfig,
                 on_feedback=None) -> None:
        self.node, self.client, self.config = node, client, config
        self.on_feedback = on_feedback
        self.sent: dict[str, Sent] = {}
        self._seq = 0
        self._lock = threading.Lock()
        self._timer = node.create_timer(config.period_s, self.submit_burst)

    def submit_burst(self) -> None:
        for _ in range(self.config.burst):
            self.submit()

    def submit(self, prompt: str = "") -> str:
        c = self.config
        with self._lock:
            self._seq += 1
            job_id = f"{c.name}-{self._seq}"
        request = make_request(c.model, priority=c.priority, deadline_ms=c.deadline_ms,
                               prompt=prompt or c.prompt, max_new_tokens=c.max_new_tokens,
                               job_id=job_id)
        request.stamp = self.node.get_clock().now().to_msg()
        sent = Sent(request=request, sent_s=time.monotonic())
        with self._lock:
            self.sent[job_id] = sent
        if c.via == "action":
            run = self.client.run(request, feedback=lambda fb: self._feedback(job_id, fb))
            threading.Thread(target=self._await_action, args=(sent, run), daemon=True).start()
        else:
            self.client.submit(request, via="topic")
        return job_id

    def _await_action(self, sent: Sent, run) -> None:
        sent.result = run.result()
        self.record(sent.result)

    def _feedback(self, job_id: str, feedback) -> None:
        if self.on_feedback is not None:
            self.on_feedback(job_id, feedback)

    def record(self, result: JobResult) -> None:
        with self._lock:
            sent = self.sent.get(result.job_id)
            if sent is not None:
                sent.result = result

    def stop(self) -> None:
        self._timer.cancel()

    def pending(self) -> int:
        with self._lock:
            return sum(1 for s in self.sent.values() if s.result is None)
