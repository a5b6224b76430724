"""The platform-control interface the scheduler node uses for measured power and real clocks.

The core plans with the platform model (``core/platform.py``); a ``PlatformControl`` is how the
node meets the hardware: it reads module power, reads and sets unit clocks, and says honestly
what it could not do (no sensor, no write permission, a clock that did not stick) through
``status()`` for ``/diagnostics``. Controls never raise for permission problems: they fall back
to read-only, because a scheduler that cannot set clocks still schedules.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twill_ros.platforms.sysfs import Sysfs

if TYPE_CHECKING:
    from twill_ros.core.platform import PlatformSpec

OK, WARN, ERROR = 0, 1, 2
"""Status levels, numerically equal to diagnostic_msgs/DiagnosticStatus OK/WARN/ERROR."""

# kind -> (module, class); imported on demand so a host never imports Jetson-only code paths.
CONTROLS: dict[str, tuple[str, str]] = {
    "jetson": ("twill_ros.platforms.jetson", "JetsonControl"),
    "host": ("twill_ros.platforms.host", "HostControl"),
}


@dataclass(frozen=True)
class PowerReading:
    """One power sample. ``total_w`` is module input power (Jetson: the VDD_IN rail).

    ``alarm`` is the sensor's over-current alarm at this sample, at ``alarm_level`` (WARN or
    ERROR; "" and OK without one): on a Jetson the critical limit throttles the SoC, a cause
    of slow jobs that nothing else in the node can see."""

    total_w: float
    rails: dict[str, float]
    source: str
    alarm: str = ""
    alarm_level: int = OK


@dataclass(frozen=True)
class ControlStatus:
    """What ``/diagnostics`` reports under ``twill/platform``."""

    level: int
    message: str
    writable: bool
    power_source: str


class PlatformControl(ABC):
    """Power sensor and clock control of one machine, for the units of one platform file."""

    @abstractmethod
    def read_power(self) -> PowerReading | None:
        """The latest power sample; ``None`` when no sensor answers (use the power model)."""

    @abstractmethod
    def frequency_hz(self, unit: str) -> int | None:
        """The unit's current clock read back from the hardware; ``None`` if unknown."""

    @abstractmethod
    def available_hz(self, unit: str) -> tuple[int, ...]:
        """Clocks the unit accepts, ascending (the hardware's list, else the platform table)."""

    @abstractmethod
    def set_frequency(self, unit: str, freq_hz: int) -> int | None:
        """Pin ``unit`` to ``freq_hz`` snapped to ``available_hz`` and verify by reading back.

        Returns the clock the hardware reports afterwards (which differs from the request when
        a cap clamps it; ``status()`` says so), or ``None`` when the clock cannot be set here
        (read-only control, a unit without a settable clock).
        """

    @abstractmethod
    def has_clock(self, unit: str) -> bool:
        """Whether this control sets the unit's clock: not a Jetson's DLAs (they run at their
        nvpmodel cap), and none once the control is read-only (no write access)."""

    def offline_units(self) -> tuple[str, ...]:
        """Units with no core online, which the node leaves out (none unless a control
        knows better: a container's missing cores still leave its units some CPUs)."""
        return ()

    @abstractmethod
    def status(self) -> ControlStatus:
        """Sensor source and every problem seen so far (permission problems stay latched)."""

    @abstractmethod
    def restore(self) -> None:
        """Put back the clock windows found at start (shutdown); release sensor clients."""


def make_control(kind: str, platform: PlatformSpec, root: str = "/",
                 **options: Any) -> PlatformControl:
    """Build the control ``kind`` for ``platform``; every file path is below ``root``.

    ``options`` go to the control's constructor (e.g. ``nvpmodel_mode``, ``use_jtop``), plus
    ``on_write(path, value)`` called after every sysfs write. Unknown kinds raise ValueError.
    """
    try:
        module, name = CONTROLS[kind]
    except KeyError:
        raise ValueError(f"unknown platform control kind {kind!r}; known kinds: "
                         f"{', '.join(sorted(CONTROLS))}") from None
    fs = Sysfs(root, options.pop("on_write", None))
    cls = getattr(importlib.import_module(module), name)
    return cls(platform, fs, **options)
