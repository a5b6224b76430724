"""Job requests as rosbag2 files: what ``ros2 bag record /twill/jobs`` keeps on a robot, and
what ``twill bag`` writes from a workload file, so a run can be replayed against a scheduler.

Bags are read and written with ``rosbags`` (rosbag2_py is not on PyPI); the messages stay CDR
bytes and rclpy (de)serialises them exactly as a subscriber would. The writer records the
message definition from twill_msgs' own .msg files, so the bag carries the same type hash as
the colcon-generated type.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rclpy.serialization import deserialize_message, serialize_message
from twill_msgs.msg import JobRequest

from twill_ros import interfaces as ifc

JOB_REQUEST_TYPE = "twill_msgs/msg/JobRequest"
JOBS_TOPIC = "/" + ifc.name(ifc.JOBS)        # a scheduler's, at the root namespace


class BagError(ValueError):
    """A bag that cannot be replayed, with the reason."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request from a bag; ``offset_s`` is its time after the bag's first request."""

    offset_s: float
    request: JobRequest


def _typestore():
    """The ROS 2 types plus twill_msgs' JobRequest and Tensor, from the installed .msg files."""
    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.LATEST)
    msg_dir = Path(get_package_share_directory("twill_msgs")) / "msg"
    types = {}
    for name in ("Tensor", "JobRequest"):
        types.update(get_types_from_msg((msg_dir / f"{name}.msg").read_text(encoding="utf-8"),
                                        f"twill_msgs/msg/{name}"))
    store.register(types)
    return store


def write_requests(path: str | Path, requests: Iterable[tuple[int, JobRequest]],
                   storage: str = "sqlite3") -> int:
    """Write ``(receive time ns, request)`` pairs on /twill/jobs to a new bag at ``path`` (a
    directory, as rosbag2 makes) in ``storage`` (sqlite3: Humble's default, or mcap);
    returns how many."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    count = 0
    with Writer(Path(path), version=9, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        jobs = writer.add_connection(JOBS_TOPIC, JOB_REQUEST_TYPE, typestore=_typestore())
        for stamp_ns, request in requests:
            writer.write(jobs, stamp_ns, serialize_message(request))
            count += 1
    return count


def read_requests(path: str | Path, topic: str | None = None) -> list[RecordedRequest]:
    """The requests on ``topic`` in the bag at ``path``, in recorded order. Without a topic,
    the bag's one JobRequest topic (``/twill/jobs``, or ``/robot1/twill/jobs`` recorded from
    a namespaced scheduler). BagError says why a bag cannot be used."""
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError

    bag = Path(path)
    if not (bag / "metadata.yaml").is_file():
        raise BagError(f"{bag}: not a rosbag2 bag (no metadata.yaml in that directory)")
    try:
        with Reader(bag) as reader:
            topics = {c.topic: c.msgtype for c in reader.connections}
            requests = sorted(t for t, msgtype in topics.items() if msgtype == JOB_REQUEST_TYPE)
            if topic is None and len(requests) > 1:
                raise BagError(f"{bag}: several {JOB_REQUEST_TYPE} topics ({', '.join(requests)}"
                               f"); choose one with --topic")
            topic = topic or (requests[0] if requests else JOBS_TOPIC)
            if topic not in topics:
                raise BagError(f"{bag}: no {topic} topic (topics: "
                               f"{', '.join(sorted(topics)) or 'none'})")
            if topics[topic] != JOB_REQUEST_TYPE:
                raise BagError(f"{bag}: {topic} holds {topics[topic]}, not {JOB_REQUEST_TYPE}")
            connections = [c for c in reader.connections if c.topic == topic]
            raw = [(stamp, data) for _, stamp, data in reader.messages(connections=connections)]
    except ReaderError as error:
        raise BagError(f"{bag}: cannot read the bag: {error}") from error
    if not raw:
        raise BagError(f"{bag}: {topic} has no messages")
    first = raw[0][0]
    recorded = []
    for index, (stamp, data) in enumerate(raw):
        try:
            request = deserialize_message(data, JobRequest)
        except Exception as error:  # noqa: BLE001 - rclpy raises its RMWError for bad CDR
            raise BagError(f"{bag}: message {index} on {topic} is not a JobRequest of this "
                           f"twill_msgs (recorded with another version of it?): "
                           f"{str(error).splitlines()[0]}") from None
        recorded.append(RecordedRequest((stamp - first) / 1e9, request))
    return recorded
