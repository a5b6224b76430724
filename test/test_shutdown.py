"""SIGINT/SIGTERM: every live job gets a CANCELLED result with a reason, then a clean exit;
Ctrl-C during start-up: a message and exit code 130, no traceback."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from ros_harness import REPO, ClientNode, SchedulerProcess, test_domain_id
from twill_msgs.msg import JobResult

from twill_ros.client import make_request
from twill_ros.loopback import child_env


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


SLOW_START = """\
import time
from twill_ros.node.lifecycle import node_main

def slow_node():
    print("starting", flush=True)
    time.sleep(60)      # as a TensorRT engine build may take

node_main(slow_node)()
"""


def test_ctrl_c_during_start_up_exits_with_a_message_not_a_traceback():
    proc = subprocess.Popen([sys.executable, "-c", SLOW_START], cwd=REPO,
                            env=child_env(test_domain_id() + 15), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().strip() == "starting"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert "slow_node: start-up interrupted" in out and "Traceback" not in out, out
