"""Jetson Orin (JetPack 5 and 6): module power from jetson-stats or the INA3221, clocks via sysfs.

Paths and units (papers.md §4.3-4.4, ros_jetson_conventions.md B-C):

* power: the on-module INA3221 hwmon (``in{N}_label``; ``in{N}_input`` mV x ``curr{N}_input``
  mA; total = the VDD_IN rail), read at every sample; without it (a container that does not
  see the I2C device) the jtop service, whose readings change once per its interval.
* CPU: cpufreq policies (kHz), mapped to the platform's cpu units by ``related_cpus``.
* GPU: devfreq (Hz), JetPack 6 ``bus@0/17000000.gpu`` or JetPack 5 ``17000000.ga10b``.
* DLA: clocks are nvpmodel/BPMP caps, not set-points: read-only here.
* nvpmodel: queried at start; set only at start when asked, never forcing a reboot, and the
  mode found put back on exit (by the next run's exit when this run dies first).
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

from twill_ros.core.platform import PlatformSpec
from twill_ros.platforms.base import ERROR, OK, WARN, PowerReading
from twill_ros.platforms.clocks import (
    ClockControl,
    cpufreq_domains,
    devfreq_device,
    offline_cpus,
    put_back_left_windows,
)
from twill_ros.platforms.sysfs import Sysfs

# (BSP, devfreq directory); the devfreq class links are the fallback when the device moved.
GPU_DEVFREQ = (
    ("JetPack 6", "sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu"),
    ("JetPack 5", "sys/devices/17000000.ga10b/devfreq/17000000.ga10b"),
    ("JetPack 5", "sys/devices/gpu.0/devfreq/17000000.ga10b"),
    ("devfreq class", "sys/class/devfreq/17000000.gpu"),
    ("devfreq class", "sys/class/devfreq/17000000.ga10b"),
)
INA3221_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon*"
TOTAL_RAIL = "VDD_IN"
NVPMODEL_BINARIES = ("usr/sbin/nvpmodel", "usr/bin/nvpmodel")
NVPMODEL_CONF = "etc/nvpmodel.conf"
NVPMODEL_RECORD = "run/twill_ros/nvpmodel_mode"   # the mode to put back (see CLOCK_RECORD)
_LABEL_FILE = re.compile(r"in(\d+)_label$")
_MODE_LINE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>")


class Ina3221:
    """The module's power monitor through hwmon; channels found by label (index varies)."""

    def __init__(self, fs: Sysfs, directory: str) -> None:
        self.fs = fs
        self.directory = directory
        self.channels: dict[str, int] = {}
        for label_file in fs.glob(f"{directory}/in[0-9]*_label"):
            channel = int(_LABEL_FILE.search(label_file).group(1))
            label = fs.read_str(label_file)
            # "NC" = not connected; the summation channel (in7) has a label but no current.
            if label and label != "NC" and fs.exists(f"{directory}/curr{channel}_input"):
                self.channels[label] = channel

    @classmethod
    def find(cls, fs: Sysfs) -> Ina3221 | None:
        for directory in fs.glob(INA3221_HWMON):
            sensor = cls(fs, directory)
            if sensor.channels:
                return sensor
        return None

    def read(self) -> PowerReading | None:
        rails: dict[str, float] = {}
        for label, channel in self.channels.items():
            mv = self.fs.read_int(f"{self.directory}/in{channel}_input")
            ma = self.fs.read_int(f"{self.directory}/curr{channel}_input")
            if mv is not None and ma is not None:
                rails[label] = mv * ma / 1e6
        if TOTAL_RAIL not in rails:
            return None
        level, alarm = self._alarm(self.channels[TOTAL_RAIL])
        return PowerReading(total_w=rails[TOTAL_RAIL], rails=rails, source="ina3221",
                            alarm=alarm, alarm_level=level)

    def _alarm(self, channel: int) -> tuple[int, str]:
        """The chip's alert flags for the module input: above ``curr_crit`` (instantaneous;
        wired to the SoC's throttle) or ``curr_max`` (averaged). Kernels without the files:
        no alarm. (Kernel hwmon ina3221 attributes; ros_jetson_conventions.md C and E.6.)"""
        base = f"{self.directory}/curr{channel}"
        for level, limit, what in ((ERROR, "crit", "critical current limit"),
                                   (WARN, "max", "warning current limit (averaged)")):
            if self.fs.read_int(f"{base}_{limit}_alarm"):
                ma = self.fs.read_int(f"{base}_{limit}")
                return level, (f"{TOTAL_RAIL} over-current alarm: above its {what}"
                               f"{f' of {ma} mA' if ma is not None else ''}"
                               f"{'; the SoC throttles its clocks' if level == ERROR else ''}")
        return OK, ""


def open_jtop(interval_s: float) -> tuple[Any, str]:
    """A started jtop client, or ``(None, why not)``.

    jetson-stats is AGPL-3.0: imported only here, optionally, never vendored. Without its
    root service ``start()`` raises JtopException within about a millisecond.
    """
    try:
        import jtop
    except ImportError:
        return None, "jetson-stats not installed"
    try:
        client = jtop.jtop(interval=interval_s)
        client.start()
    except (jtop.JtopException, OSError) as exc:
        return None, f"jtop service not answering ({str(exc).splitlines()[0]})"
    return client, ""


def jtop_reading(client: Any) -> PowerReading:
    """jtop's ``power`` dict (mW) as a reading; its ``tot`` is VDD_IN on Orin NX."""
    if not client.ok(spin=True):  # ok() also re-raises a failure of jtop's reader thread
        raise ConnectionError("jtop client stopped")
    power = client.power
    rails = {name: rail["power"] / 1000.0 for name, rail in power["rail"].items()}
    return PowerReading(total_w=power["tot"]["power"] / 1000.0, rails=rails, source="jtop")


class NvpModel:
    """The ``nvpmodel`` tool: mode names from ``/etc/nvpmodel.conf``, query, and a safe set."""

    def __init__(self, fs: Sysfs, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.binary = next((fs.path(b) for b in NVPMODEL_BINARIES if fs.exists(b)), None)
        conf = fs.read_str(NVPMODEL_CONF) or ""
        self.modes = {int(i): name for i, name in _MODE_LINE.findall(conf)}

    def mode_id(self, mode: int | str) -> int:
        """A mode by id (``2``, ``"2"``) or name (``"15W"``), checked against the conf."""
        if isinstance(mode, str) and mode.isdigit():
            mode = int(mode)
        for mode_id, name in self.modes.items():
            if mode in (mode_id, name):
                return mode_id
        raise ValueError(f"nvpmodel mode {mode!r} not in {NVPMODEL_CONF}; modes: "
                         f"{', '.join(self.modes.values()) or 'none'}")

    def query(self) -> int | None:
        """The active mode (``nvpmodel -q``: the name line, then the id)."""
        result = self._run("-q")
        if isinstance(result, str):
            return None
        ids = [line for line in result.stdout.split() if line.isdigit()]
        return int(ids[-1]) if ids else None

    def set(self, mode_id: int, active: int | None) -> tuple[int | None, str]:
        """``nvpmodel -m``, answering "no" to its reboot prompt; ``active`` is the mode last
        queried (``None``: unknown).

        Returns the active mode last queried and a problem, or "" when ``mode_id`` is active.
        """
        if active == mode_id:
            return active, ""
        result = self._run("-m", str(mode_id), answer="no\n")
        if isinstance(result, str):
            return active, result
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()
            return active, (f"nvpmodel -m {mode_id} failed: "
                            f"{last[-1] if last else result.returncode}")
        active = self.query()
        if active != mode_id:
            return active, (f"nvpmodel -m {mode_id} did not take effect (needs a reboot? not "
                            f"rebooting); active mode is {self.describe(active)}")
        return active, ""

    def describe(self, mode_id: int | None) -> str:
        return "unknown" if mode_id is None else f"{self.modes.get(mode_id, '?')} ({mode_id})"

    def _run(self, *args: str, answer: str = "") -> subprocess.CompletedProcess[str] | str:
        if self.binary is None:
            return "nvpmodel not installed"
        try:
            return subprocess.run([self.binary, *args], input=answer, capture_output=True,
                                  text=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"nvpmodel {' '.join(args)}: {exc}"


class JetsonControl(ClockControl):
    """Orin NX (and kin): see the module docstring for what is read and written where."""

    def __init__(self, platform: PlatformSpec, fs: Sysfs, *,
                 nvpmodel_mode: int | str | None = None, use_jtop: bool = True,
                 jtop_interval_s: float = 0.5, nvpmodel_timeout_s: float = 10.0) -> None:
        domains, notes = cpufreq_domains(fs, platform)
        gpu_dir = next(((bsp, d) for bsp, d in GPU_DEVFREQ if fs.exists(f"{d}/max_freq")), None)
        for unit in platform.units:
            if unit.kind == "gpu" and gpu_dir is not None:
                domains[unit.name] = (devfreq_device(gpu_dir[1]),)
        left_windows = put_back_left_windows(fs, domains)   # under the mode they were found in
        nvpmodel = NvpModel(fs, nvpmodel_timeout_s)
        found = active = nvpmodel.query()
        problem = ""
        if nvpmodel_mode is not None:  # before recording clocks: the mode moves the caps
            active, problem = nvpmodel.set(nvpmodel.mode_id(nvpmodel_mode), found)
        # the mode found at start goes back on exit, like the clock windows; a run that died
        # before it put its found mode back left that mode recorded: it is this run's too
        left = fs.read_int(NVPMODEL_RECORD)
        found = left if left in nvpmodel.modes else found
        self._nvpmodel = nvpmodel
        self._modes = (found, active) if found is not None and active != found else None
        record_problem = self._record_mode(fs)
        super().__init__(platform, fs, domains, notes, left_windows)
        self.gpu_devfreq = None if gpu_dir is None else gpu_dir[1]
        if gpu_dir is not None:
            self.report("gpu", OK, f"gpu devfreq /{gpu_dir[1]} ({gpu_dir[0]})")
        elif any(u.kind == "gpu" for u in platform.units):
            self.report("gpu", WARN, "no GPU devfreq found (JetPack 5 or 6 path); gpu read-only")
        dlas = [u.name for u in platform.units if u.kind == "dla"]
        # A DLA runs at its nvpmodel cap: the active mode's, when the platform file has it.
        mode = nvpmodel.modes.get(active) if active is not None else None
        known = {m.name for m in platform.nvpmodel}
        self._dla_hz = ({u.name: platform.nvpmodel_mode(mode).cap_hz(u) for u in platform.units
                         if u.kind == "dla"} if mode in known else {})
        if dlas:
            caps = ", ".join(f"{name} {hz / 1e6:g} MHz" for name, hz in self._dla_hz.items())
            self.report("dla", OK, f"{', '.join(dlas)}: clocks are nvpmodel caps, read-only; " + (
                f"{mode}: {caps}" if caps else "the active mode is not in the platform file"))
        if problem:
            self.report("nvpmodel", WARN, problem)
        else:
            self.report("nvpmodel", OK, f"nvpmodel {nvpmodel.describe(active)}" + (
                f"; {nvpmodel.describe(found)}, found by a run that did not exit cleanly, goes "
                "back on exit" if left == found and self._modes else ""))
        if record_problem:
            self.report("nvpmodel record", WARN, record_problem)
        self._ina = Ina3221.find(fs)
        # jtop serves the same sensor, but its readings are up to an interval (0.5 s) old:
        # the controller and the 100 ms budget windows want the INA3221 read at each sample
        self._jtop_interval_s = jtop_interval_s
        self._jtop, why = (open_jtop(jtop_interval_s) if use_jtop and self._ina is None
                           else (None, ""))
        self._update_power_source(why)

    def offline_units(self) -> tuple[str, ...]:
        """CPU clusters the nvpmodel mode took offline (10W and 15W on an Orin NX 16GB: cpu4-7).
        Scheduling on them would put their work on the other cluster's cores."""
        return tuple(u.name for u in self.platform.units
                     if u.kind == "cpu" and len(offline_cpus(self.fs, u)) == len(u.cores))

    def frequency_hz(self, unit: str) -> int | None:
        measured = super().frequency_hz(unit)
        return self._dla_hz.get(unit) if measured is None else measured

    def read_power(self) -> PowerReading | None:
        if self._jtop is not None:
            try:
                return jtop_reading(self._jtop)
            except Exception as exc:  # any jtop failure means: no sensor from now on
                self._close_jtop()
                self._update_power_source(f"jtop stopped answering ({exc})")
        return None if self._ina is None else self._ina.read()

    def restore(self) -> None:
        super().restore()
        if self._modes is not None:
            found, active = self._modes
            active, problem = self._nvpmodel.set(found, active)
            if problem:
                self._modes = (found, active)       # and the record stays for the next start
                self.report("nvpmodel", WARN, f"could not put back mode "
                            f"{self._nvpmodel.describe(found)}: {problem}")
            else:
                self._modes = None
                problem = self._record_mode(self.fs)
                if problem:
                    self.report("nvpmodel record", WARN, problem)
        self._close_jtop()

    def _record_mode(self, fs: Sysfs) -> str:
        """Keep the mode to put back in ``NVPMODEL_RECORD`` while it differs from the active
        one (none otherwise), as the clock windows are kept; the problem, or ""."""
        try:
            if self._modes is None:
                fs.remove(NVPMODEL_RECORD)
            else:
                fs.replace_file(NVPMODEL_RECORD, f"{self._modes[0]}\n")
        except OSError as exc:
            return (f"cannot keep /{NVPMODEL_RECORD} ({exc.strerror}): should the node die "
                    "before putting back the nvpmodel mode it found, the next start will not")
        return ""

    def _close_jtop(self) -> None:
        if self._jtop is not None:
            client, self._jtop = self._jtop, None
            try:
                client.close()
            except Exception:  # closing a dead client may fail; it is gone either way
                pass

    def _update_power_source(self, jtop_problem: str) -> None:
        if self._ina is not None:
            self.power_source = f"ina3221 /{self._ina.directory}"
        elif self._jtop is not None:
            self.power_source = "jtop"
            self.report("power", OK, f"no INA3221 under /{INA3221_HWMON}: reading jtop, whose "
                        f"readings change once per {self._jtop_interval_s:g} s")
        else:
            self.power_source = "none"
            self.report("power", ERROR, f"no power sensor: no INA3221 under /{INA3221_HWMON}"
                        f"{f' and {jtop_problem}' if jtop_problem else ''}; the node uses the "
                        "power model")
