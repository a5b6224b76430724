"""Publishing a bag's job requests with their recorded spacing, and matching what comes back.

Every request keeps its bag job id so its result can be told apart on /twill/results; an
empty or repeated id gets ``replay-<n>`` (the n-th request of the bag, from 1). A request's
stream is its client id (a ``twill bag`` stream name, or the node that sent it on the robot),
else its model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from rclpy.clock import Clock
from rclpy.publisher import Publisher
from twill_msgs.msg import JobResult

from twill_ros.bags import RecordedRequest
from twill_ros.monitor import Sent


class Replay:
    """Takes the recorded requests over: their ids and stamps are set as they are replayed."""

    def __init__(self, recorded: Sequence[RecordedRequest]) -> None:
        self._due = list(recorded)
        self._next = 0
        self.sent: dict[str, tuple[str, Sent]] = {}     # job id -> (stream, what was sent)
        self.duplicates = 0                             # results beyond the first per job
        self._pending = 0
        self._lock = threading.Lock()
        seen: set[str] = set()
        for n, item in enumerate(self._due, start=1):
            if not item.request.job_id or item.request.job_id in seen:
                item.request.job_id = f"replay-{n}"
            seen.add(item.request.job_id)

    def __len__(self) -> int:
        return len(self._due)

    def publish_due(self, offset_s: float, publisher: Publisher, clock: Clock) -> bool:
        """Publish every request recorded at or before ``offset_s``, stamped now; False once
        all are out."""
        while self._next < len(self._due) and self._due[self._next].offset_s <= offset_s:
            request = self._due[self._next].request
            self._next += 1
            request.stamp = clock.now().to_msg()
            with self._lock:
                self.sent[request.job_id] = (request.client_id or request.model,
                                             Sent(request=request))
                self._pending += 1
            publisher.publish(request)
        return self._next < len(self._due)

    def record(self, result: JobResult) -> None:
        """Keep the first result of each replayed job; count any further one."""
        with self._lock:
            entry = self.sent.get(result.job_id)
            if entry is None:
                return
            sent = entry[1]
            if sent.result is not None:
                self.duplicates += 1
                return
            sent.result = result
            self._pending -= 1

    def pending(self) -> int:
        """Requests published without a result yet."""
        with self._lock:
            return self._pending

    def streams(self) -> list[str]:
        """Stream names in order of first appearance."""
        with self._lock:
            return list(dict.fromkeys(stream for stream, _ in self.sent.values()))
