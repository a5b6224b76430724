"""Power prediction, static clock caps and the DVFS power controller.

Module power model (shared by the twin, the controller and the static caps)::

    P_module = idle_power_w + sum over units of P_unit
    P_unit   = static_w + dynamic_max_w * u * (f / f_max) ** exponent

(the platform's definition, see ``core/platform.py``): ``static_w`` is drawn whether or not
the unit is busy, ``u`` is the share of the unit the running work keeps busy.

Progress model: a job's speed at frequency f relative to f_max is
``1 / (s * f_max / f + 1 - s)`` where ``s`` is the model's frequency sensitivity (the share
of its latency that scales with 1/f) — the same law the profiler uses for latency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from twill_ros.core.platform import PlatformSpec, UnitSpec
from twill_ros.native import mypyc_attr

DEFAULT_SENSITIVITY = 0.8
BUDGET_RANGE_W = (1.0, 100.0)   # module budgets the node and the command line accept
_OFFSET_STEP = 0.05       # W, plan cache quantisation (rounded up: conservative)
_UTIL_STEP = 0.05
_LOG_WEIGHT_STEP = 0.1    # weights in ~10 % steps
_CACHE_SIZE = 512


def check_budget_w(budget_w: float, platform: PlatformSpec | None = None) -> float:
    """``budget_w`` if it is within BUDGET_RANGE_W and, given a platform, not below the
    module's idle power (a budget no schedule can keep: the LLM work would stay frozen);
    else a ValueError saying so (NaN too)."""
    low, high = BUDGET_RANGE_W
    if not low <= budget_w <= high:
        raise ValueError(f"power budget must be {low:g} to {high:g} W, got {budget_w:g}")
    if platform is not None and budget_w < platform.floor_power_w:
        raise ValueError(f"power budget {budget_w:g} W is below {platform.name}'s idle power "
                         f"({platform.floor_power_w:.3g} W with every unit idle, platform "
                         f"file): no schedule can keep it")
    return budget_w


def speed(freq_hz: int, max_freq_hz: int, sensitivity: float) -> float:
    """Relative speed (1.0 at f_max) of work with the given frequency sensitivity."""
    return 1.0 / (sensitivity * max_freq_hz / freq_hz + 1.0 - sensitivity)


def unit_power_w(unit: UnitSpec, freq_hz: int, utilization: float) -> float:
    """Power of one unit at ``freq_hz`` kept busy a share ``utilization`` (clipped to 1)."""
    return unit.power.power_w(freq_hz, unit.max_frequency_hz, min(1.0, utilization))


def module_power_w(platform: PlatformSpec, freqs: Mapping[str, int],
                   utilizations: Mapping[str, float]) -> float:
    """Predicted module power (VDD_IN) for per-unit clocks and utilisations."""
    return platform.idle_power_w + sum(
        unit_power_w(u, freqs[u.name], utilizations.get(u.name, 0.0)) for u in platform.units)


class _Table:
    """Per-unit lookup tables for the solvers (the hot path of every control period)."""

    __slots__ = ("unit", "static", "dyn", "ratio", "dratio", "_gain")

    def __init__(self, unit: UnitSpec) -> None:
        self.unit = unit
        self.static = unit.power.static_w
        self.dyn = unit.power.dynamic_max_w
        fmax = unit.max_frequency_hz
        self.ratio = [(f / fmax) ** unit.power.exponent for f in unit.frequencies_hz]
        self.dratio = [0.0] + [b - a for a, b in zip(self.ratio, self.ratio[1:], strict=False)]
        self._gain: dict[float, list[float]] = {}

    def gain_per_ratio(self, sensitivity: float) -> list[float]:
        """Speed gained per unit of (f/f_max)^exponent added, for each step up."""
        g = self._gain.get(sensitivity)
        if g is None:
            fmax = self.unit.max_frequency_hz
            sp = [speed(f, fmax, sensitivity) for f in self.unit.frequencies_hz]
            g = self._gain[sensitivity] = [0.0] + [
                (sp[i] - sp[i - 1]) / self.dratio[i] if self.dratio[i] > 0 else float("inf")
                for i in range(1, len(sp))]
        return g

    def power(self, level: int, utilization: float) -> float:
        return self.static + self.dyn * min(1.0, utilization) * self.ratio[level]


_TABLES: dict[int, _Table] = {}


def _table(unit: UnitSpec) -> _Table:
    t = _TABLES.get(id(unit))
    if t is None or t.unit is not unit:
        t = _TABLES[id(unit)] = _Table(unit)
    return t


@mypyc_attr(native_class=False)   # mypyc: frozen native dataclasses cannot be deep-copied
@dataclass(frozen=True)
class Boost:
    """Spend the headroom a table step leaves: run ``unit`` at ``freq_hz`` (one step above
    its planned clock) for the first ``fraction`` of the period, then at the planned clock,
    so the period's mean power still meets the limit (time-dithering between two levels)."""

    unit: str
    freq_hz: int
    fraction: float


def _greedy_levels(units: list[UnitSpec], weights: Mapping[str, float],
                   utils: Mapping[str, float], sens: Mapping[str, float],
                   base_w: float, limit_w: float,
                   start: Mapping[str, int] | None = None
                   ) -> tuple[dict[str, int], Boost | None, float]:
    """Raise clocks greedily by best weighted-speed gain per extra watt while the predicted
    power stays <= ``limit_w``; units start at ``start`` levels (default the lowest). Also
    returns how much of the best step that did not fit the remaining headroom pays for, and
    the predicted power of the levels chosen.

    Speed is concave and power convex in f, so a unit's marginal ratio falls with each step
    and greedy is near-optimal for this small knapsack (<= 5 units x <= 30 levels). Each
    step takes the best next step of the units still climbing by a scan (ties: the first
    unit): over so few units, cheaper than a heap of (ratio, unit) tuples.
    """
    tabs = [_table(u) for u in units]
    level = [(start or {}).get(u.name, 0) for u in units]
    # per unit: extra watts of step j = wpr * dratio[j], weighted speed gained per extra watt
    # = scale * gain[j] (computed only for the steps the climb reaches)
    wpr = [t.dyn * min(1.0, utils[u.name]) for u, t in zip(units, tabs, strict=True)]
    scale = [weights.get(u.name, 0.0) / wpr[i] if wpr[i] > 0 else float("inf")
             for i, u in enumerate(units)]
    gain = [t.gain_per_ratio(sens[u.name]) for u, t in zip(units, tabs, strict=True)]
    dratio = [t.dratio for t in tabs]
    total = base_w + sum(t.power(level[i], utils[u.name])
                         for i, (u, t) in enumerate(zip(units, tabs, strict=True)))
    nlev = [len(t.ratio) for t in tabs]
    climbing = [i for i in range(len(units))
                if weights.get(units[i].name, 0.0) > 0.0 and level[i] + 1 < nlev[i]]
    rate = [scale[i] * gain[i][level[i] + 1] if i in climbing else 0.0
            for i in range(len(units))]     # of each climbing unit's next step
    first_miss: tuple[int, float] | None = None     # best step that did not fit: (unit, dp)
    while climbing:
        i = climbing[0]
        for j in climbing:
            if rate[j] > rate[i]:
                i = j
        nxt = level[i] + 1
        dp = wpr[i] * dratio[i][nxt]
        if total + dp <= limit_w:
            total += dp
            level[i] = nxt
            if nxt + 1 < nlev[i]:
                rate[i] = scale[i] * gain[i][nxt + 1]
                continue
        elif first_miss is None:
            first_miss = (i, dp)
        climbing.remove(i)      # at its top, or its next step does not fit
    freqs = {u.name: u.frequencies_hz[level[i]] for i, u in enumerate(units)}
    boost = None
    if first_miss is not None and first_miss[1] > 0:
        i, dp = first_miss
        boost = Boost(units[i].name, units[i].frequencies_hz[level[i] + 1],
                      max(0.0, min(1.0, (limit_w - total) / dp)))
    return freqs, boost, total


def _uniform_levels(units: list[UnitSpec], used: set[str], base_w: float,
                    limit_w: float) -> dict[str, int]:
    """Table levels of the largest common fraction x of f_max (each used unit at the highest
    entry <= x * f_max) whose fully-busy power fits — how nvpmodel modes scale all clocks."""
    def levels(x: float) -> dict[str, int]:
        out = {}
        for u in units:
            f = u.snap(int(x * u.max_frequency_hz)) if u.name in used else u.min_frequency_hz
            out[u.name] = u.frequencies_hz.index(f)
        return out

    def fits(lv: dict[str, int]) -> bool:
        return base_w + sum(unit_power_w(u, u.frequencies_hz[lv[u.name]],
                                         1.0 if u.name in used else 0.0)
                            for u in units) <= limit_w

    lo, hi = 0.0, 1.0
    if fits(levels(hi)):
        return levels(hi)
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(levels(mid)) else (lo, mid)
    return levels(lo)


# Static-cap profiles: the unit kinds held at their lowest clock (still counted fully busy
# where the policy uses them), which leaves the budget to the other units, as nvpmodel modes
# trade CPU cores and clocks against the GPU's. Which profile serves a policy best depends on
# the workload (a workload whose LLM spills onto the CPUs needs them fast, one that runs on the
# accelerators does not), so ``twill compare`` runs each policy without a power controller
# under every profile and reports the best (``comparison.run_comparison``).
DEFAULT_CAPS_PROFILE = "all-used"
CAP_PROFILES: dict[str, tuple[str, ...]] = {
    "all-used": (),              # the budget shared by every unit the policy uses
    "accelerators": ("cpu",),    # the CPU clusters at their lowest clock
    "gpu": ("cpu", "dla"),       # the CPU clusters and the DLAs at their lowest clock
}


def check_caps_profile(profile: str) -> str:
    """``profile`` if it names a CAP_PROFILES entry; ValueError naming them otherwise."""
    if profile not in CAP_PROFILES:
        raise ValueError(f"unknown static-cap profile {profile!r}; "
                         f"known: {', '.join(CAP_PROFILES)}")
    return profile


def static_caps(platform: PlatformSpec, budget_w: float, used_units: Iterable[str],
                fixed_hz: Mapping[str, int] | None = None,
                profile: str = DEFAULT_CAPS_PROFILE) -> dict[str, int]:
    """nvpmodel-style static clocks for a policy without a power controller.

    Rule: the units the policy uses are assumed fully busy (u = 1, the worst case) and the
    others idle at their lowest clock. First every used unit is set to the largest common
    fraction of its max clock that fits (as nvpmodel modes scale all clocks together); the
    remaining headroom is then filled one table step at a time on the unit with the best
    speed gain per watt (sensitivity 0.8, equal weights). The result: the highest per-unit
    clocks whose worst-case predicted module power is <= ``budget_w``; unused units stay at
    their lowest clock, and if even the lowest clocks exceed the budget, lowest clocks are used.
    Units in ``fixed_hz`` keep that clock, units of the kinds ``profile`` holds low
    (CAP_PROFILES) their lowest clock; the others share what those leave.
    """
    used = set(used_units)
    held = CAP_PROFILES[check_caps_profile(profile)]
    fixed = {u.name: u.min_frequency_hz for u in platform.units if u.kind in held}
    fixed.update(fixed_hz or {})
    units = [u for u in platform.units if u.name not in fixed]
    utils = {u.name: (1.0 if u.name in used else 0.0) for u in platform.units}
    weights = {u.name: (1.0 if u.name in used else 0.0) for u in units}
    sens = {u.name: DEFAULT_SENSITIVITY for u in units}
    base = platform.idle_power_w + sum((unit_power_w(u, fixed[u.name], utils[u.name])
                                        for u in platform.units if u.name in fixed), 0.0)
    start = _uniform_levels(units, used, base, budget_w)
    caps = _greedy_levels(units, weights, utils, sens, base, budget_w, start)[0]
    return {u.name: fixed.get(u.name) or caps[u.name] for u in platform.units}


@dataclass
class UnitDemand:
    """What the controller knows about a unit's work for the next period."""

    weight: float          # priority-weighted amount of work waiting on / running on it
    utilization: float     # expected utilisation while busy (from the catalog)
    sensitivity: float     # frequency sensitivity of that work


def _ready_level(table: _Table, headroom_w: float) -> int:
    """The highest level at which the unit, fully busy instead of reserved at its lowest
    clock, needs at most ``headroom_w`` more."""
    lowest = table.power(0, 1.0)
    level = 0
    for i in range(1, len(table.ratio)):
        if table.power(i, 1.0) - lowest <= headroom_w:
            level = i
    return level


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)   # mypyc: deep-copyable
class DvfsController:
    """Periodic DVFS under a module power budget (DESIGN.md §3).

    Each period it (1) compares the measured mean module power with what the model predicted
    for the period that just ended and folds the error into an EWMA offset, (2) parks units
    without work at their lowest clock, (3) raises busy units' clocks greedily by
    priority-weighted progress per watt while ``model + offset <= budget - margin``, where
    parked units are reserved at their lowest clock fully busy (work may land on them
    before the next period), and (4) when the busy units are at their max clocks (no boost,
    below), keeps each parked unit ready at the highest clock at which work landing on it
    alone would still fit the limit, so that work starts at speed rather than at the lowest
    clock (idle power does not depend on the clock in the power model, and work landing on a
    parked unit makes the scheduler re-plan at once). ``overshoot`` reports whether even the
    lowest clocks don't fit;
    ``boost`` how long the best step that did not fit can still run within the period
    (clock tables are coarse: dithering between two levels spends the whole budget).
    """

    def __init__(self, platform: PlatformSpec, budget_w: float, margin_frac: float = 0.015,
                 min_margin_w: float = 0.15, ewma_alpha: float = 0.3,
                 fixed_hz: Mapping[str, int] | None = None) -> None:
        self.platform = platform
        self.budget_w = budget_w
        # units whose clock cannot be set, at the clock they run: counted, never planned
        self.fixed_hz = dict(fixed_hz or {})
        self.margin_frac = margin_frac
        self.min_margin_w = min_margin_w
        self.alpha = ewma_alpha
        self.offset_w = 0.0
        self.overshoot = False
        self.boost: Boost | None = None       # optional intra-period boost of the last plan
        self._cache: dict[tuple, tuple[dict[str, int], bool, Boost | None]] = {}

    @property
    def limit_w(self) -> float:
        return self.budget_w - max(self.min_margin_w, self.margin_frac * self.budget_w)

    def correct(self, measured_w: float, predicted_w: float) -> None:
        """Fold the measured-minus-predicted error of the last period into the offset."""
        self.offset_w += self.alpha * (measured_w - predicted_w - self.offset_w)

    def overshoots(self, demand: Mapping[str, UnitDemand]) -> bool:
        """Whether even the lowest clocks would not fit ``demand`` (the last plan stands)."""
        last = self.overshoot, self.boost
        self.plan(demand)
        answer = self.overshoot
        self.overshoot, self.boost = last
        return answer

    def plan(self, demand: Mapping[str, UnitDemand]) -> dict[str, int]:
        """Per-unit clocks for the next period (units absent from ``demand`` are parked).

        Inputs are quantised conservatively before solving — utilisation and the power
        offset rounded up (to 0.05 and 0.05 W), weights to ~10 % log steps — so a plan can
        be reused while the situation is unchanged: the solver then costs a dict lookup.
        """
        units = self.platform.units
        offset = math.ceil(self.offset_w / _OFFSET_STEP) * _OFFSET_STEP
        key: tuple = (offset, self.limit_w) + tuple(
            (u.name, round(math.log(d.weight) / _LOG_WEIGHT_STEP),
             math.ceil(min(1.0, d.utilization) / _UTIL_STEP), d.sensitivity)
            for u in units if (d := demand.get(u.name)) is not None)
        hit = self._cache.get(key)
        if hit is not None:
            freqs, self.overshoot, self.boost = hit
            return dict(freqs)
        fixed = self.fixed_hz
        with_work = [u for u in units if u.name in demand]
        quantised = list(zip(with_work, key[2:], strict=True))
        weights = {u.name: math.exp(k[1] * _LOG_WEIGHT_STEP) for u, k in quantised}
        utils = {u.name: k[2] * _UTIL_STEP for u, k in quantised}
        busy = [u for u in with_work if u.name not in fixed]
        # parked units are reserved fully busy at their lowest clock; fixed ones count as what
        # they run (idle: their static power; work landing on them re-plans at once, and
        # reserving them busy at a clock nothing can lower would only ever freeze work)
        reserve = sum((_table(u).power(0, 1.0) for u in units
                       if u.name not in demand and u.name not in fixed), 0.0)
        fixed_w = sum((unit_power_w(u, fixed[u.name], utils.get(u.name, 0.0))
                       for u in units if u.name in fixed), 0.0)
        base = self.platform.idle_power_w + offset + reserve + fixed_w
        sens = {u.name: demand[u.name].sensitivity for u in busy}
        freqs, self.boost, planned_w = _greedy_levels(busy, weights, utils, sens, base,
                                                      self.limit_w)
        floor = base + sum(_table(u).power(0, utils[u.name]) for u in busy)
        self.overshoot = floor > self.limit_w
        if self.boost is None and not self.overshoot:
            headroom = self.limit_w - planned_w
            for u in units:
                if u.name not in demand and u.name not in fixed:
                    freqs[u.name] = u.frequencies_hz[_ready_level(_table(u), headroom)]
        freqs.update(fixed)
        for u in units:
            freqs.setdefault(u.name, u.frequencies_hz[0])
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = (freqs, self.overshoot, self.boost)
        return dict(freqs)
