"""A robot's Jetson configured by parameters only: the node process against a fake JetPack 6
Orin NX tree (``platform_root``), with its nvpmodel tool, INA3221 and GPU devfreq.

The node reads the module power from the INA3221 files, sets the nvpmodel mode it is given,
turns the GPU clock down when the budget drops and puts the clock window back on exit.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager

import pytest
from ros_harness import ClientNode, SchedulerProcess, test_domain_id
from sysfs_trees import INA_DRIVER, JP6_GPU, ORIN_RAILS, build, orin_nx, read
from twill_msgs.msg import JobResult

from twill_ros.client import make_request

VDD_IN_W = ORIN_RAILS[0][1] * ORIN_RAILS[0][2] / 1e6


def gpu_max_hz(root) -> int:
    """The devfreq max_freq the node last wrote; 0 while a write is under way (a fake tree's
    files are plain files: a write truncates before it fills them, unlike sysfs)."""
    text = read(root, f"{JP6_GPU}/max_freq")
    return int(text) if text else 0


@contextmanager
def jetson_node(root, name: str, params: dict):
    """The scheduler process on the fake tree at ``root`` (INA3221 power, no jtop) and a
    client that has seen it; the scheduler must exit cleanly."""
    domain = test_domain_id() + 9
    scheduler = SchedulerProcess(domain, {"control": "jetson", "platform_root": str(root),
                                          "jetson.use_jtop": False, **params})
    client = ClientNode(domain, name=name)
    try:
        assert client.client.wait_for_scheduler(30.0), scheduler.tail()
        yield scheduler, client
    finally:
        client.close()
        assert scheduler.stop() == 0, scheduler.tail()


def test_nvpmodel_power_sensor_and_gpu_clock_follow_the_parameters(tmp_path):
    root = build(tmp_path, orin_nx("jp6", mode=0))
    window = (read(root, f"{JP6_GPU}/min_freq"), read(root, f"{JP6_GPU}/max_freq"))
    # the mode by id, as typed on a command line (-p jetson.nvpmodel_mode:=3 is an integer)
    with jetson_node(root, "jetson_node_client", {"jetson.nvpmodel_mode": 3,
                                                   "power_budget_w": 15.0}) as (scheduler, client):
        assert read(root, "var/lib/nvpmodel/status") == "pmode:0003"
        # no control sets the DLA clocks: the core plans around them at the 25W caps
        assert client.wait_until(lambda: "fixed clocks (planned around): dla0 614.4 MHz, "
                                 "dla1 614.4 MHz" in scheduler.tail(), 5.0), scheduler.tail()
        assert client.wait_until(lambda: client.newest_status("twill/power") is not None, 5.0)
        platform = client.newest_status("twill/platform")
        assert platform.level == b"\x00", platform.message
        assert "power from ina3221" in platform.message
        assert "nvpmodel 25W (3)" in platform.message
        power = {kv.key: kv.value for kv in client.newest_status("twill/power").values}
        assert float(power["power_w"]) == pytest.approx(VDD_IN_W, abs=0.01)
        for label, mv, ma in ORIN_RAILS:        # VDD_IN for the budget, every rail reported
            assert float(power[f"rail {label} W"]) == pytest.approx(mv * ma / 1e6, abs=0.01)

        job_id = client.client.submit(make_request("resnet50"), via="service")
        assert client.client.wait_result(job_id, 30.0).status == JobResult.COMPLETED

        # A budget below the measured 6.1 W: the controller must pull the GPU clock down.
        assert client.client.set_power_budget(5.0) == 5.0
        top = int(window[1])
        assert client.wait_until(lambda: 0 < gpu_max_hz(root) < top, 5.0), \
            "the GPU clock was never lowered below the budget"
        # The DLA clocks are nvpmodel caps the core plans around, not parks: the node reports
        # the active mode's (25W: 614.4 MHz).
        since = time.monotonic()
        assert client.wait_until(lambda: client.states and client.states[-1][0] > since, 5.0)
        clocks = {u.name: u.frequency_hz for u in client.states[-1][1].units}
        assert clocks["dla0"] == clocks["dla1"] == 614_400_000, clocks
    assert (read(root, f"{JP6_GPU}/min_freq"), read(root, f"{JP6_GPU}/max_freq")) == window


def test_a_platform_root_that_does_not_exist_stops_the_node(tmp_path):
    code, log = SchedulerProcess(test_domain_id() + 9, {
        "control": "jetson", "platform_root": str(tmp_path / "host")}).exited()
    assert code == 1
    assert f"cannot start: platform root '{tmp_path / 'host'}' is not a directory" in log


def test_an_nvpmodel_mode_without_the_jetson_control_stops_the_node():
    code, log = SchedulerProcess(test_domain_id() + 9, {"jetson.nvpmodel_mode": "MAXN"}).exited()
    assert code == 1
    assert "cannot start: jetson.nvpmodel_mode 'MAXN' needs control: jetson" in log


def test_an_unknown_nvpmodel_mode_stops_the_node_with_the_modes_it_has(tmp_path):
    root = build(tmp_path, orin_nx("jp6"))
    code, log = SchedulerProcess(test_domain_id() + 9, {
        "control": "jetson", "platform_root": str(root), "jetson.nvpmodel_mode": "30W"}).exited()
    assert code == 1
    assert "cannot start: nvpmodel mode '30W' not in" in log and "MAXN, 10W, 15W, 25W" in log


def test_a_start_that_fails_after_setting_the_nvpmodel_mode_puts_the_mode_back(tmp_path):
    root = build(tmp_path, orin_nx("jp6", mode=0))
    code, log = SchedulerProcess(test_domain_id() + 9, {
        "control": "jetson", "platform_root": str(root), "jetson.use_jtop": False,
        "jetson.nvpmodel_mode": "25W", "backends.gpu": "tensorrt"}).exited()
    assert code == 1 and "TensorRT is not installed" in log, log[-2000:]
    assert read(root, "nvpmodel.log").splitlines()[-2:] == ["-m 0", "-q"]    # set, then back
    assert read(root, "var/lib/nvpmodel/status") == "pmode:0000"


def test_the_clock_window_a_killed_node_left_set_is_put_back_by_the_next_start(tmp_path):
    root = build(tmp_path, orin_nx("jp6", mode=0))
    window = (read(root, f"{JP6_GPU}/min_freq"), read(root, f"{JP6_GPU}/max_freq"))
    killed = SchedulerProcess(test_domain_id() + 9, {
        "control": "jetson", "platform_root": str(root), "jetson.use_jtop": False,
        "power_budget_w": 5.0})          # below the measured 6.1 W: the GPU clock goes down
    deadline = time.monotonic() + 30.0
    while not 0 < gpu_max_hz(root) < int(window[1]):
        assert killed.alive() and time.monotonic() < deadline, killed.tail()
        time.sleep(0.05)
    killed.stop(signal.SIGKILL)         # a crash: nothing is put back
    # the next run's own clock changes are put back on exit, and the window it found (the
    # killed run's) is not taken for the machine's
    with jetson_node(root, "jetson_restart_client", {}) as (_scheduler, client):
        assert client.wait_until(lambda: client.newest_status("twill/platform") is not None, 5.0)
        assert "put back the clock windows a run that did not exit cleanly left set" in \
            client.newest_status("twill/platform").message
    assert (read(root, f"{JP6_GPU}/min_freq"), read(root, f"{JP6_GPU}/max_freq")) == window


def test_sigterm_during_a_long_start_puts_the_nvpmodel_mode_back(tmp_path):
    """A stop by SIGTERM (systemd, a supervisor) while the node starts -- engine builds take
    minutes -- ends the start-up as Ctrl-C does, putting back what the control changed. Here
    the start waits at its first read of the GPU clock, a named pipe nobody writes yet."""
    root = build(tmp_path, orin_nx("jp6", mode=0))
    clock = root / JP6_GPU / "cur_freq"
    clock.unlink()
    os.mkfifo(clock)
    scheduler = SchedulerProcess(test_domain_id() + 9, {
        "control": "jetson", "platform_root": str(root), "jetson.use_jtop": False,
        "jetson.nvpmodel_mode": "25W"})
    deadline = time.monotonic() + 30.0
    while True:         # a writer opens the pipe once the node reads it: past the control
        try:
            writer = os.open(clock, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert scheduler.alive() and time.monotonic() < deadline, scheduler.tail()
            time.sleep(0.05)
    try:
        assert read(root, "var/lib/nvpmodel/status") == "pmode:0003"
        code = scheduler.stop(signal.SIGTERM)
    finally:
        os.close(writer)
    assert code == 128 + signal.SIGTERM, scheduler.tail()
    assert "start-up interrupted" in scheduler.tail() and "Traceback" not in scheduler.tail()
    assert read(root, "var/lib/nvpmodel/status") == "pmode:0000"


def test_a_dla_clock_nobody_can_read_is_reported_as_found_not_as_asked(tmp_path):
    """Without nvpmodel the DLA clock is unknown: the node keeps the clock it assumed at start
    (the max), whatever the budget."""
    root = build(tmp_path, orin_nx("jp6", nvpmodel=False))
    with jetson_node(root, "jetson_dla_client",
                     {"power_budget_w": 5.0, "state_rate_hz": 10.0}) as (scheduler, client):
        assert client.wait_until(lambda: len(client.states) >= 3, 5.0)
        clocks = {u.name: u.frequency_hz for u in client.states[-1][1].units}
        assert clocks["dla0"] == clocks["dla1"] == 614_400_000, clocks


def test_a_cluster_offline_in_the_nvpmodel_mode_is_not_scheduled(tmp_path):
    """10W on an Orin NX 16GB: cpu4-7 are offline. Work on cpu_b would run on cpu_a's cores."""
    root = build(tmp_path, orin_nx("jp6", mode=1))
    with jetson_node(root, "jetson_offline_client",
                     {"power_budget_w": 10.0, "state_rate_hz": 10.0}) as (scheduler, client):
        assert client.wait_until(lambda: "cpu_b: every core offline (the nvpmodel mode's "
                                 "CPU_ONLINE), not scheduled" in scheduler.tail(), 5.0), \
            scheduler.tail()
        assert client.wait_until(lambda: len(client.states) >= 1, 5.0)
        assert [u.name for u in client.states[-1][1].units] == ["gpu", "dla0", "dla1", "cpu_a"]
        job_id = client.client.submit(make_request("tinyllama-1.1b", prompt="go", max_new_tokens=2),
                                      via="service")
        assert client.client.wait_result(job_id, 30.0).status == JobResult.COMPLETED


def test_a_power_sensor_that_stops_answering_is_an_error_not_the_model(tmp_path):
    """The node does not stand the power model in for a sensor it had: the board may draw
    far more than the model says. Before that, the sensor's over-current alarm (the SoC
    throttles) is an error although the power is within the budget."""
    root = build(tmp_path, orin_nx("jp6"))
    with jetson_node(root, "jetson_sensor_client", {"power_budget_w": 15.0}) as (scheduler, client):
        assert client.wait_until(lambda: client.newest_status("twill/power") is not None, 5.0)
        assert client.newest_status("twill/power").level == b"\x00"
        (alarm,) = (root / INA_DRIVER).glob("hwmon/hwmon*/curr1_crit_alarm")
        alarm.write_text("1\n")
        since = time.monotonic()
        assert client.wait_until(
            lambda: (s := client.newest_status("twill/power", since)) is not None
            and s.level == b"\x02", 5.0)
        status = client.newest_status("twill/power")
        assert status.message.startswith("VDD_IN over-current alarm: above its critical current "
                                          "limit of 7784 mA; the SoC throttles its clocks; "
                                          "within budget"), status.message
        alarm.write_text("0\n")
        since = time.monotonic()
        assert client.wait_until(
            lambda: (s := client.newest_status("twill/power", since)) is not None
            and s.level == b"\x00", 5.0)
        for name in ("in1_input", "curr1_input"):         # VDD_IN's channel
            for path in (root / INA_DRIVER).glob(f"hwmon/hwmon*/{name}"):
                path.unlink()
        since = time.monotonic()
        assert client.wait_until(
            lambda: (s := client.newest_status("twill/power", since)) is not None
            and s.level == b"\x02", 5.0)
        assert "no power reading from ina3221" in client.newest_status("twill/power").message
