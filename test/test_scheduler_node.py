"""The scheduler node as a robot uses it: its own process, real DDS, real twill_msgs."""

from __future__ import annotations

import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from ros_harness import ClientNode, SchedulerProcess, image_tensor, test_domain_id
from twill_msgs.msg import JobRequest, JobResult, Tensor

from twill_ros.client import JobRun, SchedulerError, TwillClient, make_request

UNITS = {"gpu", "dla0", "dla1", "cpu_a", "cpu_b"}
MAX_NEW_TOKENS = 256
MAX_PAYLOAD = 1_000_000
RESULT_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def domain() -> int:
    return test_domain_id()


@pytest.fixture(scope="module")
def scheduler(domain):
    proc = SchedulerProcess(domain, {"max_new_tokens": MAX_NEW_TOKENS,
                                     "max_payload_bytes": MAX_PAYLOAD})
    yield proc
    assert proc.stop() == 0, proc.tail()


@pytest.fixture(scope="module")
def ros(domain, scheduler):
    client = ClientNode(domain)
    assert client.client.wait_for_scheduler(30.0), "scheduler not reachable:\n" + \
        scheduler.tail()
    yield client
    client.close()


def check_timing(result: JobResult) -> None:
    assert result.unit in UNITS
    assert result.exec_ms > 0
    assert result.queue_ms >= 0 and result.frozen_ms >= 0
    assert result.total_ms >= result.exec_ms
    assert result.total_ms == pytest.approx(
        result.queue_ms + result.exec_ms + result.frozen_ms, abs=1.0)
    assert result.total_ms < RESULT_TIMEOUT_S * 1000


def test_topic_job_gets_exactly_one_completed_result(ros):
    stamp = ros.node.get_clock().now().to_msg()
    request = make_request("tiny-cnn", priority=JobRequest.HIGH, deadline_ms=500.0,
                           inputs=[image_tensor()])
    request.stamp = stamp
    job_id = ros.client.submit(request, via="topic")
    result = ros.client.wait_result(job_id, RESULT_TIMEOUT_S)
    assert result is not None, "no result for a topic job"
    assert result.status == JobResult.COMPLETED, result.message
    assert result.model == "tiny-cnn"
    assert result.client_id == ros.client.client_id
    assert (result.stamp.sec, result.stamp.nanosec) == (stamp.sec, stamp.nanosec)
    assert result.deadline_met
    check_timing(result)
    assert ros.wait_until(lambda: len(ros.results.get(job_id, ())) >= 1, 2.0)
    assert len(ros.results_for(job_id)) == 1


def test_service_job_result_arrives_on_topic(ros):
    job_id = ros.client.submit(make_request("resnet50"), via="service")
    assert job_id.startswith("twill-"), "the scheduler assigns an id when none is given"
    result = ros.client.wait_result(job_id, RESULT_TIMEOUT_S)
    assert result is not None and result.status == JobResult.COMPLETED, result
    check_timing(result)


def test_many_jobs_each_get_exactly_one_result(ros):
    models = ["tiny-cnn", "resnet50", "mobilenetv2", "tiny-bert", "bert-base"]
    ids = [ros.client.submit(make_request(models[i % len(models)],
                                          priority=50 + 10 * (i % 10)), via="topic")
           for i in range(60)]
    results = {job_id: ros.client.wait_result(job_id, RESULT_TIMEOUT_S) for job_id in ids}
    assert all(r is not None and r.status == JobResult.COMPLETED for r in results.values())
    time.sleep(0.5)  # a duplicate result would arrive now
    assert all(len(ros.results_for(job_id)) == 1 for job_id in ids)


def test_action_streams_feedback_with_unit_and_tokens(ros):
    feedback = []
    run = ros.client.run(make_request("tiny-llm", prompt="plan a path to the dock",
                                      max_new_tokens=12), feedback=feedback.append)
    result = run.result(RESULT_TIMEOUT_S)
    assert result.status == JobResult.COMPLETED, result.message
    assert result.tokens == 12
    assert result.ttft_ms > 0
    check_timing(result)
    running = [f for f in feedback if f.state == "running"]
    assert running and all(f.unit in UNITS for f in running)
    assert running[0].unit == result.unit or result.migrations > 0
    tokens = [f.tokens for f in feedback]
    assert tokens == sorted(tokens) and tokens[-1] >= 1
    assert all(f.elapsed_ms >= 0 for f in feedback)


def test_cancel_a_queued_job(ros):
    # Long generations until the scheduler has to queue one (all LLM-capable units busy) ...
    long_ids = []
    for _ in range(20):
        long_ids.append(ros.client.submit(make_request(
            "llama-3.2-1b", prompt="describe the map " * 20, max_new_tokens=MAX_NEW_TOKENS),
            via="service"))
        if ros.wait_until(lambda: ros.states and ros.states[-1][1].queued > 0, 0.5):
            break
    assert ros.states[-1][1].queued > 0, "the scheduler never queued an LLM job"
    # ... so one more of the same priority waits in the queue too; its feedback says so.
    feedback = []
    run = ros.client.run(make_request("llama-3.2-1b", prompt="queued",
                                      max_new_tokens=MAX_NEW_TOKENS, job_id="to-cancel"),
                         feedback=feedback.append)
    assert ros.wait_until(lambda: any(f.state == "queued" for f in feedback), 10.0)
    assert not any(f.state == "running" for f in feedback)
    cancelled, message = ros.client.cancel("to-cancel")
    assert cancelled, message
    result = run.result(RESULT_TIMEOUT_S)
    assert result.status == JobResult.CANCELLED
    assert result.message
    assert result.exec_ms == 0
    # A running job can be cancelled too; an unknown one cannot.
    for job_id in long_ids:
        assert ros.client.cancel(job_id)[0]
        assert ros.client.wait_result(job_id, RESULT_TIMEOUT_S).status == JobResult.CANCELLED
    cancelled, message = ros.client.cancel("no-such-job")
    assert not cancelled and "no-such-job" in message


def test_action_cancel(ros):
    run = ros.client.run(make_request("llama-3.2-1b", prompt="a long answer",
                                      max_new_tokens=MAX_NEW_TOKENS))
    assert ros.wait_until(lambda: run._goal_handle is not None, 10.0)
    run.cancel()
    result = run.result(RESULT_TIMEOUT_S)
    assert result.status == JobResult.CANCELLED


def test_a_run_cancelled_before_its_goal_is_accepted_is_cancelled(ros):
    run = ros.client.run(make_request("llama-3.2-1b", prompt="a long answer",
                                      max_new_tokens=MAX_NEW_TOKENS))
    run.cancel()                 # before the goal response: sent once it is accepted
    result = run.result(RESULT_TIMEOUT_S)
    assert result.status == JobResult.CANCELLED and result.job_id == run.job_id
    # its result went to the JobRun; the client keeps no copy nobody would claim
    assert ros.client.wait_result(run.job_id, 0.5) is None


def test_a_run_that_has_not_finished_in_time_raises_the_builtin_timeout_error():
    """concurrent.futures.TimeoutError is the builtin only from Python 3.11: on Humble's 3.10
    an `except TimeoutError` around run.result() let it through."""
    run = JobRun("slow-1")
    with pytest.raises(TimeoutError, match=r"job slow-1: no result within 0.05 s") as raised:
        run.result(0.05)
    assert type(raised.value) is TimeoutError


def test_a_request_submitted_twice_is_two_jobs_and_stays_as_it_was(ros):
    template = make_request("tiny-cnn", deadline_ms=50)       # an int: Humble checks types
    assert isinstance(template.deadline_ms, float)
    first, second = (ros.client.submit(template, via="topic") for _ in range(2))
    assert first != second and template.job_id == "" and template.client_id == ""
    for job_id in (first, second):
        assert ros.client.wait_result(job_id, RESULT_TIMEOUT_S).status == JobResult.COMPLETED


BAD_REQUESTS = {
    "unknown model": (make_request("resnet9000"), "unknown model 'resnet9000'"),
    "empty model": (make_request(""), "model is empty"),
    "wrong dtype": (make_request("tiny-cnn", inputs=[image_tensor(dtype="uint8")]),
                    "dtype 'uint8'"),
    "wrong shape": (make_request("tiny-cnn", inputs=[image_tensor(shape=(1, 3, 64, 64))]),
                    "shape [1, 3, 64, 64]"),
    "data length": (make_request("tiny-cnn", inputs=[image_tensor(nbytes=100)]),
                    "data has 100 bytes"),
    "negative deadline": (make_request("tiny-cnn", deadline_ms=-5.0), "deadline_ms"),
    "nan deadline": (make_request("tiny-cnn", deadline_ms=float("nan")), "deadline_ms"),
    "llm without prompt": (make_request("tiny-llm", max_new_tokens=4), "prompt must not be"),
    "llm zero tokens": (make_request("tiny-llm", prompt="hi", max_new_tokens=0),
                        "max_new_tokens must be > 0"),
    "llm too many tokens": (make_request("tiny-llm", prompt="hi",
                                         max_new_tokens=MAX_NEW_TOKENS + 1),
                            f"exceeds the limit of {MAX_NEW_TOKENS}"),
    "payload too large": (make_request("tiny-llm", prompt="x" * (MAX_PAYLOAD + 1),
                                       max_new_tokens=4), "exceeds max_payload_bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_by_topic_is_rejected_with_reason(ros, case):
    request, reason = BAD_REQUESTS[case]
    job_id = ros.client.submit(request, via="topic")
    result = ros.client.wait_result(job_id, RESULT_TIMEOUT_S)
    assert result is not None, f"{case}: no REJECTED result"
    assert result.status == JobResult.REJECTED
    assert reason in result.message, result.message


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_by_service_is_refused_with_reason(ros, case):
    request, reason = BAD_REQUESTS[case]
    with pytest.raises(SchedulerError, match="job refused") as refused:
        ros.client.submit(request, via="service")
    assert reason in str(refused.value)


def test_bad_goal_is_aborted_with_reason(ros):
    request, reason = BAD_REQUESTS["unknown model"]
    result = ros.client.run(request).result(RESULT_TIMEOUT_S)
    assert result.status == JobResult.REJECTED and reason in result.message


def test_an_id_of_a_refused_goal_can_be_used_again(ros):
    """A goal refused before admission has no copy on /twill/results: the client kept
    watching it, took the result of the next job with its id for the refused goal's copy
    (wait_result got nothing), and reported it lost once the scheduler left."""
    refused = ros.client.run(make_request("tiny-cnm", job_id="cam-1")).result(RESULT_TIMEOUT_S)
    assert refused.status == JobResult.REJECTED and "unknown model 'tiny-cnm'" in refused.message
    assert "cam-1" not in ros.client._pending
    job_id = ros.client.submit(make_request("tiny-cnn", job_id="cam-1"), via="topic")
    result = ros.client.wait_result(job_id, RESULT_TIMEOUT_S)
    assert result is not None and result.status == JobResult.COMPLETED


def test_duplicate_live_job_id_is_rejected(ros):
    first = make_request("llama-3.2-1b", prompt="long", max_new_tokens=64, job_id="dup-1")
    assert ros.client.submit(first, via="service") == "dup-1"
    # The client refuses to reuse an id of its own that has no result yet: by topic the
    # scheduler's REJECTED result would carry the same id as the running job's.
    for via in ("topic", "service"):
        with pytest.raises(ValueError, match="'dup-1' is still in use"):
            ros.client.submit(make_request("tiny-cnn", job_id="dup-1"), via=via)
    # Another client (here on the same node) is refused by the scheduler.
    other = TwillClient(ros.node)
    with pytest.raises(SchedulerError, match="duplicate job_id 'dup-1'"):
        other.submit(make_request("tiny-cnn", job_id="dup-1"), via="service")
    assert ros.client.cancel("dup-1")[0]
    assert ros.client.wait_result("dup-1", RESULT_TIMEOUT_S).status == JobResult.CANCELLED
    # Once its result is in, the id is free again.
    assert ros.client.submit(make_request("tiny-cnn", job_id="dup-1"), via="service") == "dup-1"
    assert ros.client.wait_result("dup-1", RESULT_TIMEOUT_S).status == JobResult.COMPLETED


def test_a_burst_of_service_calls_and_goals_is_answered_in_full(ros):
    """The services and the action keep a deep queue: with the default one (the newest 10
    unserved calls) most of a burst got no answer at all."""
    burst = 120
    with ThreadPoolExecutor(max_workers=burst) as pool:
        submitted = list(pool.map(
            lambda i: ros.client.submit(make_request("tiny-cnn", job_id=f"burst-s{i}"),
                                        via="service", timeout_s=RESULT_TIMEOUT_S),
            range(burst)))
    runs = [ros.client.run(make_request("tiny-cnn", job_id=f"burst-a{i}"))
            for i in range(burst)]
    assert submitted == [f"burst-s{i}" for i in range(burst)]
    assert all(run.result(RESULT_TIMEOUT_S).status == JobResult.COMPLETED for run in runs)
    for job_id in submitted:
        assert ros.client.wait_result(job_id, RESULT_TIMEOUT_S).status == JobResult.COMPLETED


def test_node_survives_bad_input_and_still_completes_jobs(ros, scheduler):
    garbage = make_request("tiny-cnn", inputs=[Tensor(name="input", shape=[2**31, 2**31],
                                                      dtype="float32", data=b"\x00")])
    garbage_id = ros.client.submit(garbage, via="topic")
    assert ros.client.wait_result(garbage_id, RESULT_TIMEOUT_S).status == JobResult.REJECTED
    job_id = ros.client.submit(make_request("tiny-cnn", inputs=[image_tensor()]))
    result = ros.client.wait_result(job_id, RESULT_TIMEOUT_S)
    assert result.status == JobResult.COMPLETED
    assert scheduler.alive()


def test_power_budget_service_and_parameter_limits(ros):
    assert ros.client.set_power_budget(12.5) == pytest.approx(12.5)
    assert ros.wait_until(lambda: ros.states and ros.states[-1][1].power_budget_w == 12.5, 5.0)
    for bad in (-3.0, float("nan"), 1e6):
        with pytest.raises(SchedulerError, match="budget refused: .*power_budget_w"):
            ros.client.set_power_budget(bad)
    with pytest.raises(SchedulerError, match=r"budget refused: power budget 3 W is below "
                                             r"orin_nx_16gb's idle power \(4.6 W"):
        ros.client.set_power_budget(3.0)
    # The old value stays in force.
    assert ros.wait_until(lambda: ros.states[-1][1].power_budget_w == 12.5, 2.0)
    assert ros.client.set_power_budget(15.0) == pytest.approx(15.0)


def test_a_client_made_while_its_node_spins_does_not_stop_the_executor(ros):
    """rclpy 9.x adds an action client to its node before creating the lock its
    get_num_entities takes: an executor spinning the node in another thread that met it in
    between died, and every later call of the node hung (seen once in CI). Here the node
    asks every waitable it is given at once, as that executor does."""
    asked = []
    add_waitable = ros.node.add_waitable

    def add_and_ask(waitable) -> None:
        add_waitable(waitable)
        asked.append(waitable.get_num_entities())

    ros.node.add_waitable = add_and_ask
    try:
        TwillClient(ros.node)
    finally:
        del ros.node.add_waitable
    assert asked
    assert ros.client.set_power_budget(15.0) == pytest.approx(15.0)


def test_async_calls_answer_through_futures_without_blocking(ros):
    """What a callback of the executor spinning the node may call (the blocking calls would
    wait for that very executor)."""
    long = make_request("llama-3.2-1b", prompt="async", max_new_tokens=MAX_NEW_TOKENS)
    job_id = ros.client.submit_async(long).result(RESULT_TIMEOUT_S)
    cancelled, message = ros.client.cancel_async(job_id).result(RESULT_TIMEOUT_S)
    assert cancelled, message
    assert ros.client.wait_result(job_id, RESULT_TIMEOUT_S).status == JobResult.CANCELLED
    request, reason = BAD_REQUESTS["unknown model"]
    with pytest.raises(SchedulerError, match="job refused") as refused:
        ros.client.submit_async(request).result(RESULT_TIMEOUT_S)
    assert reason in str(refused.value)
    with pytest.raises(SchedulerError, match="budget refused: power budget 3 W is below"):
        ros.client.set_power_budget_async(3.0).result(RESULT_TIMEOUT_S)
    assert ros.client.set_power_budget_async(15.0).result(RESULT_TIMEOUT_S) == 15.0


def test_state_and_diagnostics_are_published(ros):
    assert ros.wait_until(lambda: len(ros.diagnostics) >= 2 and len(ros.states) >= 5, 5.0)
    _, state = ros.states[-1]
    assert state.policy == "twill" and state.platform == "orin_nx_16gb"
    assert state.static_caps == ""          # twill runs its own DVFS
    assert {u.name for u in state.units} == UNITS
    assert all(0 < u.frequency_hz <= u.max_frequency_hz for u in state.units)
    assert state.power_w > 0
    _, diag = ros.diagnostics[-1]
    names = {s.name for s in diag.status}
    assert {"twill/power", "twill/queue", "twill/platform"} <= names
    assert {f"twill/units/{u}" for u in UNITS} <= names
    assert all(s.hardware_id == "orin_nx_16gb" for s in diag.status)


def test_diagnostics_count_the_queue_as_the_state_does(ros):
    """Frozen jobs are not queued: /twill/state counts them apart, and the core's max_queue
    does not count them. /diagnostics called queued and frozen jobs together 'queued'."""
    low = [ros.client.submit(make_request("llama-3.2-1b", prompt="patrol", job_id=f"low-{i}",
                                          max_new_tokens=MAX_NEW_TOKENS,
                                          priority=JobRequest.LOW), via="service")
           for i in range(6)]
    assert ros.wait_until(lambda: ros.states and ros.states[-1][1].running >= 3, 10.0)
    urgent = [ros.client.submit(make_request("llama-3.2-1b", prompt="stop", job_id=f"hi-{i}",
                                             max_new_tokens=MAX_NEW_TOKENS,
                                             priority=JobRequest.CRITICAL), via="service")
              for i in range(6)]

    def agree() -> bool:
        state = ros.states[-1][1]
        status = ros.newest_status("twill/queue")
        values = {v.key: v.value for v in status.values} if status else {}
        return state.frozen > 0 and values.get("queued") == str(state.queued) \
            and values.get("frozen") == str(state.frozen)
    try:
        assert ros.wait_until(agree, 10.0), (ros.states[-1][1], ros.newest_status("twill/queue"))
    finally:
        for job_id in low + urgent:
            ros.client.cancel(job_id)
    for job_id in low + urgent:
        assert ros.client.wait_result(job_id, RESULT_TIMEOUT_S) is not None


def test_diagnostics_say_when_the_budget_fits_work_only_by_freezing_it(ros):
    """At 6 W an LLM job does not fit even at the lowest clocks: the controller keeps it
    frozen and lets it run only in turns. The power stayed within the budget, so
    /diagnostics said OK while the job hardly moved."""
    assert ros.client.set_power_budget_async(6.0).result(RESULT_TIMEOUT_S) == 6.0
    job_id = ros.client.submit(make_request("llama-3.2-1b", prompt="tight", job_id="tight",
                                            max_new_tokens=MAX_NEW_TOKENS), via="service")

    def held() -> bool:
        status = ros.newest_status("twill/power")
        return status is not None and status.level == DiagnosticStatus.WARN \
            and "frozen for power" in status.message
    try:
        assert ros.wait_until(held, 10.0), ros.newest_status("twill/power")
    finally:
        ros.client.cancel(job_id)
        assert ros.client.set_power_budget_async(15.0).result(RESULT_TIMEOUT_S) == 15.0
    assert ros.client.wait_result(job_id, RESULT_TIMEOUT_S) is not None


def test_tensor_payload_roundtrip_through_dds(ros):
    """Little-endian float data of the right size passes validation end to end."""
    values = struct.pack("<" + "f" * (3 * 32 * 32), *([0.5] * (3 * 32 * 32)))
    tensor = Tensor(name="input", shape=[1, 3, 32, 32], dtype="float32", data=values)
    job_id = ros.client.submit(make_request("tiny-cnn", inputs=[tensor]), via="service")
    assert ros.client.wait_result(job_id, RESULT_TIMEOUT_S).status == JobResult.COMPLETED


def set_parameter(ros, name: str, value: int) -> SetParametersResult:
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    client = ros.node.create_client(SetParameters, "/twill_scheduler/set_parameters")
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(SetParameters.Request(
        parameters=[Parameter(name, value=value).to_parameter_msg()]))
    assert ros.wait_until(future.done, 10.0)
    ros.node.destroy_client(client)
    return future.result().results[0]


def test_queue_limit_refuses_jobs_when_full_and_is_dynamic(ros):
    assert set_parameter(ros, "max_queue", 2).successful
    since = time.monotonic()
    accepted, refusals = [], []
    try:
        for i in range(12):
            request = make_request("llama-3.2-1b", prompt="fill the queue",
                                   max_new_tokens=MAX_NEW_TOKENS, job_id=f"fill-{i}")
            try:
                accepted.append(ros.client.submit(request, via="service"))
            except SchedulerError as refused:
                refusals.append(str(refused))
    finally:
        assert set_parameter(ros, "max_queue", 1000).successful
        for job_id in accepted:
            ros.client.cancel(job_id)
    assert refusals and all("queue full" in r for r in refusals), refusals
    assert len(accepted) < 12
    # /diagnostics says so in the next period, with the count and the reason
    assert ros.wait_until(lambda: any(
        s.level == b"\x01" and "refused in the last period (latest: queue full" in s.message
        for stamp, array in list(ros.diagnostics) if stamp >= since for s in array.status
        if s.name == "twill/queue"), 5.0)
    for job_id in accepted:
        assert ros.client.wait_result(job_id, RESULT_TIMEOUT_S).status == JobResult.CANCELLED
    # A non-integer value is refused and the limit stays.
    assert not set_parameter(ros, "max_queue", "many").successful


def test_a_scheduler_on_simulated_time_still_controls_power():
    """use_sim_time:=true (a robot stack in simulation) put the node's timers on /clock:
    with no /clock, or a slow one, the power samples, the control tick, /twill/state and
    /diagnostics stopped, while jobs still ran at full speed."""
    domain = test_domain_id() + 9
    scheduler = SchedulerProcess(domain, {"use_sim_time": "true"})
    ros = ClientNode(domain, name="sim_time_client")
    try:
        assert ros.client.wait_for_scheduler(30.0), scheduler.tail()
        assert ros.wait_until(lambda: len(ros.states) >= 3 and ros.diagnostics, 5.0), \
            (len(ros.states), len(ros.diagnostics))
        assert ros.states[-1][1].power_w > 0
    finally:
        ros.close()
        assert scheduler.stop() == 0, scheduler.tail()


@pytest.mark.parametrize("param, value, reason", [
    ("policy", "nope", "unknown policy 'nope'; known: twill"),
    ("platform", "orin_agx", "config/platforms/orin_agx.yaml' not found"),
    # ROS parameter types are strict: 10 is an integer; the reason says how to write it
    ("power_budget_w", "10", "(write a double with a decimal point, e.g. 10.0)"),
    ("max_queue", "500.0", "expecting type 'INTEGER': max_queue (write a whole number"),
    ("power_budget_w", "150.0", "out of range"),
    ("power_budget_w", "4.0", "power budget 4 W is below orin_nx_16gb's idle power (4.6 W"),
    ("max_queue", "0", "out of range"),
    ("control", "foo", "unknown control 'foo'; choose from: model, jetson, host"),
    ("static_caps_profile", "fast", "unknown static-cap profile 'fast'; known: all-used"),
])
def test_bad_startup_parameters_stop_the_node_with_the_reason(param, value, reason):
    code, log = SchedulerProcess(test_domain_id() + 8, {param: value}).exited()
    assert code != 0
    assert "cannot start" in log and reason in log, log[-2000:]
    assert "Traceback" not in log
