"""Clock control shared by every platform: cpufreq policies and devfreq devices as min/max windows.

Both kernel interfaces are the same shape (a min file, a max file, the current clock and a list
of available clocks) in different units (cpufreq kHz, devfreq Hz), so one ``ClockDomain`` and
one ``ClockControl`` serve the Jetson and the host: pin = write min = max in a safe order, read
back, verify; remember the window found at start and put it back on ``restore`` -- or, when
the run died first, at the next start (``CLOCK_RECORD``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from twill_ros.core.platform import PlatformSpec, UnitSpec, snap_down
from twill_ros.platforms.base import OK, WARN, ControlStatus, PlatformControl
from twill_ros.platforms.sysfs import Sysfs, is_permission_error

CPUFREQ_POLICIES = "sys/devices/system/cpu/cpufreq/policy*"
CLOCK_RECORD = "run/twill_ros/clock_windows.json"
"""The start windows of the domains a run has changed, ``{directory: [min, max]}`` in file
units, kept until ``restore`` puts them back: a run that dies first (killed, crashed) leaves
them for the next start to put back. ``/run`` is emptied at boot, as the clocks are reset."""


@dataclass(frozen=True)
class ClockDomain:
    """One clock window in sysfs; ``scale`` is Hz per file unit (cpufreq 1000, devfreq 1)."""

    directory: str
    min_name: str
    max_name: str
    cur_name: str
    available_name: str
    scale: int
    hw_min_name: str = ""
    hw_max_name: str = ""

    def file(self, name: str) -> str:
        return f"{self.directory}/{name}"


def cpufreq_policy(directory: str) -> ClockDomain:
    return ClockDomain(directory, "scaling_min_freq", "scaling_max_freq", "scaling_cur_freq",
                       "scaling_available_frequencies", 1000,
                       "cpuinfo_min_freq", "cpuinfo_max_freq")


def devfreq_device(directory: str) -> ClockDomain:
    return ClockDomain(directory, "min_freq", "max_freq", "cur_freq", "available_frequencies", 1)


def offline_cpus(fs: Sysfs, unit: UnitSpec) -> list[int]:
    """The unit's cores that are there but offline (``cpuN/online`` 0, as nvpmodel's 10W and
    15W modes leave an Orin NX's second cluster); cpu0 has no such file: always online."""
    return [c for c in unit.cores if fs.read_str(f"sys/devices/system/cpu/cpu{c}/online") == "0"]


def cpufreq_domains(fs: Sysfs, platform: PlatformSpec
                    ) -> tuple[dict[str, tuple[ClockDomain, ...]], list[str]]:
    """Map the platform's cpu units to cpufreq policies by their online cores (``related_cpus``).

    A unit may span several policies (a laptop's intel_pstate has one per cpu). A policy of
    offline cores only is left out: the kernel refuses its files (EBUSY). Returns the mapping
    and notes on cores that are absent, offline or have no policy (skipped, not guessed).
    """
    policies = {d: set(fs.read_ints(f"{d}/related_cpus")) for d in fs.glob(CPUFREQ_POLICIES)}
    domains: dict[str, tuple[ClockDomain, ...]] = {}
    notes: list[str] = []
    for unit in platform.units:
        if unit.kind != "cpu":
            continue
        absent = sorted(c for c in unit.cores if not fs.exists(f"sys/devices/system/cpu/cpu{c}"))
        offline = offline_cpus(fs, unit)
        wanted = set(unit.cores) - set(absent) - set(offline)
        found = tuple(cpufreq_policy(d) for d, cpus in policies.items() if cpus & wanted)
        covered = set().union(*(policies[d.directory] for d in found)) & wanted
        if found:
            domains[unit.name] = found
        unmanaged = sorted(wanted - covered)
        if absent:
            notes.append(f"{unit.name}: cpus {absent} not on this machine (skipped)")
        if offline:
            notes.append(f"{unit.name}: cpus {offline} offline (skipped)")
        if unmanaged:
            notes.append(f"{unit.name}: cpus {unmanaged} have no cpufreq policy (skipped)")
    return domains, notes


@dataclass(frozen=True)
class LeftWindows:
    """What ``put_back_left_windows`` did with the record of a run that died first."""

    put_back: tuple[str, ...] = ()                                 # the directories
    pending: Mapping[ClockDomain, tuple[int, int]] = field(default_factory=dict)   # failed
    problems: tuple[str, ...] = ()


def put_back_left_windows(fs: Sysfs, domains: Mapping[str, tuple[ClockDomain, ...]]
                          ) -> LeftWindows:
    """Put back the start windows a run that died before its ``restore`` recorded
    (``CLOCK_RECORD``), before anything else moves a cap (an nvpmodel mode): the machine as
    that run found it. The record goes once every window is back."""
    text = fs.read_str(CLOCK_RECORD)
    if not text:
        return LeftWindows()
    try:
        left = {directory: (int(lo), int(hi))
                for directory, (lo, hi) in json.loads(text).items()}
    except (ValueError, TypeError, AttributeError):
        return LeftWindows(problems=(f"ignored /{CLOCK_RECORD}: not a clock window record",))
    put_back: list[str] = []
    pending: dict[ClockDomain, tuple[int, int]] = {}
    problems: list[str] = []
    for domain in sorted({d for ds in domains.values() for d in ds}, key=lambda d: d.directory):
        window = left.get(domain.directory)
        if window is None:
            continue
        try:
            fs.write_range(domain.file(domain.min_name), domain.file(domain.max_name), *window)
            put_back.append(f"/{domain.directory}")
        except OSError as exc:
            pending[domain] = window
            problems.append(f"could not restore /{domain.directory} (left set by a run that "
                            f"did not exit cleanly): {exc.strerror}")
    if not pending:
        try:
            fs.remove(CLOCK_RECORD)
        except OSError as exc:
            problems.append(f"could not remove /{CLOCK_RECORD}: {exc.strerror}")
    return LeftWindows(tuple(put_back), pending, tuple(problems))


class ClockControl(PlatformControl):
    """Clock reading/setting over ``ClockDomain``s plus the problem log behind ``status()``.

    Subclasses supply the domains, a power sensor (``read_power``) and ``power_source``.
    Units without a domain are read-only: their table comes from the platform file.
    ``notes`` (from ``cpufreq_domains``) are reported as warnings ``cpu 0``, ``cpu 1``, ...
    """

    power_source = "none"

    def __init__(self, platform: PlatformSpec, fs: Sysfs,
                 domains: Mapping[str, tuple[ClockDomain, ...]],
                 notes: Sequence[str] = (), left: LeftWindows | None = None) -> None:
        """``left``: what ``put_back_left_windows`` did, when the subclass had to call it
        before it moved any caps itself (else it is called here)."""
        self.platform = platform
        self.fs = fs
        self._domains = dict(domains)
        self._problems: dict[str, tuple[int, str]] = {}
        self._read_only = False
        if left is None:
            left = put_back_left_windows(fs, self._domains)
        self._initial = {d: self._window(d) for ds in self._domains.values() for d in ds}
        self._initial.update(left.pending)      # still to put back, as at a restore
        self._changed: set[ClockDomain] = set(left.pending)
        unwritable = next((path for d in self._initial for path in
                           (d.file(d.min_name), d.file(d.max_name)) if not fs.writable(path)), None)
        if unwritable is not None:
            self._go_read_only(f"no write access to /{unwritable}")
        for i, note in enumerate(notes):
            self.report(f"cpu {i}", WARN, note)
        for i, problem in enumerate(left.problems):
            self.report(f"left {i}", WARN, problem)
        if left.put_back:
            self.report("left", OK, "put back the clock windows a run that did not exit "
                        f"cleanly left set: {', '.join(left.put_back)}")
        # Read once: the lists and hardware limits do not change after start (nvpmodel, which
        # moves the caps, is applied before a control is built).
        self._available = {u.name: self._read_available(u.name) for u in platform.units}

    def report(self, key: str, level: int, message: str) -> None:
        """Record the latest problem (or note) ``key`` for ``status()``."""
        self._problems[key] = (level, message)

    def resolve(self, key: str) -> None:
        self._problems.pop(key, None)

    def frequency_hz(self, unit: str) -> int | None:
        """The slowest current clock among the unit's domains (it bounds a parallel job)."""
        self.platform.unit(unit)
        clocks = [self._read_hz(d, d.cur_name) for d in self._domains.get(unit, ())]
        known = [c for c in clocks if c is not None]
        return min(known) if known else None

    def has_clock(self, unit: str) -> bool:
        self.platform.unit(unit)
        return unit in self._domains and not self._read_only

    def available_hz(self, unit: str) -> tuple[int, ...]:
        if unit not in self._available:
            self.platform.unit(unit)  # raises KeyError naming the platform's units
        return self._available[unit]

    def set_frequency(self, unit: str, freq_hz: int) -> int | None:
        available = self.available_hz(unit)
        domains = self._domains.get(unit, ())
        if self._read_only or not domains or not available:
            return None
        target = snap_down(available, freq_hz)
        key = f"set {unit}"
        applied: list[int] = []
        mismatches: list[str] = []
        for domain in domains:
            raw = target // domain.scale
            first = domain not in self._changed
            self._changed.add(domain)  # even if a write fails: the first may have landed
            try:
                got = self.fs.write_range(domain.file(domain.min_name),
                                          domain.file(domain.max_name), raw, raw)
            except OSError as exc:
                if is_permission_error(exc):
                    self._go_read_only(f"writing {exc.filename or domain.directory}: "
                                       f"{exc.strerror}")
                    return None
                self.report(key, WARN, f"{unit}: setting {target} Hz failed: {exc}")
                return None
            if first:
                self._record_windows()
            if got != (raw, raw):
                mismatches.append(f"wrote {raw} to /{domain.directory} min/max, "
                                  f"read back {got[0]}/{got[1]}")
            if got[1] >= 0:
                applied.append(got[1] * domain.scale)
        if mismatches:
            self.report(key, WARN, f"{unit}: {'; '.join(mismatches)} (capped elsewhere?)")
        else:
            self.resolve(key)
        return min(applied) if applied else None

    def restore(self) -> None:
        """Put back the start windows; those that fail stay changed, and recorded for the
        next start to try again."""
        failed = set()
        for domain in sorted(self._changed, key=lambda d: d.directory):
            lo, hi = self._initial[domain]
            if lo is None or hi is None or self._window(domain) == (lo, hi):
                continue
            try:
                self.fs.write_range(domain.file(domain.min_name), domain.file(domain.max_name),
                                    lo, hi)
            except OSError as exc:
                failed.add(domain)
                self.report(f"restore {domain.directory}", WARN,
                            f"could not restore /{domain.directory}: {exc.strerror}")
        self._changed = failed
        if not failed:
            try:
                self.fs.remove(CLOCK_RECORD)
            except OSError as exc:
                self.report("record", WARN, f"could not remove /{CLOCK_RECORD}: {exc.strerror}")

    def _record_windows(self) -> None:
        """Record the start windows of the domains changed so far (``CLOCK_RECORD``)."""
        windows = {d.directory: self._initial[d] for d in self._changed
                   if None not in self._initial[d]}
        try:
            self.fs.replace_file(CLOCK_RECORD, json.dumps(windows, sort_keys=True))
        except OSError as exc:
            self.report("record", WARN, f"cannot record the clock windows found at start in "
                        f"/{CLOCK_RECORD} ({exc.strerror}): should the node die without "
                        "restoring them, they stay as it set them")

    def status(self) -> ControlStatus:
        writable = not self._read_only and bool(self._domains)
        problems = sorted(self._problems.values(), key=lambda p: -p[0])
        summary = (f"power: {self.power_source}; clocks: "
                   f"{'writable' if writable else 'read-only'}")
        return ControlStatus(
            level=max((level for level, _ in problems), default=OK),
            message="; ".join([summary, *(message for _, message in problems)]),
            writable=writable,
            power_source=self.power_source,
        )

    def _go_read_only(self, why: str) -> None:
        """Latch read-only once, keeping the first reason: later writes are not attempted."""
        if not self._read_only:
            self._read_only = True
            self.report("permission", WARN, f"clock control read-only: {why} "
                                            "(needs root or a privileged helper)")

    def _read_available(self, unit: str) -> tuple[int, ...]:
        """The hardware's list, else the platform table within the hardware limits."""
        table = self.platform.unit(unit).frequencies_hz
        domains = self._domains.get(unit, ())
        if not domains:
            return table
        domain = domains[0]  # a unit's domains are alike (one cluster, or its per-cpu policies)
        listed = tuple(sorted(v * domain.scale for v in self.fs.read_ints(
            domain.file(domain.available_name))))
        if listed:
            return listed
        lo = self._read_hz(domain, domain.hw_min_name) if domain.hw_min_name else None
        hi = self._read_hz(domain, domain.hw_max_name) if domain.hw_max_name else None
        return tuple(f for f in table if (lo is None or f >= lo) and (hi is None or f <= hi))

    def _window(self, domain: ClockDomain) -> tuple[int | None, int | None]:
        return (self.fs.read_int(domain.file(domain.min_name)),
                self.fs.read_int(domain.file(domain.max_name)))

    def _read_hz(self, domain: ClockDomain, name: str) -> int | None:
        value = self.fs.read_int(domain.file(name))
        return None if value is None else value * domain.scale

