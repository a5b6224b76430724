"""Where the node's jobs run and where its power and clocks come from.

Each unit has one or more execution backends (``backends.<unit>: "torch,llm"``; a job goes
to the first that supports its model) and the platform may have a control (``jetson``,
``host``) that reads module power and sets real clocks. Without a control, power and clocks
are the backends' model (the twin) or, failing that, the platform file's power model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twill_ros.backends.base import Backend, Clock, EventSink, make_backend
from twill_ros.core.catalog import Catalog
from twill_ros.core.jobs import Job
from twill_ros.core.platform import PlatformSpec
from twill_ros.core.profiler import Profiler
from twill_ros.platforms.base import PlatformControl, PowerReading


class Execution:
    def __init__(self, platform: PlatformSpec, catalog: Catalog, profiler: Profiler,
                 kinds_of: Mapping[str, Sequence[str]], control: PlatformControl | None,
                 sink: EventSink, clock: Clock,
                 options: Mapping[str, Mapping] | None = None) -> None:
        """``control``: the platform's (``make_control``), ``None`` for the model's;
        ``options``: per backend kind, its own settings (see ``make_backend``)."""
        self.platform = platform
        self.profiler = profiler
        by_kind: dict[str, list[str]] = {}
        for unit, kinds in kinds_of.items():
            for kind in kinds:
                by_kind.setdefault(kind, []).append(unit)
        options = options or {}
        # Backends get a profiler of their own: the twin's timing is the catalog model, and
        # must not learn from the scheduler's observations (which include node overhead).
        truth = Profiler(catalog, platform)
        self.backends = [make_backend(kind, tuple(units), platform, catalog, truth, sink,
                                      clock, **options.get(kind, {}))
                         for kind, units in by_kind.items()]
        for backend in self.backends:
            backend.warm_up()
        self._of_unit = {unit: [b for b in self.backends if unit in b.units]
                         for unit in platform.unit_names}
        self.control = control
        # a control that has a sensor and then gets no reading has lost it
        self._sensed = control is not None and control.status().power_source != "none"
        # Last applied (read-back) clocks: what the power model uses, so a power sample costs
        # no sysfs reads.
        self._freq = {u.name: u.max_frequency_hz for u in platform.units}
        for unit in self._freq:
            self._freq[unit] = self.frequency_hz(unit)

    # ------------------------------------------------------------ jobs
    def backend_for(self, model: str, unit: str) -> Backend:
        for backend in self._of_unit[unit]:
            if backend.supports(model):
                return backend
        raise RuntimeError(f"no backend of unit {unit} can run model '{model}'")

    def runnable(self, model: str) -> bool:
        """Some unit the core may choose for ``model`` has a backend that runs it."""
        return any(b.supports(model) for unit in self.profiler.eligible_units(model)
                   for b in self._of_unit[unit])

    def start(self, job: Job, unit: str, tokens_done: int, payload,
              share: float = 1.0) -> Backend:
        backend = self.backend_for(job.model, unit)
        backend.start(job, unit, tokens_done, payload, share)
        return backend

    # ------------------------------------------------------------ clocks and power
    def set_frequency(self, unit: str, freq_hz: int) -> None:
        for backend in self._of_unit[unit]:
            backend.set_frequency(unit, freq_hz)
        applied = freq_hz
        if self.control is not None:
            applied = self.control.set_frequency(unit, freq_hz)
        self._freq[unit] = applied if applied is not None else self._freq[unit]

    def frequency_hz(self, unit: str) -> int:
        if self.control is not None:
            # a clock the control cannot read stays the one last applied (its max at start),
            # never the one the core asked the backends for
            measured = self.control.frequency_hz(unit)
            return measured if measured is not None else self._freq[unit]
        backends = self._of_unit[unit]
        return backends[0].frequency_hz(unit) if backends else self._freq[unit]

    def fixed_clocks_hz(self) -> dict[str, int]:
        """Units whose clock no control sets, at the clock they run (a Jetson's DLAs: their
        nvpmodel cap), for the core to plan around. Without a control (the twin) every clock
        is set."""
        if self.control is None:
            return {}
        return {u.name: self.frequency_hz(u.name) for u in self.platform.units
                if not self.control.has_clock(u.name)}

    def utilization(self, unit: str) -> float:
        """Busy share since the last call (several backends on one unit add up)."""
        return min(1.0, sum(b.utilization(unit) for b in self._of_unit[unit]))

    def power(self, utilization: Mapping[str, float]) -> PowerReading | None:
        """Module power: the platform's sensor (``None`` when it stopped answering: a model
        is no stand-in for a board that may draw far more), else, on a machine without one,
        the backends' model (the twin), else the platform file's power model at the current
        clocks and ``utilization`` (the models have no rails)."""
        if self.control is not None:
            reading = self.control.read_power()
            if reading is not None or self._sensed:
                return reading
        modelled = [b.power_w() for b in self.backends]
        if modelled and all(w is not None for w in modelled):
            return PowerReading(max(modelled), {}, "digital twin power model")
        total = self.platform.idle_power_w + sum(
            u.power.power_w(self._freq[u.name], u.max_frequency_hz,
                            utilization.get(u.name, 0.0)) for u in self.platform.units)
        return PowerReading(total, {}, "platform power model")

    def control_status(self) -> tuple[int, str]:
        if self.control is None:
            return 0, "simulated clocks (full control)"
        status = self.control.status()
        return status.level, status.message

    def close(self) -> None:
        for backend in self.backends:
            backend.close()
        if self.control is not None:
            self.control.restore()
