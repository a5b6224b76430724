"""A developer machine: RAPL power where readable, cpufreq where writable, else read-only.

So the same node runs honestly on a laptop: it measures what the machine lets it measure and
says what it cannot (no RAPL or no root: the node uses the power model; no GPU/DLA clocks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from twill_ros.core.platform import PlatformSpec
from twill_ros.platforms.base import OK, WARN, PowerReading
from twill_ros.platforms.clocks import ClockControl, cpufreq_domains
from twill_ros.platforms.sysfs import Sysfs

RAPL_ZONES = "sys/class/powercap/intel-rapl:*"


@dataclass(frozen=True)
class RaplZone:
    path: str
    label: str
    top_level: bool
    max_range_uj: int


class Rapl:
    """Average power between reads from the RAPL energy counters (µJ, wrapping).

    Total is the ``psys`` zone (whole platform) when present, else the sum of the top-level
    zones (packages); sub-zones (core, uncore, dram) are reported as rails only.
    """

    def __init__(self, fs: Sysfs, clock: Callable[[], float]) -> None:
        self.fs = fs
        self.clock = clock
        self.zones: list[RaplZone] = []
        paths = fs.glob(RAPL_ZONES)
        names = {p.rsplit("/", 1)[-1]: fs.read_str(f"{p}/name") for p in paths}
        energies: dict[str, int] = {}  # a zone counts if its counter reads: the first sample
        for path in paths:
            zone_id = path.rsplit("/", 1)[-1]
            parent = zone_id.rsplit(":", 1)[0]
            top_level = parent == "intel-rapl"
            label = names[zone_id] or zone_id
            if not top_level:
                label = f"{names.get(parent) or parent}/{label}"
            max_range = fs.read_int(f"{path}/max_energy_range_uj")
            energy = fs.read_int(f"{path}/energy_uj") if max_range else None
            if max_range and energy is not None:
                self.zones.append(RaplZone(path, label, top_level, max_range))
                energies[path] = energy
        self._last = (clock(), energies)
        self._reading: PowerReading | None = None

    def read(self) -> PowerReading | None:
        t0, energies0 = self._last
        t1, energies1 = self._last = self._sample()
        if t1 <= t0 or not self.zones:
            return self._reading
        rails: dict[str, float] = {}
        for zone in self.zones:
            e0, e1 = energies0.get(zone.path), energies1.get(zone.path)
            if e0 is not None and e1 is not None:
                delta = e1 - e0 if e1 >= e0 else e1 + zone.max_range_uj - e0
                rails[zone.label] = delta / 1e6 / (t1 - t0)
        summed = ([z for z in self.zones if z.label == "psys"]
                  or [z for z in self.zones if z.top_level])
        if any(z.label not in rails for z in summed):
            # a counter the total needs did not read: no reading, not a low one (and none
            # kept for a read within the same instant)
            self._reading = None
            return None
        total = sum(rails[z.label] for z in summed)
        self._reading = PowerReading(total_w=total, rails=rails, source="rapl")
        return self._reading

    def _sample(self) -> tuple[float, dict[str, int]]:
        energies = {z.path: self.fs.read_int(f"{z.path}/energy_uj") for z in self.zones}
        return self.clock(), {p: e for p, e in energies.items() if e is not None}


class HostControl(ClockControl):
    """Linux host: cpufreq clusters mapped by the platform's cpu cores; no GPU/DLA clocks."""

    def __init__(self, platform: PlatformSpec, fs: Sysfs, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        domains, notes = cpufreq_domains(fs, platform)
        super().__init__(platform, fs, domains, notes)
        others = [u.name for u in platform.units if u.kind != "cpu"]
        if others:
            self.report("units", OK, f"{', '.join(others)}: no such clock on this host, "
                                     "read-only")
        self._rapl = Rapl(fs, clock)
        if self._rapl.zones:
            self.power_source = "rapl"
        else:
            self.report("power", WARN, f"no readable RAPL energy counter under /{RAPL_ZONES} "
                        "(absent, or root-only since CVE-2020-8694); the node uses the power "
                        "model")

    def read_power(self) -> PowerReading | None:
        return self._rapl.read()
