"""Host platform control (developer laptop) against fake x86 sysfs trees (see sysfs_trees)."""

from __future__ import annotations

import os

import pytest
from sysfs_trees import build, laptop, make_read_only, orin_nx, read, run_unprivileged

from twill_ros.core.platform import load_platform
from twill_ros.platforms import make_control
from twill_ros.platforms.base import WARN

MAX_RANGE = 262143328850   # max_energy_range_uj of a client Intel package
PACKAGE = "sys/class/powercap/intel-rapl:0/energy_uj"
CORE = "sys/class/powercap/intel-rapl:0:0/energy_uj"
ZONES = {"intel-rapl:0": ("package-0", 1_000_000), "intel-rapl:0:0": ("core", 400_000),
         "intel-rapl:0:1": ("uncore", 100_000)}


@pytest.fixture(scope="module")
def nx16():
    return load_platform("orin_nx_16gb")


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def write(root, rel: str, value: int) -> None:
    (root / rel).write_text(f"{value}\n")


def test_rapl_power_is_energy_delta_over_time_across_a_counter_wrap(nx16, tmp_path):
    clock = FakeClock()
    control = make_control("host", nx16, str(build(tmp_path, laptop(zones=ZONES))), clock=clock)
    clock.t += 0.5
    write(tmp_path, PACKAGE, 6_000_000)                    # +5 J in 0.5 s
    write(tmp_path, CORE, 2_400_000)                       # +2 J
    reading = control.read_power()
    assert reading.source == "rapl" and reading.total_w == pytest.approx(10.0)
    assert reading.rails == pytest.approx({"package-0": 10.0, "package-0/core": 4.0,
                                           "package-0/uncore": 0.0})
    write(tmp_path, PACKAGE, MAX_RANGE - 2_000_000)
    clock.t += 1.0
    control.read_power()
    write(tmp_path, PACKAGE, 3_000_000)                    # wrapped: +5 J
    clock.t += 0.5
    assert control.read_power().rails["package-0"] == pytest.approx(10.0)
    assert control.read_power().total_w == pytest.approx(10.0)   # no time passed: last reading
    assert control.status().power_source == "rapl"


def test_a_rapl_counter_that_stops_reading_gives_no_reading_rather_than_0_w(nx16, tmp_path):
    clock = FakeClock()
    control = make_control("host", nx16, str(build(tmp_path, laptop(zones=ZONES))), clock=clock)
    clock.t += 0.5
    write(tmp_path, PACKAGE, 6_000_000)
    assert control.read_power().total_w == pytest.approx(10.0)
    (tmp_path / PACKAGE).write_text("")                    # e.g. while the driver reloads
    clock.t += 0.5
    assert control.read_power() is None
    assert control.read_power() is None                    # not the reading before the loss
    write(tmp_path, PACKAGE, 9_000_000)
    clock.t += 0.5
    assert control.read_power() is None                    # no previous sample to diff yet
    write(tmp_path, PACKAGE, 11_000_000)
    clock.t += 0.5
    assert control.read_power().total_w == pytest.approx(4.0)


def test_psys_is_the_total_when_the_platform_has_it(nx16, tmp_path):
    zones = {**ZONES, "intel-rapl:1": ("psys", 0)}
    clock = FakeClock()
    control = make_control("host", nx16, str(build(tmp_path, laptop(zones=zones))), clock=clock)
    write(tmp_path, PACKAGE, 3_000_000)
    write(tmp_path, "sys/class/powercap/intel-rapl:1/energy_uj", 7_000_000)
    clock.t += 1.0
    reading = control.read_power()
    assert reading.total_w == pytest.approx(7.0) and reading.rails["package-0"] == 2.0


def test_intel_pstate_laptop_maps_cpu_units_by_cores_and_skips_missing_ones(nx16, tmp_path):
    writes: list[tuple[str, str]] = []
    control = make_control("host", nx16, str(build(tmp_path, laptop(cpus=4))),
                           on_write=lambda p, v: writes.append((p, v)))
    # no scaling_available_frequencies: the platform table inside cpuinfo [400 MHz, 4.5 GHz]
    available = control.available_hz("cpu_a")
    assert available[0] == 422_400_000 and available[-1] == 1_984_000_000
    assert control.frequency_hz("cpu_a") == 800_000_000   # slowest of the four cpus
    assert control.set_frequency("cpu_a", 1_500_000_000) == 1_497_600_000
    policies = {p.rsplit("/", 1)[0] for p, _ in writes}
    assert policies == {f"sys/devices/system/cpu/cpufreq/policy{c}" for c in range(4)}
    assert all(v == "1497600" for _, v in writes)
    assert control.set_frequency("cpu_b", 1_500_000_000) is None
    assert control.set_frequency("gpu", 918_000_000) is None
    status = control.status()
    assert status.level == WARN and status.writable
    assert "cpu_b: cpus [4, 5, 6, 7] not on this machine (skipped)" in status.message
    assert "power model" in status.message and status.power_source == "none"


def test_laptop_as_a_normal_user_reads_clocks_and_reports_what_it_cannot_do(nx16, tmp_path):
    root = build(tmp_path, laptop(cpus=8, zones=ZONES))
    make_read_only(root)
    for zone in ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1"):
        os.chmod(root / f"sys/class/powercap/{zone}/energy_uj", 0o400)   # root-only since 5.10

    def as_user():
        control = make_control("host", nx16, str(root))
        return (control.read_power(), control.frequency_hz("cpu_b"),
                control.set_frequency("cpu_a", 1_000_000_000), control.status())

    reading, cpu_b_hz, applied, status = run_unprivileged(as_user)
    assert reading is None and applied is None
    assert cpu_b_hz == 1_200_000_000                       # reading clocks needs no privilege
    assert not status.writable and status.level == WARN
    assert "no readable RAPL energy counter" in status.message
    assert "clock control read-only: no write access" in status.message
    assert read(root, "sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq") == "4500000"


def test_host_on_a_jetson_tree_controls_cpus_but_not_the_gpu(nx16, tmp_path):
    control = make_control("host", nx16, str(build(tmp_path, orin_nx())))
    assert control.available_hz("cpu_a") == nx16.unit("cpu_a").frequencies_hz
    assert control.set_frequency("cpu_a", 1_984_000_000) == 1_984_000_000
    assert control.available_hz("gpu") == nx16.unit("gpu").frequencies_hz
    assert control.frequency_hz("gpu") is None
    status = control.status()
    assert status.level == WARN and status.writable          # WARN: no RAPL on an arm board
    assert "gpu, dla0, dla1: no such clock on this host, read-only" in status.message
