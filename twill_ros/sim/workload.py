"""Workload scenarios: the YAML schema, its validation, and deterministic job generation.

A workload file is a contract shared by the twin, the CLI and the evaluation; a mistake in
one must be reported once, precisely (file, stream, field), instead of surfacing later as a
strange simulation. Generation is seeded per stream so that adding a stream does not
reshuffle the arrivals of the others.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from twill_ros.core.catalog import Catalog
from twill_ros.core.jobs import Job
from twill_ros.resources import Fields, load_yaml_mapping, resolve_named

DEFAULT_PRIORITY = 100
WORKLOAD_DIR = "config/workloads"
SCENARIOS = ("paper_mix", "robot_nav", "assistant", "overload")   # shipped in WORKLOAD_DIR

_TOP_KEYS = ("name", "description", "duration_s", "streams")
MAX_STREAM_JOBS = 1_000_000   # ~50 s of twin time per policy; far above any shipped scenario
_STREAM_KEYS = ("name", "model", "priority", "deadline_ms", "prompt_tokens", "max_new_tokens",
                "arrival")
_ARRIVAL_KEYS: Mapping[str, tuple[str, ...]] = {
    "periodic": ("period_ms", "jitter_ms", "phase_ms"),
    "poisson": ("rate_hz",),
    "bursts": ("every_s", "count", "spacing_ms", "phase_s"),
    "trace": ("times_s",),
}


class WorkloadError(ValueError):
    """An invalid workload file; the message names the file, the stream and the field."""


@dataclass(frozen=True)
class Arrival:
    """An arrival process: ``type`` is a key of the schema, ``params`` its validated fields."""

    type: str
    params: Mapping[str, object]


@dataclass(frozen=True)
class StreamSpec:
    """One source of jobs. Token counts are 0 for non-LLM models (or when no catalog was
    given to fill an LLM's defaults)."""

    name: str
    model: str
    arrival: Arrival
    priority: int = DEFAULT_PRIORITY
    deadline_ms: float | None = None
    prompt_tokens: int = 0
    max_new_tokens: int = 0


@dataclass(frozen=True)
class Workload:
    name: str
    duration_s: float
    streams: tuple[StreamSpec, ...]
    path: str = ""
    description: str = ""


def load_workload(name_or_path: str | Path, catalog: Catalog | None = None) -> Workload:
    """Parse and validate a workload file (a path, or a bare name from config/workloads).

    With a catalog, models are checked against it, token fields are accepted only for
    LLMs, and an LLM stream's missing token counts take the model's defaults."""
    path = resolve_named(name_or_path, WORKLOAD_DIR)
    top = load_yaml_mapping(path, WorkloadError)
    top.unknown_keys(_TOP_KEYS)
    duration = top.number("duration_s", positive=True)
    streams: list[StreamSpec] = []
    for entry in top.entries("streams", "stream"):
        stream = _stream(entry, duration, catalog)
        if any(s.name == stream.name for s in streams):
            entry.fail("name", "duplicate stream name")
        streams.append(stream)
    if not streams:
        top.fail("streams", "must list at least one stream")
    return Workload(name=_name(top), duration_s=duration, streams=tuple(streams),
                    path=str(path), description=top.string("description", ""))


def _stream(f: Fields, duration_s: float, catalog: Catalog | None) -> StreamSpec:
    f.unknown_keys(_STREAM_KEYS)
    name = _name(f)
    model = f.string("model")
    priority = f.integer("priority", DEFAULT_PRIORITY, minimum=0)
    if priority > 255:
        f.fail("priority", f"must be in 0..255, got {priority}")
    prompt, new = (f.integer(key, minimum=1) if f.data.get(key) is not None else 0
                   for key in ("prompt_tokens", "max_new_tokens"))
    if catalog is not None:
        if model not in catalog:
            f.fail("model", f"unknown model {model!r} (not in the catalog)")
        profile = catalog.get(model)
        if profile.is_llm:
            prompt = prompt or profile.default_prompt_tokens
            new = new or profile.default_max_new_tokens
            overflow = profile.context_overflow(prompt, new)
            if overflow:
                f.fail("max_new_tokens" if "max_new_tokens" in f.data else "prompt_tokens",
                       overflow)
        for key in ("prompt_tokens", "max_new_tokens"):
            if not profile.is_llm and key in f.data:
                f.fail(key, f"only LLM streams take it ({model!r} is a {profile.kind})")
    return StreamSpec(name=name, model=model, arrival=_arrival(f, duration_s),
                      priority=priority, deadline_ms=f.number("deadline_ms", None, positive=True),
                      prompt_tokens=prompt, max_new_tokens=new)


def _name(f: Fields) -> str:
    """A name that can head job ids (streams) and name files (``twill evaluate`` writes a
    workload's results to ``<eval-dir>/<name>.json``)."""
    name = f.string("name")
    if not name.strip() or "/" in name or name in (".", ".."):
        f.fail("name", f"must be a non-empty name without '/', got {name!r}")
    return name


def _arrival(stream: Fields, duration_s: float) -> Arrival:
    """The arrival mapping's keys are prefixed with ``arrival.`` so errors name the full
    field, e.g. ``field 'arrival.rate_hz'``."""
    raw = stream.mapping("arrival")
    f = Fields({f"arrival.{k}": v for k, v in raw.items()}, stream.file, stream.entry,
               WorkloadError)
    kind = f.string("arrival.type", choices=tuple(_ARRIVAL_KEYS))
    f.unknown_keys(("arrival.type",) + tuple(f"arrival.{k}" for k in _ARRIVAL_KEYS[kind]))
    params: dict[str, object]
    if kind == "periodic":
        params = {"period_ms": f.number("arrival.period_ms", positive=True),
                  "jitter_ms": f.number("arrival.jitter_ms", 0.0, minimum=0.0),
                  "phase_ms": f.number("arrival.phase_ms", 0.0, minimum=0.0)}
        _before_the_end(f, "arrival.phase_ms", params["phase_ms"] / 1000.0, duration_s)
    elif kind == "poisson":
        params = {"rate_hz": f.number("arrival.rate_hz", positive=True)}
    elif kind == "bursts":
        params = {"every_s": f.number("arrival.every_s", positive=True),
                  "count": f.integer("arrival.count", minimum=1),
                  "spacing_ms": f.number("arrival.spacing_ms", minimum=0.0),
                  "phase_s": f.number("arrival.phase_s", 0.0, minimum=0.0)}
        _before_the_end(f, "arrival.phase_s", params["phase_s"], duration_s)
    else:
        times = f.sequence("arrival.times_s")
        if not times:
            f.fail("arrival.times_s", "must list at least one time")
        checked = []
        for i, t in enumerate(times):
            key = f"arrival.times_s[{i}]"
            checked.append(f.check_number(key, t, minimum=0.0))
            if checked[-1] >= duration_s:      # arrivals are in [0, duration_s)
                f.fail(key, f"must be < duration_s ({duration_s:g}), got {t}")
        params = {"times_s": tuple(checked)}
    expected = _expected_jobs(kind, params, duration_s)
    if expected > MAX_STREAM_JOBS:
        f.fail(f"arrival.{_ARRIVAL_KEYS[kind][0]}",
               f"would give about {expected:,.0f} jobs in {duration_s:g} s; a stream may have "
               f"at most {MAX_STREAM_JOBS:,}")
    return Arrival(type=kind, params=params)


def _before_the_end(f: Fields, key: str, first_s: float, duration_s: float) -> None:
    """Arrivals are in [0, duration_s): a stream starting at the end would send nothing."""
    if first_s >= duration_s:
        f.fail(key, f"starts the stream at {first_s:g} s, not before duration_s "
                    f"({duration_s:g} s): it would send nothing")


def _expected_jobs(kind: str, params: Mapping, duration_s: float) -> float:
    """About how many jobs the stream generates (a bound on the twin's memory and time)."""
    if kind == "periodic":
        return max(0.0, duration_s - params["phase_ms"] / 1000.0) / (params["period_ms"] / 1000.0)
    if kind == "poisson":
        return params["rate_hz"] * duration_s
    if kind == "bursts":
        return max(0.0, duration_s - params["phase_s"]) / params["every_s"] * params["count"]
    return len(params["times_s"])


def _periodic(params: Mapping, duration_s: float, rng: random.Random) -> list[float]:
    period = params["period_ms"] / 1000.0
    jitter = params["jitter_ms"] / 1000.0
    t = params["phase_ms"] / 1000.0
    out = []
    while t < duration_s:
        out.append(max(0.0, t + rng.uniform(-jitter, jitter)) if jitter else t)
        t += period
    return out


def _poisson(params: Mapping, duration_s: float, rng: random.Random) -> list[float]:
    out = []
    t = rng.expovariate(params["rate_hz"])
    while t < duration_s:
        out.append(t)
        t += rng.expovariate(params["rate_hz"])
    return out


def _bursts(params: Mapping, duration_s: float, rng: random.Random) -> list[float]:
    out = []
    start = params["phase_s"]
    while start < duration_s:
        out.extend(start + i * params["spacing_ms"] / 1000.0 for i in range(params["count"]))
        start += params["every_s"]
    return out


def _trace(params: Mapping, duration_s: float, rng: random.Random) -> list[float]:
    return list(params["times_s"])


_GENERATORS: Mapping[str, Callable[[Mapping, float, random.Random], list[float]]] = {
    "periodic": _periodic, "poisson": _poisson, "bursts": _bursts, "trace": _trace,
}


def arrival_times(stream: StreamSpec, duration_s: float, seed: int) -> list[float]:
    """Submit times of one stream in [0, duration_s), sorted. The stream's generator is
    seeded from (seed, stream name) only, so streams are independent of each other."""
    rng = random.Random(f"{seed}:{stream.name}")
    times = _GENERATORS[stream.arrival.type](stream.arrival.params, duration_s, rng)
    return sorted(t for t in times if t < duration_s)


def generate_jobs(workload: Workload, seed: int) -> list[Job]:
    """All jobs of the workload, sorted by submit time (ties: stream order, then index);
    ids are ``<stream>-<n>`` counted from 0 in submit order within the stream."""
    keyed: list[tuple[float, int, int, Job]] = []
    for order, stream in enumerate(workload.streams):
        deadline = None if stream.deadline_ms is None else stream.deadline_ms / 1000.0
        for n, t in enumerate(arrival_times(stream, workload.duration_s, seed)):
            job = Job(job_id=f"{stream.name}-{n}", model=stream.model, priority=stream.priority,
                      submit_s=t, deadline_s=deadline, stream=stream.name,
                      prompt_tokens=stream.prompt_tokens, max_new_tokens=stream.max_new_tokens)
            keyed.append((t, order, n, job))
    keyed.sort(key=lambda item: item[:3])
    return [item[3] for item in keyed]
