"""Platform model: schedulable units, their clock tables and power models, read from YAML.

Nothing about a particular SoC is hard-coded here; ``config/platforms/<name>.yaml`` says it
and carries a source or derivation for every number.

Module power is ``idle_power_w + sum(unit.power.power_w(f_unit, f_max, u_unit))`` where an
idle unit has ``u = 0`` and so contributes only its ``static_w``: ``idle_power_w`` is the floor
of everything that is not a schedulable unit (SoC, DRAM refresh, carrier-independent rails).
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType

from twill_ros.resources import Fields, load_yaml_mapping, resolve_named

UNIT_KINDS = ("gpu", "dla", "cpu")
SHARING = ("processor_shared", "exclusive")
MHZ = 1_000_000


class PlatformError(ValueError):
    """An invalid platform file; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class PowerModel:
    """``P(f, u) = static_w + dynamic_max_w * u * (f / f_max) ** exponent``.

    The exponent folds voltage scaling with frequency (P ~ f V^2, V rising with f) into one
    number per unit; static_w is what the unit adds to the module floor while powered.
    """

    static_w: float
    dynamic_max_w: float
    exponent: float

    def power_w(self, freq_hz: int, max_freq_hz: int, utilization: float) -> float:
        return (
            self.static_w
            + self.dynamic_max_w * utilization * (freq_hz / max_freq_hz) ** self.exponent
        )


@dataclass(frozen=True)
class UnitSpec:
    """One schedulable processor (GPU, one DLA core, one CPU cluster)."""

    name: str
    kind: str
    sharing: str
    frequencies_hz: tuple[int, ...]
    speed_scale: float
    cores: tuple[int, ...]
    power: PowerModel

    @property
    def max_frequency_hz(self) -> int:
        return self.frequencies_hz[-1]

    @property
    def min_frequency_hz(self) -> int:
        return self.frequencies_hz[0]

    def snap(self, freq_hz: int) -> int:
        """Nearest table entry <= freq_hz, else the minimum (what a cap write does)."""
        return snap_down(self.frequencies_hz, freq_hz)


def snap_down(freqs: tuple[int, ...], freq_hz: int) -> int:
    """Highest of ascending ``freqs`` <= ``freq_hz``, else the lowest: how a clock cap behaves."""
    index = bisect.bisect_right(freqs, freq_hz)
    return freqs[max(index - 1, 0)]


@dataclass(frozen=True)
class Interference:
    """Jobs on a ``victim`` kind run ``factor`` times longer while an ``aggressor`` kind is busy."""

    victim: str
    aggressor: str
    factor: float


@dataclass(frozen=True)
class NvpModel:
    """A reference nvpmodel mode: clock caps by unit name or kind (informational, for baselines)."""

    name: str
    budget_w: float
    caps_hz: Mapping[str, int] = field(default_factory=dict, hash=False)
    online_cores: int = 0
    gpu_sms: int = 0

    def cap_hz(self, unit: UnitSpec) -> int:
        """This mode's cap for ``unit`` (by name, then kind), snapped to its table; else max."""
        cap = self.caps_hz.get(unit.name, self.caps_hz.get(unit.kind))
        return unit.max_frequency_hz if cap is None else unit.snap(cap)


@dataclass(frozen=True)
class PlatformSpec:
    name: str
    description: str
    idle_power_w: float
    dvfs_transition_s: float
    power_sample_period_s: float
    units: tuple[UnitSpec, ...]
    interference: tuple[Interference, ...]
    nvpmodel: tuple[NvpModel, ...]
    path: str = ""
    _by_name: Mapping[str, UnitSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", MappingProxyType({u.name: u for u in self.units}))

    def unit(self, name: str) -> UnitSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"platform {self.name!r} has no unit {name!r}; units: {', '.join(self.unit_names)}"
            ) from None

    def without_units(self, names: Collection[str]) -> PlatformSpec:
        """This platform less ``names``: units this machine cannot use now."""
        for name in names:
            self.unit(name)     # a KeyError naming the platform's units
        return replace(self, units=tuple(u for u in self.units if u.name not in names))

    @property
    def unit_names(self) -> tuple[str, ...]:
        return tuple(u.name for u in self.units)

    @property
    def floor_power_w(self) -> float:
        """Module power with every unit idle (u = 0): the idle figure the file is calibrated to."""
        return self.idle_power_w + sum(u.power.static_w for u in self.units)

    def nvpmodel_mode(self, name: str) -> NvpModel:
        for mode in self.nvpmodel:
            if mode.name == name:
                return mode
        raise KeyError(f"platform {self.name!r} has no nvpmodel mode {name!r}")


def load_platform(name_or_path: str | Path) -> PlatformSpec:
    """Load ``config/platforms/<name>.yaml`` (bare name) or a platform file path."""
    path = resolve_named(name_or_path, "config/platforms")
    top = load_yaml_mapping(path, PlatformError)
    top.unknown_keys(
        (
            "name",
            "description",
            "idle_power_w",
            "dvfs_transition_ms",
            "power_sample_period_ms",
            "units",
            "interference",
            "nvpmodel",
        )
    )
    units = tuple(_unit(f) for f in top.entries("units", "unit"))
    if not units:
        top.fail("units", "must list at least one unit")
    names = [u.name for u in units]
    for name in names:
        if names.count(name) > 1:
            top.fail("units", f"duplicate unit name {name!r}")
    kinds = {u.kind for u in units}
    interference = tuple(
        _interference(f, kinds) for f in top.entries("interference", "interference", "victim", [])
    )
    modes = tuple(_mode(f, units) for f in top.entries("nvpmodel", "nvpmodel mode", default=[]))
    return PlatformSpec(
        name=top.string("name"),
        description=top.string("description", ""),
        idle_power_w=top.number("idle_power_w", minimum=0.0),
        dvfs_transition_s=top.number("dvfs_transition_ms", minimum=0.0) / 1000.0,
        power_sample_period_s=top.number("power_sample_period_ms", positive=True) / 1000.0,
        units=units,
        interference=interference,
        nvpmodel=modes,
        path=str(path),
    )


def _unit(f: Fields) -> UnitSpec:
    f.unknown_keys(("name", "kind", "sharing", "frequencies_mhz", "speed_scale", "cores", "power"))
    kind = f.string("kind", choices=UNIT_KINDS)
    freqs_mhz = f.sequence("frequencies_mhz")
    if not freqs_mhz:
        f.fail("frequencies_mhz", "must list at least one frequency")
    freqs = tuple(
        round(f.check_number("frequencies_mhz", v, positive=True) * MHZ) for v in freqs_mhz
    )
    if any(b <= a for a, b in pairwise(freqs)):
        f.fail("frequencies_mhz", "must be strictly ascending")
    cores = f.sequence("cores", [])
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in cores):
        f.fail("cores", "must be a list of cpu ids (non-negative integers)")
    if kind == "cpu" and not cores:
        f.fail("cores", "a cpu unit must list its cpu ids")
    power = Fields(f.mapping("power"), f.file, f.entry, f.error)
    power.unknown_keys(("static_w", "dynamic_max_w", "exponent"))
    return UnitSpec(
        name=f.string("name"),
        kind=kind,
        sharing=f.string("sharing", "exclusive", choices=SHARING),
        frequencies_hz=freqs,
        speed_scale=f.number("speed_scale", 1.0, positive=True),
        cores=tuple(cores),
        power=PowerModel(
            static_w=power.number("static_w", minimum=0.0),
            dynamic_max_w=power.number("dynamic_max_w", minimum=0.0),
            exponent=power.number("exponent", positive=True),
        ),
    )


def _interference(f: Fields, kinds: set[str]) -> Interference:
    f.unknown_keys(("victim", "aggressor", "factor"))
    victim = f.string("victim", choices=UNIT_KINDS)
    aggressor = f.string("aggressor", choices=UNIT_KINDS)
    for key, kind in (("victim", victim), ("aggressor", aggressor)):
        if kind not in kinds:
            f.fail(key, f"no unit of kind {kind!r} on this platform")
    return Interference(victim, aggressor, f.number("factor", minimum=1.0))


def _mode(f: Fields, units: tuple[UnitSpec, ...]) -> NvpModel:
    f.unknown_keys(("name", "budget_w", "caps_mhz", "online_cores", "gpu_sms"))
    targets = {u.name for u in units} | {u.kind for u in units}
    caps = f.number_map("caps_mhz", {}, keys=sorted(targets), positive=True)
    return NvpModel(
        name=f.string("name"),
        budget_w=f.number("budget_w", positive=True),
        caps_hz=MappingProxyType({k: round(v * MHZ) for k, v in caps.items()}),
        online_cores=f.integer("online_cores", 0, minimum=0),
        gpu_sms=f.integer("gpu_sms", 0, minimum=0),
    )
