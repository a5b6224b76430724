"""Rosbag replay: ``twill bag`` writes a workload's jobs as a real rosbag2 bag, ``twill replay``
plays a bag against a scheduler process over DDS and every request ends in one result."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from rclpy.serialization import serialize_message
from ros_harness import REPO, ClientNode, SchedulerProcess, test_domain_id
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore
from test_cli import RESULT_KEYS
from twill_msgs.msg import JobRequest, JobResult

from twill_ros.bags import (
    JOB_REQUEST_TYPE,
    JOBS_TOPIC,
    BagError,
    RecordedRequest,
    _typestore,
    read_requests,
    write_requests,
)
from twill_ros.cli import main
from twill_ros.commands.bag import request_of
from twill_ros.core.catalog import load_catalog
from twill_ros.loopback import child_env
from twill_ros.node.lifecycle import spin_while
from twill_ros.node.requests import prompt_tokens
from twill_ros.replay import Replay
from twill_ros.sim.workload import generate_jobs, load_workload

WORKLOAD = """\
name: replay_small
duration_s: 3
streams:
  - name: camera
    model: yolov8s
    priority: 200
    deadline_ms: 50
    arrival: {type: periodic, period_ms: 100}
  - name: planner
    model: llama-3.2-1b
    priority: 50
    prompt_tokens: 40
    max_new_tokens: 8
    arrival: {type: trace, times_s: [0.5]}
  - name: alarms
    model: bert-base
    priority: 220
    arrival: {type: bursts, every_s: 1, count: 3, spacing_ms: 20}
"""


@pytest.fixture
def workload_file(tmp_path):
    path = tmp_path / "replay_small.yaml"
    path.write_text(WORKLOAD)
    return path


def replay(bag, domain: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "twill_ros.cli", "replay", str(bag), "--quiet", *args],
        cwd=REPO, env=child_env(domain), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=120)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_workload_bag_holds_each_arrival_as_the_request_its_stream_would_send(
        workload_file, tmp_path, storage):
    bag = tmp_path / "bag"
    assert main(["bag", "--workload", str(workload_file), "--seed", "3", "--out", str(bag),
                 "--storage", storage]) == 0
    assert f"storage_identifier: {storage}" in (bag / "metadata.yaml").read_text()
    jobs = generate_jobs(load_workload(workload_file, load_catalog()), 3)
    recorded = read_requests(bag)
    assert len(recorded) == len(jobs) == 30 + 1 + 9
    for item, job in zip(recorded, jobs, strict=True):
        r = item.request
        assert (r.job_id, r.client_id, r.model, r.priority) == (job.job_id, job.stream,
                                                                job.model, job.priority)
        assert item.offset_s == pytest.approx(job.submit_s - jobs[0].submit_s, abs=1e-9)
        assert r.deadline_ms == pytest.approx(50.0 if job.stream == "camera" else 0.0)
    planner = next(item.request for item in recorded if item.request.client_id == "planner")
    assert (prompt_tokens(planner.prompt), planner.max_new_tokens) == (40, 8)
    # what `ros2 bag record` would write: the topic, the type and colcon's type hash
    metadata = (bag / "metadata.yaml").read_text()
    assert f"name: {JOBS_TOPIC}" in metadata and f"type: {JOB_REQUEST_TYPE}" in metadata
    generated = REPO / "install/twill_msgs/share/twill_msgs/msg/JobRequest.json"
    if generated.exists():            # type hashes exist from Iron on (not in Humble)
        rihs = json.loads(generated.read_text())["type_hashes"][0]["hash_string"]
        assert rihs in metadata


def test_bad_bags_and_outputs_are_refused_with_the_reason(workload_file, tmp_path, capsys):
    with pytest.raises(BagError, match="not a rosbag2 bag"):
        read_requests(tmp_path / "nowhere")
    # a real bag, but of another topic: say which topics it has
    other = tmp_path / "chatter"
    with Writer(other, version=9) as writer:
        conn = writer.add_connection("/chatter", "std_msgs/msg/String",
                                     typestore=get_typestore(Stores.LATEST))
        writer.write(conn, 1, b"\x00\x01\x00\x00\x03\x00\x00\x00hi\x00\x00")
    with pytest.raises(BagError, match=r"no /twill/jobs topic \(topics: /chatter\)"):
        read_requests(other)
    # two robots' requests in one bag: which to replay is the user's choice
    two = tmp_path / "two"
    with Writer(two, version=9) as writer:
        for ns in ("robot1", "robot2"):
            conn = writer.add_connection(f"/{ns}/twill/jobs", JOB_REQUEST_TYPE,
                                         typestore=_typestore())
            writer.write(conn, 1, serialize_message(JobRequest(job_id=ns, model="resnet50")))
    with pytest.raises(BagError, match="several .* topics .*/robot1/twill/jobs, "
                                       "/robot2/twill/jobs.* --topic"):
        read_requests(two)
    (chosen,) = read_requests(two, "/robot2/twill/jobs")
    assert chosen.request.job_id == "robot2"
    empty = tmp_path / "empty"
    write_requests(empty, [])
    with pytest.raises(BagError, match="has no messages"):
        read_requests(empty)
    assert main(["replay", str(other)]) == 2
    assert "no /twill/jobs topic" in capsys.readouterr().err
    assert main(["bag", "--workload", str(workload_file), "--out", str(other)]) == 2
    assert "exists" in capsys.readouterr().err


def test_a_message_that_is_not_this_job_request_is_refused_with_its_index(tmp_path, capsys):
    bag = tmp_path / "old"
    with Writer(bag, version=9) as writer:
        conn = writer.add_connection(JOBS_TOPIC, JOB_REQUEST_TYPE, typestore=_typestore())
        writer.write(conn, 1, serialize_message(JobRequest(job_id="fine", model="resnet50")))
        writer.write(conn, 2, b"\x00\x01\x00\x00\xff")       # e.g. an older JobRequest
    with pytest.raises(BagError, match="message 1 on /twill/jobs is not a JobRequest of this "
                                       "twill_msgs"):
        read_requests(bag)
    assert main(["replay", str(bag)]) == 2
    assert "message 1 on /twill/jobs" in capsys.readouterr().err
    assert main(["replay", str(bag), "--rate", "nan"]) == 2     # it hung, publishing nothing
    assert "--rate and --wait must be > 0" in capsys.readouterr().err


def test_generated_ids_never_take_one_the_bag_holds():
    recorded = [RecordedRequest(0.0, JobRequest(job_id=i, model="resnet50"))
                for i in ("replay-3", "x", "")]
    assert [r.request.job_id for r in Replay(recorded)._due] == ["replay-3", "x", "replay-3'"]


def test_spinning_wakes_when_the_next_request_is_due_not_up_to_50_ms_later():
    class Executor:
        def __init__(self):
            self.waits = []

        def spin_once(self, timeout_sec):
            self.waits.append(timeout_sec)

    executor = Executor()
    due = iter([0.004, 0.0, -0.01, 1.0])
    spin_while(executor, lambda: len(executor.waits) < 4, wake_in=lambda: next(due))
    assert executor.waits == [0.004, 0.0, 0.0, 0.05]


def test_replay_without_a_scheduler_says_so(workload_file, tmp_path):
    bag = tmp_path / "bag"
    assert main(["bag", "--workload", str(workload_file), "--out", str(bag)]) == 0
    proc = replay(bag, test_domain_id() + 12, "--wait", "2")
    assert proc.returncode == 2, proc.stdout
    assert "no scheduler on /twill/jobs" in proc.stdout
    proc = replay(bag, test_domain_id() + 12, "--namespace", "robot 1")
    assert proc.returncode == 2 and "--namespace 'robot 1'" in proc.stdout, proc.stdout


def test_replay_gives_every_request_of_a_bag_exactly_one_result(workload_file, tmp_path):
    bag = tmp_path / "bag"
    jobs = generate_jobs(load_workload(workload_file, load_catalog()), 0)
    requests = [(round(job.submit_s * 1e9), request_of(job)) for job in jobs]
    # as a robot's bag may hold them: no id, a repeated id, a model the scheduler lacks
    t_ns = requests[-1][0]
    requests += [(t_ns + 1, JobRequest(model="resnet50")),
                 (t_ns + 2, JobRequest(job_id=requests[0][1].job_id, model="resnet50")),
                 (t_ns + 3, JobRequest(job_id="odd-1", model="no-such-model"))]
    write_requests(bag, requests)

    domain = test_domain_id() + 13
    # a baseline, so that the summary has a static-cap profile to report (from /twill/state)
    scheduler = SchedulerProcess(domain, {"policy": "edf", "static_caps_profile": "accelerators"})
    observer = ClientNode(domain, name="replay_observer")
    try:
        assert observer.client.wait_for_scheduler(30.0), scheduler.tail()
        proc = replay(bag, domain, "--report", str(tmp_path / "report"))
        assert proc.returncode == 0, proc.stdout[-3000:]
        summary = json.loads((tmp_path / "report" / "summary.json").read_text())
        (result,) = summary["results"]
        assert list(result) == [*RESULT_KEYS, "lost", "duplicates"]
        assert (result["jobs"], result["lost"], result["duplicates"]) == (len(requests), 0, 0)
        assert (result["policy"], result["static_caps"]) == ("edf", "accelerators")
        assert (result["completed"], result["rejected"]) == (len(requests) - 1, 1)
        assert set(result["per_stream"]) == {"camera", "planner", "alarms", "resnet50",
                                             "no-such-model"}
        assert result["per_stream"]["camera"]["jobs"] == 30
        assert (tmp_path / "report" / "latency_cdf_15W.png").stat().st_size > 1000
        # what any ROS tool sees on /twill/results: one result per request, ids as replayed
        ids = {job.job_id for job in jobs} | {"replay-41", "replay-42", "odd-1"}
        assert observer.wait_until(lambda: set(observer.results) >= ids, 5.0)
        assert set(observer.results) == ids
        assert all(len(observer.results_for(i)) == 1 for i in ids)
        rejected = observer.results_for("odd-1")[0]
        assert rejected.status == JobResult.REJECTED and "no-such-model" in rejected.message
        # a replay in which nothing completes fails, and says why
        refused = tmp_path / "refused"
        write_requests(refused, [(t_ns + i, JobRequest(job_id=f"odd-{i + 2}", model="nope"))
                                 for i in range(2)])
        proc = replay(refused, domain)
        assert proc.returncode == 1, proc.stdout[-3000:]
        assert "no request completed (0 failed, 2 refused, 0 cancelled)" in proc.stdout
    finally:
        observer.close()
        assert scheduler.stop() == 0, scheduler.tail()
