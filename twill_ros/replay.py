"""Publishing a bag's job requests with their recorded spacing, and matching what comes back.

Every request keeps its bag job id so its result can be told apart on /twill/results; an
empty or repeated id gets ``replay-<n>`` (the n-th request of the bag, from 1; primed while
the bag holds that id too). A request's
stream is its client id (a ``twill bag`` stream name, or the node that sent it on the robot),
else its model.
"""

from __future__ import annotations

from collections.abc import Sequence

from rclpy.clock import Clock
from rclpy.publisher import Publisher

from twill_ros.bags import RecordedRequest
from twill_ros.monitor import SentLedger


class Replay:
    """Takes the recorded requests over: their ids and stamps are set as they are replayed.
    ``sent`` holds what went out and what came back."""

    def __init__(self, recorded: Sequence[RecordedRequest]) -> None:
        self._due = list(recorded)
        self._next = 0
        self.sent = SentLedger()
        recorded_ids = {item.request.job_id for item in self._due}
        seen: set[str] = set()
        for n, item in enumerate(self._due, start=1):
            if not item.request.job_id or item.request.job_id in seen:
                new_id = f"replay-{n}"
                while new_id in recorded_ids or new_id in seen:   # the bag may hold it
                    new_id += "'"
                item.request.job_id = new_id
            seen.add(item.request.job_id)

    def __len__(self) -> int:
        return len(self._due)

    def next_offset_s(self) -> float | None:
        """The bag offset of the next request to publish; None once all are out."""
        return self._due[self._next].offset_s if self._next < len(self._due) else None

    def publish_due(self, offset_s: float, publisher: Publisher, clock: Clock) -> bool:
        """Publish every request recorded at or before ``offset_s``, stamped now; False once
        all are out."""
        while self._next < len(self._due) and self._due[self._next].offset_s <= offset_s:
            request = self._due[self._next].request
            self._next += 1
            request.stamp = clock.now().to_msg()
            self.sent.add(request.client_id or request.model, request)
            publisher.publish(request)
        return self._next < len(self._due)
