"""Latency and power estimates per (model, unit, frequency), refined online from observed runtimes.

Prior: the catalog figure at max frequency, scaled by the unit's ``speed_scale`` and by
``L(f) = L_max * (s * f_max / f + 1 - s)``. Correction: an EWMA of observed / predicted per
(model, unit, phase, frequency level); a level never observed borrows the (model, unit, phase)
EWMA over all levels, so one observation already helps every clock. Estimates are cached per
frequency because the scheduler asks them in its hot loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from twill_ros.core.catalog import Catalog, ModelProfile
from twill_ros.core.jobs import Job
from twill_ros.core.platform import PlatformSpec, UnitSpec
from twill_ros.native import mypyc_attr


@mypyc_attr(native_class=False)   # mypyc: frozen native dataclasses cannot be deep-copied
@dataclass(frozen=True)
class _Base:
    """Per (model, unit, phase) constants: seconds per job or per token at max frequency."""

    seconds: float
    sensitivity: float
    max_freq_hz: int


class _Ratio:
    """EWMA of observed / predicted, starting from 1 (trust the prior)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 1.0

    def update(self, ratio: float, alpha: float) -> None:
        self.value += alpha * (ratio - self.value)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)   # mypyc: deep-copyable
class Profiler:
    def __init__(self, catalog: Catalog, platform: PlatformSpec, ewma_alpha: float = 0.3) -> None:
        if not 0.0 < ewma_alpha <= 1.0:
            raise ValueError(f"ewma_alpha must be in (0, 1], got {ewma_alpha}")
        self.catalog = catalog
        self.platform = platform
        self.ewma_alpha = ewma_alpha
        self._bases: dict[tuple[str, str, str], _Base] = {}
        self._eligible: dict[str, tuple[str, ...]] = {}
        self._level_ratio: dict[tuple[str, str, str, int], _Ratio] = {}
        self._unit_ratio: dict[tuple[str, str, str], _Ratio] = {}
        self._cache: dict[tuple[str, str, str], dict[int, float]] = {}
        self._power_cache: dict[tuple[str, str, int], float] = {}

    # ----------------------------------------------------------------- eligibility
    def eligible_units(self, model_id: str) -> tuple[str, ...]:
        """Units whose kind the model has figures for (DLAs only if DLA-compatible)."""
        units = self._eligible.get(model_id)
        if units is None:
            kinds = self.catalog.get(model_id).unit_kinds
            units = tuple(u.name for u in self.platform.units if u.kind in kinds)
            self._eligible[model_id] = units
        return units

    # ----------------------------------------------------------------- estimates
    def estimate_s(
        self, model_id: str, unit: str, freq_hz: int, tokens: int = 0, phase: str = "job"
    ) -> float:
        """Expected run time alone on ``unit`` at ``freq_hz``.

        dnn/transformer: the whole job (``phase`` "job"). llm: "prefill" for ``tokens`` prompt
        tokens (0 -> the model's default prompt), "decode" for ``max(tokens, 1)`` decode passes
        (so ``tokens=0/1`` is the per-token step time), "job" for default prompt + default
        max_new_tokens (``llm_s``).
        """
        profile = self.catalog.get(model_id)
        if profile.is_llm and phase == "job":
            return self.llm_s(model_id, unit, freq_hz, profile.default_prompt_tokens,
                              profile.default_max_new_tokens)
        by_freq = self._cache.get((model_id, unit, phase))
        if by_freq is None:
            by_freq = self._cache[(model_id, unit, phase)] = {}
        per = by_freq.get(freq_hz)
        if per is None:
            per = self._predict(model_id, unit, freq_hz, phase) * self._ratio(
                model_id, unit, phase, freq_hz
            )
            by_freq[freq_hz] = per
        return per * _count(profile, phase, tokens)

    def observe(
        self,
        model_id: str,
        unit: str,
        freq_hz: int,
        observed_s: float,
        tokens: int = 0,
        phase: str = "job",
    ) -> None:
        """Fold one measured run time into the EWMA for its (model, unit, phase, level)."""
        profile = self.catalog.get(model_id)
        if profile.is_llm and phase == "job":
            raise ValueError("observe llm runtimes per phase ('prefill' or 'decode')")
        if observed_s <= 0.0:
            return
        predicted = self._predict(model_id, unit, freq_hz, phase) * _count(profile, phase, tokens)
        ratio = observed_s / predicted
        level = self._level(unit, freq_hz)
        self._level_ratio.setdefault((model_id, unit, phase, level), _Ratio()).update(
            ratio, self.ewma_alpha
        )
        self._unit_ratio.setdefault((model_id, unit, phase), _Ratio()).update(
            ratio, self.ewma_alpha
        )
        self._cache.pop((model_id, unit, phase), None)

    def job_s(self, job: Job, unit: str, freq_hz: int) -> float:
        """The whole of ``job`` alone on ``unit`` at ``freq_hz`` (an LLM: its own prompt and
        new tokens, the model's defaults where the job gives none)."""
        profile = self.catalog.get(job.model)
        if not profile.is_llm:
            return self.estimate_s(job.model, unit, freq_hz)
        return self.llm_s(job.model, unit, freq_hz, *llm_tokens(job, profile))

    def llm_s(self, model_id: str, unit: str, freq_hz: int, prompt: int, new: int) -> float:
        """A whole generation: the prefill (which picks the first token), then a decode pass
        for each further token."""
        return (self.estimate_s(model_id, unit, freq_hz, prompt, "prefill")
                + decode_passes(new) * self.estimate_s(model_id, unit, freq_hz, 1, "decode"))

    def isolated_latency_s(self, job: Job) -> float:
        """Best eligible unit at its max frequency, alone (the denominator of slowdown).

        Uses the corrected estimates, so it tracks observed runtimes like every other estimate.
        """
        return min(self.job_s(job, name, self.platform.unit(name).max_frequency_hz)
                   for name in self.eligible_units(job.model))

    def power_w(self, model_id: str, unit: str, freq_hz: int) -> float:
        """The unit's static + dynamic power while running this model (its utilization)."""
        key = (model_id, unit, freq_hz)
        watts = self._power_cache.get(key)
        if watts is None:
            spec = self.platform.unit(unit)
            utilization = self.catalog.get(model_id).utilization.get(spec.kind, 1.0)
            watts = spec.power.power_w(freq_hz, spec.max_frequency_hz, utilization)
            self._power_cache[key] = watts
        return watts

    # ----------------------------------------------------------------- internals
    def _predict(self, model_id: str, unit: str, freq_hz: int, phase: str) -> float:
        """Uncorrected prior, seconds per job or per token."""
        base = self._base(model_id, self.platform.unit(unit), phase)
        s = base.sensitivity
        return base.seconds * (s * base.max_freq_hz / freq_hz + 1.0 - s)

    def _ratio(self, model_id: str, unit: str, phase: str, freq_hz: int) -> float:
        level = self._level_ratio.get((model_id, unit, phase, self._level(unit, freq_hz)))
        if level is not None:
            return level.value
        overall = self._unit_ratio.get((model_id, unit, phase))
        return 1.0 if overall is None else overall.value

    def _level(self, unit: str, freq_hz: int) -> int:
        return self.platform.unit(unit).snap(freq_hz)

    def _base(self, model_id: str, unit: UnitSpec, phase: str) -> _Base:
        key = (model_id, unit.name, phase)
        base = self._bases.get(key)
        if base is None:
            base = _make_base(self.catalog.get(model_id), unit, phase)
            self._bases[key] = base
        return base


def _make_base(profile: ModelProfile, unit: UnitSpec, phase: str) -> _Base:
    kind = unit.kind
    if kind not in profile.unit_kinds:
        raise ValueError(
            f"model {profile.id!r} cannot run on unit {unit.name!r} (kind {kind}); "
            f"it runs on: {', '.join(profile.unit_kinds) or 'nothing'}"
        )
    if profile.is_llm:
        if phase == "prefill":
            seconds = 1.0 / profile.prefill_tokens_per_s[kind]
            sensitivity = profile.prefill_freq_sensitivity.get(
                kind, profile.freq_sensitivity.get(kind, 1.0)
            )
        elif phase == "decode":
            seconds = 1.0 / profile.decode_tokens_per_s[kind]
            sensitivity = profile.freq_sensitivity.get(kind, 1.0)
        else:
            raise ValueError(f"llm phase must be 'prefill' or 'decode', got {phase!r}")
    else:
        if phase != "job":
            raise ValueError(
                f"model {profile.id!r} is not an llm; phase must be 'job', got {phase!r}"
            )
        seconds = profile.latency_s[kind]
        sensitivity = profile.freq_sensitivity.get(kind, 1.0)
    return _Base(seconds * unit.speed_scale, sensitivity, unit.max_frequency_hz)


def llm_tokens(job: Job, profile: ModelProfile) -> tuple[int, int]:
    """(prompt, new) tokens of an LLM job; 0 in the job means the model's default."""
    return (job.prompt_tokens or profile.default_prompt_tokens,
            max(1, job.max_new_tokens or profile.default_max_new_tokens))


def decode_passes(new_tokens: int) -> int:
    """Decode passes that generate ``new_tokens``: the prefill's logits give the first token
    (as in the LLM backend and TensorRT-LLM), each further token takes one pass."""
    return max(new_tokens - 1, 0)


def _count(profile: ModelProfile, phase: str, tokens: int) -> int:
    """How many per-token steps a request covers (1 for a whole dnn job)."""
    if not profile.is_llm:
        return 1
    if phase == "prefill":
        return tokens if tokens > 0 else profile.default_prompt_tokens
    return max(tokens, 1)
