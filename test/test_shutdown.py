"""SIGINT/SIGTERM: every live job gets a CANCELLED result with a reason, then a clean exit."""

from __future__ import annotations

import signal

import pytest
from ros_harness import ClientNode, SchedulerProcess, test_domain_id
from twill_msgs.msg import JobResult

from twill_ros.client import make_request


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
