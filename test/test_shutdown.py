"""SIGINT/SIGTERM: every live job gets a CANCELLED result with a reason, then a clean exit;
Ctrl-C during start-up: a message and exit code 130, no traceback; a crash: the client fails
the jobs it had pending there."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading

import pytest
from ros_harness import PARAMS_FILE, REPO, ClientNode, SchedulerProcess, test_domain_id
from twill_msgs.msg import JobResult

from twill_ros.client import SchedulerError, make_request
from twill_ros.loopback import child_env

LOSS_TIMEOUT_S = 40.0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_shutdown_cancels_live_jobs_with_a_reason(sig):
    domain = test_domain_id() + 3 + (sig == signal.SIGTERM)
    scheduler = SchedulerProcess(domain)
    ros = ClientNode(domain, name="shutdown_client")
    try:
        assert ros.client.wait_for_scheduler(30.0), scheduler.tail()
        ids = [ros.client.submit(make_request("llama-3.2-1b", prompt="a long story",
                                              max_new_tokens=512), via="service")
               for _ in range(4)]
        run = ros.client.run(make_request("llama-3.2-1b", prompt="by action",
                                          max_new_tokens=512))
        assert ros.wait_until(lambda: ros.states and ros.states[-1][1].running >= 3, 10.0)
        assert scheduler.stop(sig) == 0, scheduler.tail()
        for job_id in ids:
            result = ros.client.wait_result(job_id, 5.0)
            assert result is not None, f"{job_id}: no result at shutdown"
            assert result.status == JobResult.CANCELLED
            assert "shutting down" in result.message
        action_result = run.result(5.0)
        assert action_result.status == JobResult.CANCELLED
        assert any("cancelled 5 live job(s)" in line for line in scheduler.log)
    finally:
        ros.close()
        scheduler.stop()


def test_a_job_sent_while_the_scheduler_shuts_down_is_refused_not_lost():
    """The node spins on after SIGINT to send its goodbyes; a job it accepted then got no
    result (the node exited with it live). Jobs keep coming until the node is gone."""
    domain = test_domain_id() + 18
    scheduler = SchedulerProcess(domain)
    ros = ClientNode(domain, name="late_client")
    accepted, refusals = [], []
    stop = threading.Event()

    def keep_submitting() -> None:
        for i in itertools.count():
            request = make_request("llama-3.2-1b", prompt="late", max_new_tokens=512,
                                   job_id=f"late-{i}")
            try:
                accepted.append(ros.client.submit(request, via="service", timeout_s=1.0))
            except SchedulerError as error:
                if "job refused" not in str(error):
                    return              # the service has gone
                refusals.append(str(error))
            if stop.wait(0.01):
                return

    try:
        assert ros.client.wait_for_scheduler(30.0), scheduler.tail()
        pump = threading.Thread(target=keep_submitting)
        pump.start()
        assert ros.wait_until(lambda: len(accepted) >= 20, 10.0)
        assert scheduler.stop(signal.SIGINT) == 0, scheduler.tail()
        stop.set()
        pump.join(10.0)
        assert any("scheduler shutting down" in r for r in refusals), refusals
        assert ros.wait_until(lambda: all(ros.results_for(j) for j in accepted), 5.0), \
            [j for j in accepted if not ros.results_for(j)]
        assert all([r.status for r in ros.results_for(j)] == [JobResult.CANCELLED]
                   for j in accepted)
    finally:
        stop.set()
        ros.close()
        scheduler.stop()


SLOW_START = """\
import time
from twill_ros.node.lifecycle import node_main

def slow_node():
    print("starting", flush=True)
    time.sleep(60)      # as a TensorRT engine build may take

node_main(slow_node)()
"""


def test_ctrl_c_during_start_up_exits_with_a_message_not_a_traceback():
    # started as a background job of a script would be: with SIGINT ignored, which the child
    # inherits and under which Python installs no KeyboardInterrupt handler
    proc = subprocess.Popen([sys.executable, "-c", SLOW_START], cwd=REPO,
                            env=child_env(test_domain_id() + 15), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert proc.stdout.readline().strip() == "starting"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert "slow_node: start-up interrupted" in out and "Traceback" not in out, out


def test_a_crashed_scheduler_fails_its_pending_jobs_and_its_restart_takes_new_ones():
    domain = test_domain_id() + 16
    scheduler = SchedulerProcess(domain)
    ros = ClientNode(domain, name="crash_client")
    try:
        assert ros.client.wait_for_scheduler(30.0), scheduler.tail()
        long = dict(prompt="a long story", max_new_tokens=512)
        by_service = ros.client.submit(make_request("llama-3.2-1b", **long), via="service")
        by_topic = ros.client.submit(make_request("llama-3.2-1b", **long), via="topic")
        run = ros.client.run(make_request("llama-3.2-1b", **long))
        errors = []
        run.add_done_callback(errors.append, on_error=errors.append)

        def live(state):
            return state.queued + state.running + state.frozen
        assert ros.wait_until(lambda: ros.states and live(ros.states[-1][1]) == 3, 10.0)
        scheduler.stop(signal.SIGKILL)       # a crash: nobody sends these jobs a result
        scheduler = SchedulerProcess(domain)     # and a respawn, as launch files do
        # DDS notices a participant that vanished without saying so within its lease (20 s)
        with pytest.raises(SchedulerError, match=f"{run.job_id}: the scheduler went away"):
            run.result(LOSS_TIMEOUT_S)
        assert len(errors) == 1 and isinstance(errors[0], SchedulerError)
        for job_id in (by_service, by_topic):
            with pytest.raises(SchedulerError, match=f"{job_id}: the scheduler went away"):
                ros.client.wait_result(job_id, 5.0)
        assert not ros.results_for(by_service) and not ros.results_for(run.job_id)
        assert ros.client.wait_for_scheduler(30.0), scheduler.tail()
        result = ros.client.run(make_request("tiny-cnn")).result(20.0)
        assert result.status == JobResult.COMPLETED, result.message
    finally:
        ros.close()
        scheduler.stop()


def test_a_client_on_simulated_time_still_notices_a_crashed_scheduler():
    """The client watched for its scheduler on its node's clock: under use_sim_time with
    no /clock (or a paused simulation) the check never ran and jobs waited forever."""
    from rclpy.parameter import Parameter

    domain = test_domain_id() + 19
    scheduler = SchedulerProcess(domain)
    ros = ClientNode(domain, name="sim_time_client")
    try:
        ros.node.set_parameters([Parameter("use_sim_time", value=True)])
        assert ros.client.wait_for_scheduler(30.0), scheduler.tail()
        job_id = ros.client.submit(make_request("llama-3.2-1b", prompt="a long story",
                                                max_new_tokens=512), via="service")
        scheduler.stop(signal.SIGKILL)
        with pytest.raises(SchedulerError, match=f"{job_id}: the scheduler went away"):
            ros.client.wait_result(job_id, LOSS_TIMEOUT_S)
    finally:
        ros.close()
        scheduler.stop()


def test_calls_that_cannot_wait_are_refused_at_once_while_no_scheduler_is_there():
    ros = ClientNode(test_domain_id() + 17, name="lonely_client")
    try:
        with pytest.raises(SchedulerError, match="twill/run action server is not available"):
            ros.client.run(make_request("tiny-cnn"))
        for call in (lambda: ros.client.submit_async(make_request("tiny-cnn", job_id="a")),
                     lambda: ros.client.cancel_async("a"),
                     lambda: ros.client.set_power_budget_async(12.0)):
            with pytest.raises(SchedulerError, match="not available"):
                call()
        # the refused submission did not keep its id ("still in use" otherwise)
        with pytest.raises(SchedulerError, match="not available"):
            ros.client.submit_async(make_request("tiny-cnn", job_id="a"))
    finally:
        ros.close()


FAULTY_SCHEDULER = """\
from twill_ros.node.lifecycle import node_main
from twill_ros.node.scheduler_node import TwillSchedulerNode


class FaultyScheduler(TwillSchedulerNode):
    def __init__(self):
        super().__init__()
        self.create_timer(0.1, self._bug)

    def _bug(self):
        if self._live:
            raise RuntimeError("a bug in a callback")


node_main(FaultyScheduler)()
"""


def test_a_callback_that_raises_still_gives_live_jobs_their_result():
    """A bug in a callback ended the spin before the node's goodbyes: the live jobs got no
    result (their clients learnt of it only when DDS noticed the node gone, 20 s on)."""
    domain = test_domain_id() + 19
    proc = subprocess.Popen([sys.executable, "-c", FAULTY_SCHEDULER, "--ros-args",
                             "--params-file", str(PARAMS_FILE)], cwd=REPO,
                            env=child_env(domain), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    ros = ClientNode(domain, name="faulty_client")
    try:
        assert ros.client.wait_for_scheduler(30.0)
        job_id = ros.client.submit(make_request("llama-3.2-1b", prompt="a long story",
                                                max_new_tokens=512), via="service")
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "RuntimeError: a bug in a callback" in out, out
        result = ros.client.wait_result(job_id, 5.0)
        assert result is not None and result.status == JobResult.CANCELLED, out
    finally:
        proc.kill()
        ros.close()
