"""Jetson platform control against fake JetPack 5/6 Orin NX sysfs trees (see sysfs_trees)."""

from __future__ import annotations

import errno
import sys
import types

import pytest
from sysfs_trees import (
    INA_DRIVER,
    JP5_GPU,
    JP6_GPU,
    MHZ,
    ORIN_CPU_KHZ,
    ORIN_GPU_HZ,
    build,
    make_read_only,
    orin_nx,
    read,
    run_unprivileged,
)

from twill_ros.core.platform import load_platform
from twill_ros.platforms import make_control
from twill_ros.platforms.base import ERROR, OK, WARN
from twill_ros.platforms.jetson import JetsonControl
from twill_ros.platforms.sysfs import Sysfs, is_permission_error

POLICY0 = "sys/devices/system/cpu/cpufreq/policy0"


@pytest.fixture(scope="module")
def nx16():
    return load_platform("orin_nx_16gb")


@pytest.fixture(autouse=True)
def no_jtop(monkeypatch):
    """jetson-stats is not installed here; make that explicit (import raises ImportError)."""
    monkeypatch.setitem(sys.modules, "jtop", None)


def jetson(nx16, tree, tmp_path, **options):
    return make_control("jetson", nx16, str(build(tmp_path, tree)), **options)


@pytest.mark.parametrize(("bsp", "gpu_dir"), [("jp6", JP6_GPU), ("jp5", JP5_GPU)])
def test_jetpack5_and_6_gpu_devfreq_paths_are_found_and_pinned(nx16, tmp_path, bsp, gpu_dir):
    control = jetson(nx16, orin_nx(bsp), tmp_path)
    assert control.gpu_devfreq == gpu_dir
    assert control.available_hz("gpu") == ORIN_GPU_HZ
    assert control.frequency_hz("gpu") == 306 * MHZ          # cur_freq, Hz
    assert control.set_frequency("gpu", 650 * MHZ) == 612 * MHZ   # snapped down, read back
    assert read(tmp_path, f"{gpu_dir}/min_freq") == read(tmp_path, f"{gpu_dir}/max_freq") \
        == "612000000"
    status = control.status()
    assert status.level == OK and status.writable and gpu_dir in status.message


def test_cpu_clusters_map_by_related_cpus_and_write_khz(nx16, tmp_path):
    control = jetson(nx16, orin_nx(), tmp_path)
    assert control.available_hz("cpu_a") == tuple(k * 1000 for k in ORIN_CPU_KHZ)
    assert control.available_hz("cpu_a") == nx16.unit("cpu_a").frequencies_hz
    assert control.frequency_hz("cpu_b") == 729_600_000          # scaling_cur_freq kHz -> Hz
    assert control.set_frequency("cpu_b", 1_000_000_000) == 960_000_000
    policy4 = "sys/devices/system/cpu/cpufreq/policy4"
    assert read(tmp_path, f"{policy4}/scaling_min_freq") == "960000"
    assert read(tmp_path, f"{policy4}/scaling_max_freq") == "960000"
    assert read(tmp_path, f"{POLICY0}/scaling_max_freq") == "1984000"   # other cluster untouched


def test_min_never_exceeds_max_after_any_single_write(nx16, tmp_path):
    """Every write of every pin keeps min <= max; raising writes max first, lowering min first."""
    writes: list[tuple[str, str]] = []

    def check(path: str, value: str) -> None:
        writes.append((path, value))
        directory, name = path.rsplit("/", 1)
        prefix = "scaling_" if "cpufreq" in directory else ""
        assert int(read(tmp_path, f"{directory}/{prefix}min_freq")) <= int(
            read(tmp_path, f"{directory}/{prefix}max_freq")), (path, value)

    control = jetson(nx16, orin_nx(), tmp_path, on_write=check)
    targets = (306, 918, 510, 714, 408, 918, 306)
    for mhz in targets:
        control.set_frequency("gpu", mhz * MHZ)
    cpu_targets = (729.6, 1984.0, 115.2, 1497.6, 1420.8)
    for mhz in cpu_targets:
        control.set_frequency("cpu_a", round(mhz * MHZ))
    gpu_writes = [(p.rsplit("/", 1)[1], int(v)) for p, v in writes if "gpu" in p]
    assert gpu_writes[2:6] == [("max_freq", 918 * MHZ), ("min_freq", 918 * MHZ),   # raise
                               ("min_freq", 510 * MHZ), ("max_freq", 510 * MHZ)]   # lower
    assert len(writes) == 2 * (len(targets) + len(cpu_targets))


def test_restore_puts_back_the_windows_found_at_start(nx16, tmp_path):
    writes: list[tuple[str, str]] = []
    control = jetson(nx16, orin_nx(), tmp_path, on_write=lambda p, v: writes.append((p, v)))
    control.restore()
    assert writes == []                                       # nothing changed, nothing written
    control.set_frequency("gpu", 918 * MHZ)
    control.set_frequency("cpu_a", 115_200_000)
    control.restore()
    assert (read(tmp_path, f"{JP6_GPU}/min_freq"), read(tmp_path, f"{JP6_GPU}/max_freq")) == (
        "306000000", "918000000")
    assert (read(tmp_path, f"{POLICY0}/scaling_min_freq"),
            read(tmp_path, f"{POLICY0}/scaling_max_freq")) == ("729600", "1984000")


def test_windows_a_killed_run_left_set_are_put_back_at_the_next_start(nx16, tmp_path):
    """A run killed (or crashed) with the clocks pinned restores nothing: the next start must
    put back the windows that run found, not take its pinned ones for the machine's own."""
    root = build(tmp_path, orin_nx())
    windows = [(read(root, f"{JP6_GPU}/min_freq"), read(root, f"{JP6_GPU}/max_freq")),
               (read(root, f"{POLICY0}/scaling_min_freq"),
                read(root, f"{POLICY0}/scaling_max_freq"))]

    def found():
        return [(read(root, f"{JP6_GPU}/min_freq"), read(root, f"{JP6_GPU}/max_freq")),
                (read(root, f"{POLICY0}/scaling_min_freq"),
                 read(root, f"{POLICY0}/scaling_max_freq"))]

    killed = make_control("jetson", nx16, str(root))
    killed.set_frequency("gpu", 408 * MHZ)
    killed.set_frequency("cpu_a", 115_200_000)
    assert found() != windows                                # and no restore(): it died
    after = make_control("jetson", nx16, str(root))
    assert found() == windows
    status = after.status()
    assert status.level == OK and "put back the clock windows a run that did not exit " \
        f"cleanly left set: /{JP6_GPU}, /{POLICY0}" in status.message
    after.set_frequency("gpu", 918 * MHZ)
    after.restore()
    assert found() == windows
    assert not (root / "run/twill_ros/clock_windows.json").exists()    # a clean exit: none


def test_windows_left_set_that_cannot_be_put_back_stay_recorded(nx16, tmp_path):
    root = build(tmp_path, orin_nx())
    make_control("jetson", nx16, str(root)).set_frequency("gpu", 408 * MHZ)   # then killed
    make_read_only(root)

    def start_and_exit():
        control = make_control("jetson", nx16, str(root))
        status = control.status()
        control.restore()
        return status

    status = run_unprivileged(start_and_exit)
    assert status.level == WARN and f"could not restore /{JP6_GPU}" in status.message
    assert read(root, f"{JP6_GPU}/max_freq") == "408000000"
    assert "408000000" not in read(root, "run/twill_ros/clock_windows.json")   # the found one
    assert make_control("jetson", nx16, str(root)).status().level == OK   # root: put back
    assert read(root, f"{JP6_GPU}/max_freq") == "918000000"


def test_ina3221_power_is_vdd_in_from_mv_times_ma_whatever_the_hwmon_index(nx16, tmp_path):
    control = jetson(nx16, orin_nx(hwmon=5), tmp_path)
    reading = control.read_power()
    assert reading.source == "ina3221"
    assert reading.total_w == pytest.approx(5048 * 1208 / 1e6)          # VDD_IN, 6.10 W
    assert reading.rails == pytest.approx({"VDD_IN": 6.097984, "VDD_CPU_GPU_CV": 2.07648,
                                           "VDD_SOC": 2.8224})         # summation channel skipped
    status = control.status()
    assert status.power_source.startswith("ina3221") and "hwmon5" in status.power_source
    assert status.level == OK


def test_ina3221_over_current_alarms_of_vdd_in_come_with_the_reading(nx16, tmp_path):
    """The chip's alert flags: critical (the SoC throttles) before warning; another rail's
    alarm is not the module's; kernels without the flag files give no alarm."""
    control = jetson(nx16, orin_nx(), tmp_path)
    hwmon = next((tmp_path / INA_DRIVER).glob("hwmon/hwmon*"))
    assert (control.read_power().alarm, control.read_power().alarm_level) == ("", OK)
    (hwmon / "curr2_crit_alarm").write_text("1\n")
    assert control.read_power().alarm_level == OK
    (hwmon / "curr1_max_alarm").write_text("1\n")
    reading = control.read_power()
    assert reading.alarm_level == WARN and reading.alarm == (
        "VDD_IN over-current alarm: above its warning current limit (averaged) of 4944 mA")
    (hwmon / "curr1_crit_alarm").write_text("1\n")
    reading = control.read_power()
    assert reading.alarm_level == ERROR and reading.alarm == (
        "VDD_IN over-current alarm: above its critical current limit of 7784 mA; the SoC "
        "throttles its clocks")
    assert reading.total_w == pytest.approx(5048 * 1208 / 1e6)
    for flag in hwmon.glob("curr*_alarm"):
        flag.unlink()
    assert control.read_power().alarm_level == OK


def test_missing_ina3221_gives_no_power_and_an_error_status(nx16, tmp_path):
    control = jetson(nx16, orin_nx(power=False), tmp_path)
    assert control.read_power() is None
    status = control.status()
    assert status.level == ERROR and status.power_source == "none"
    assert "no INA3221" in status.message and "power model" in status.message
    assert status.writable                                   # clocks still work


def fake_jtop():
    """A module with jetson-stats' client surface: jtop(interval).start(), ok(spin), power;
    ``clients`` lists the clients opened."""
    module = types.ModuleType("jtop")
    module.clients = []

    class Client:
        def __init__(self, interval: float) -> None:
            self.running = True
            module.clients.append(self)

        def start(self) -> None:
            """The real one connects to /run/jtop.sock and waits for the first sample."""

        def ok(self, spin: bool = False) -> bool:
            return self.running

        def close(self) -> None:
            self.running = False

        @property
        def power(self):
            rail = {"VDD_CPU_GPU_CV": {"power": 2100.0}, "VDD_SOC": {"power": 2800.0}}
            return {"rail": rail, "tot": {"power": 7200.0}}

    module.jtop = Client
    module.JtopException = type("JtopException", (Exception,), {})
    return module


def test_no_ina3221_and_no_jtop_service_says_both(nx16, tmp_path, monkeypatch):
    module = types.ModuleType("jtop")
    module.JtopException = type("JtopException", (Exception,), {})

    def no_service(interval: float):
        raise module.JtopException("The jtop.service is not active. Please run:\nsudo ...")

    module.jtop = no_service
    monkeypatch.setitem(sys.modules, "jtop", module)
    control = jetson(nx16, orin_nx(power=False), tmp_path)
    assert control.read_power() is None
    status = control.status()
    assert status.level == ERROR and "no INA3221" in status.message
    assert "jtop service not answering (The jtop.service is not active" in status.message


def test_the_ina3221_is_read_directly_and_jtop_only_without_it(nx16, tmp_path, monkeypatch):
    """jtop's readings change once per its interval (0.5 s): too slow for 100 ms windows."""
    module = fake_jtop()
    monkeypatch.setitem(sys.modules, "jtop", module)
    assert jetson(nx16, orin_nx(), tmp_path).read_power().source == "ina3221"
    assert module.clients == []                             # never opened
    control = jetson(nx16, orin_nx(power=False), tmp_path / "no_ina")
    reading = control.read_power()
    assert (reading.source, reading.total_w) == ("jtop", pytest.approx(7.2))
    assert reading.rails == {"VDD_CPU_GPU_CV": 2.1, "VDD_SOC": 2.8}
    status = control.status()
    assert status.power_source == "jtop" and status.level == OK
    assert "reading jtop, whose readings change once per 0.5 s" in status.message
    module.clients[0].running = False                       # the service went away
    assert control.read_power() is None
    status = control.status()
    assert status.level == ERROR and "jtop stopped answering" in status.message
    assert status.power_source == "none"


def test_dla_clocks_are_read_only_and_read_as_the_active_mode_cap(nx16, tmp_path):
    control = jetson(nx16, orin_nx(), tmp_path)                       # MAXN: uncapped
    assert control.available_hz("dla0") == nx16.unit("dla0").frequencies_hz
    assert control.frequency_hz("dla1") == nx16.unit("dla1").max_frequency_hz
    assert control.set_frequency("dla0", 115_200_000) is None
    assert [control.has_clock(u) for u in ("gpu", "cpu_a", "dla0")] == [True, True, False]
    assert control.frequency_hz("dla0") == nx16.unit("dla0").max_frequency_hz
    assert "dla0, dla1: clocks are nvpmodel caps, read-only; MAXN" in control.status().message
    ten_w = jetson(nx16, orin_nx(mode=1), tmp_path / "10w")            # 10W caps both DLAs
    assert (ten_w.frequency_hz("dla0"), ten_w.frequency_hz("dla1")) == (153_600_000, 115_200_000)
    unknown = jetson(nx16, orin_nx(nvpmodel=False), tmp_path / "none")
    assert unknown.frequency_hz("dla0") is None
    assert "the active mode is not in the platform file" in unknown.status().message


def test_a_cluster_the_nvpmodel_mode_took_offline_is_left_out(nx16, tmp_path):
    writes: list[str] = []
    ten_w = jetson(nx16, orin_nx(mode=1), tmp_path, on_write=lambda p, v: writes.append(p))
    assert ten_w.offline_units() == ("cpu_b",)
    assert "cpu_b: cpus [4, 5, 6, 7] offline (skipped)" in ten_w.status().message
    assert not ten_w.has_clock("cpu_b") and ten_w.set_frequency("cpu_b", 729_600_000) is None
    assert writes == []                     # an inactive policy's files are not touched
    assert ten_w.set_frequency("cpu_a", 729_600_000) == 729_600_000
    assert jetson(nx16, orin_nx(mode=0), tmp_path / "maxn").offline_units() == ()


class CappedSysfs(Sysfs):
    """Emulates the kernel under an nvpmodel GPU cap: devfreq clamps min/max to the cap."""

    cap_hz = 612 * MHZ

    def write(self, rel: str, value: int | str) -> None:
        if "17000000.gpu" in rel:
            value = min(int(value), self.cap_hz)
        super().write(rel, value)


def test_a_clock_that_does_not_stick_is_returned_as_read_back_and_reported(nx16, tmp_path):
    control = JetsonControl(nx16, CappedSysfs(str(build(tmp_path, orin_nx()))))
    assert control.set_frequency("gpu", 918 * MHZ) == 612 * MHZ
    status = control.status()
    assert status.level == WARN
    assert "gpu: wrote 918000000" in status.message and "read back 612000000" in status.message
    assert control.set_frequency("gpu", 408 * MHZ) == 408 * MHZ
    assert control.status().level == OK                     # a verified write clears it


def test_a_value_the_kernel_refuses_is_reported_with_the_file(nx16, tmp_path):
    """A kernel file that opens for writing and then refuses the value (sysfs: EINVAL, or
    EBUSY for an offline policy) fails the write itself, where Python names no file."""
    root = build(tmp_path, orin_nx())
    (root / JP6_GPU / "min_freq").unlink()
    (root / JP6_GPU / "min_freq").symlink_to("/proc/self/oom_score_adj")   # takes -1000..1000
    control = make_control("jetson", nx16, str(root))
    assert control.set_frequency("gpu", 612 * MHZ) is None
    status = control.status()
    assert status.level == WARN and status.writable
    assert "gpu: setting 612000000 Hz failed: [Errno 22] Invalid argument: " \
        f"'{root / JP6_GPU / 'min_freq'}'" in status.message


def test_read_only_tree_from_the_start_never_writes(nx16, tmp_path):
    root = build(tmp_path, orin_nx())
    make_read_only(root)

    def attempt():
        control = make_control("jetson", nx16, str(root))
        return (control.set_frequency("gpu", 918 * MHZ), control.status(), control.read_power(),
                [control.has_clock(u.name) for u in nx16.units])

    applied, status, reading, has_clock = run_unprivileged(attempt)
    assert applied is None and not status.writable and status.level == WARN
    assert not any(has_clock)                               # the core plans around every clock
    assert f"no write access to /{POLICY0}/scaling_min_freq" in status.message
    assert reading.source == "ina3221"                     # sensors still read
    assert read(root, f"{JP6_GPU}/max_freq") == "918000000"


def test_permission_denied_on_write_latches_read_only_once(nx16, tmp_path):
    root = build(tmp_path, orin_nx())
    writes: list[str] = []
    control = make_control("jetson", nx16, str(root), on_write=lambda p, v: writes.append(p))
    make_read_only(root)                                    # taken away after start

    def attempt():
        results = (control.set_frequency("gpu", 918 * MHZ),
                   control.set_frequency("cpu_a", 1_984_000_000))
        return results, control.status(), writes, control.has_clock("gpu")

    results, status, child_writes, has_clock = run_unprivileged(attempt)
    assert results == (None, None) and child_writes == [] and not has_clock
    assert not status.writable and status.message.count("Permission denied") == 1
    assert "read-only" in status.message and status.level == WARN
    assert all(is_permission_error(OSError(e, "x")) for e in (errno.EACCES, errno.EROFS))


def test_nvpmodel_mode_is_set_at_start_verified_and_put_back_on_exit(nx16, tmp_path):
    control = jetson(nx16, orin_nx(mode=0), tmp_path, nvpmodel_mode="25W")
    assert read(tmp_path, "var/lib/nvpmodel/status") == "pmode:0003"
    status = control.status()
    assert "nvpmodel 25W (3)" in status.message and status.level == OK
    assert read(tmp_path, "nvpmodel.log").splitlines() == ["-q", "-m 3", "-q"]
    control.restore()                                   # as the node does on exit
    assert read(tmp_path, "var/lib/nvpmodel/status") == "pmode:0000"
    assert read(tmp_path, "nvpmodel.log").splitlines()[3:] == ["-m 0", "-q"]
    control.restore()                                   # once only
    assert len(read(tmp_path, "nvpmodel.log").splitlines()) == 5


@pytest.mark.parametrize("mode_again", ["25W", None])
def test_the_nvpmodel_mode_a_killed_run_found_goes_back_when_the_next_run_exits(
        nx16, tmp_path, mode_again):
    """A run that set the mode and died left it set: the next run (asking for that mode again
    or for none) must put back the mode the dead run found, not the one it finds."""
    root = build(tmp_path, orin_nx(mode=0))
    make_control("jetson", nx16, str(root), nvpmodel_mode="25W")        # and killed
    assert read(root, "var/lib/nvpmodel/status") == "pmode:0003"
    again = make_control("jetson", nx16, str(root), nvpmodel_mode=mode_again)
    status = again.status()
    assert status.level == OK and "nvpmodel 25W (3); MAXN (0), found by a run that did not " \
        "exit cleanly, goes back on exit" in status.message
    again.restore()
    assert read(root, "var/lib/nvpmodel/status") == "pmode:0000"
    assert not (root / "run/twill_ros/nvpmodel_mode").exists()
    make_control("jetson", nx16, str(root)).restore()                   # a clean run after
    assert read(root, "var/lib/nvpmodel/status") == "pmode:0000"


def test_windows_a_killed_run_left_go_back_before_the_next_run_switches_the_mode(nx16,
                                                                                 tmp_path):
    """The windows a dead run found were that mode's caps: they go back while that mode is
    still active, not after the next run's nvpmodel switch wrote the new mode's caps."""
    root = build(tmp_path, orin_nx(mode=0))
    make_control("jetson", nx16, str(root), nvpmodel_mode="25W").set_frequency(
        "gpu", 408 * MHZ)                                            # and killed
    modes_at_writes = []
    again = make_control("jetson", nx16, str(root), nvpmodel_mode="MAXN", on_write=lambda
                         p, v: modes_at_writes.append(read(root, "var/lib/nvpmodel/status")))
    assert modes_at_writes == ["pmode:0003", "pmode:0003"]            # min and max, in 25W
    assert read(root, "var/lib/nvpmodel/status") == "pmode:0000"
    assert (read(root, f"{JP6_GPU}/min_freq"), read(root, f"{JP6_GPU}/max_freq")) == (
        "306000000", "918000000")
    again.restore()
    assert not (root / "run/twill_ros").exists() or not any((root / "run/twill_ros").iterdir())


def test_nvpmodel_mode_needing_a_reboot_is_declined_and_reported(nx16, tmp_path):
    control = jetson(nx16, orin_nx(mode=0), tmp_path, nvpmodel_mode=2)
    assert not (tmp_path / "REBOOTED").exists()
    assert read(tmp_path, "var/lib/nvpmodel/status") == "pmode:0000"
    status = control.status()
    assert status.level == WARN
    assert "nvpmodel -m 2 did not take effect" in status.message and "MAXN (0)" in status.message
    control.restore()                           # the mode never changed: nothing to put back
    assert read(tmp_path, "nvpmodel.log").splitlines() == ["-q", "-m 2", "-q"]
    with pytest.raises(ValueError, match="modes: MAXN, 10W, 15W, 25W"):
        jetson(nx16, orin_nx(), tmp_path / "other", nvpmodel_mode="30W")


def test_unknown_kind_lists_the_known_ones(nx16):
    with pytest.raises(ValueError, match="known kinds: host, jetson"):
        make_control("xavier", nx16)
