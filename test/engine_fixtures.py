"""A tiny platform and catalog with round numbers, so engine tests can be checked by hand.

Units: ``gpu`` (processor-shared, 500/1000 MHz), ``dla0`` (exclusive, 500/1000 MHz),
``cpu_a`` (exclusive, 1000/2000 MHz). GPU and DLA slow each other x1.5 while both are busy.
Power: idle 2 W; each unit static 0 W and 8/2/4 W dynamic at max clock (exponent 2).
Models (latency alone at max clock): ``cnn`` gpu 10 ms / dla 20 ms / cpu 200 ms,
``bert`` gpu 10 ms / cpu 200 ms, ``long`` gpu 100 ms only, ``cpuonly`` cpu 50 ms,
``dlaonly`` dla 50 ms, ``llm`` prefill 1000 tok/s and
decode 100 tok/s on gpu (10 ms per token) / 10 tok/s on cpu; ``cpullm`` the same rates on
the CPU only. All frequency sensitivities 1.0
(latency doubles at half clock), utilisation 1.0.
"""

from __future__ import annotations

import dataclasses

from twill_ros.core.catalog import Catalog, ModelProfile
from twill_ros.core.jobs import Job
from twill_ros.core.platform import Interference, PlatformSpec, PowerModel, UnitSpec
from twill_ros.core.scheduler import Scheduler

MHZ = 1_000_000


def unit(name: str, kind: str, sharing: str, fmax_mhz: int, dyn_w: float) -> UnitSpec:
    return UnitSpec(name=name, kind=kind, sharing=sharing,
                    frequencies_hz=(fmax_mhz // 2 * MHZ, fmax_mhz * MHZ), speed_scale=1.0,
                    cores=(0, 1) if kind == "cpu" else (),
                    power=PowerModel(static_w=0.0, dynamic_max_w=dyn_w, exponent=2.0))


PLATFORM = PlatformSpec(
    name="tiny", description="hand-checkable test platform", idle_power_w=2.0,
    dvfs_transition_s=0.001, power_sample_period_s=0.01,
    units=(unit("gpu", "gpu", "processor_shared", 1000, 8.0),
           unit("dla0", "dla", "exclusive", 1000, 2.0),
           unit("cpu_a", "cpu", "exclusive", 2000, 4.0)),
    interference=(Interference("gpu", "dla", 1.5), Interference("dla", "gpu", 1.5)),
    nvpmodel=())


def dnn(model_id: str, latency_ms: dict[str, float], dla: bool) -> ModelProfile:
    kinds = tuple(latency_ms)
    return ModelProfile(
        id=model_id, kind="dnn", precision="fp16", input="test", inputs=(),
        dla_fraction=1.0 if dla else 0.0, dla_compatible=dla,
        latency_s={k: v / 1000.0 for k, v in latency_ms.items()},
        freq_sensitivity=dict.fromkeys(kinds, 1.0), utilization=dict.fromkeys(kinds, 1.0),
        memory_mb=1.0, sources=("test",))


LLM = ModelProfile(
    id="llm", kind="llm", precision="fp16", input="test", inputs=(), dla_fraction=0.0,
    dla_compatible=False, prefill_tokens_per_s={"gpu": 1000.0, "cpu": 100.0},
    decode_tokens_per_s={"gpu": 100.0, "cpu": 10.0},
    freq_sensitivity={"gpu": 1.0, "cpu": 1.0}, utilization={"gpu": 1.0, "cpu": 1.0},
    memory_mb=1.0, default_prompt_tokens=64, default_max_new_tokens=10, sources=("test",))


CPU_LLM = dataclasses.replace(
    LLM, id="cpullm", prefill_tokens_per_s={"cpu": 1000.0}, decode_tokens_per_s={"cpu": 100.0},
    freq_sensitivity={"cpu": 1.0}, utilization={"cpu": 1.0})


def catalog() -> Catalog:
    return Catalog({p.id: p for p in (
        dnn("cnn", {"gpu": 10.0, "dla": 20.0, "cpu": 200.0}, dla=True),
        dnn("bert", {"gpu": 10.0, "cpu": 200.0}, dla=False),
        dnn("long", {"gpu": 100.0}, dla=False),
        dnn("cpuonly", {"cpu": 50.0}, dla=False),
        dnn("dlaonly", {"dla": 50.0}, dla=True),
        LLM, CPU_LLM)}, reference_platform="tiny")


def job(job_id: str, model: str = "cnn", priority: int = 100, t: float = 0.0, *,
        deadline_s: float | None = None, stream: str = "", prompt: int = 0,
        new: int = 0) -> Job:
    return Job(job_id=job_id, model=model, priority=priority, submit_s=t,
               deadline_s=deadline_s, stream=stream or job_id, prompt_tokens=prompt,
               max_new_tokens=new)


def scheduler(policy: str = "twill", budget_w: float = 20.0, cat: Catalog | None = None,
              **kw) -> Scheduler:
    """A scheduler on the tiny platform (seed 0); 20 W fits every unit at max clock."""
    return Scheduler(PLATFORM, cat or catalog(), policy, budget_w, seed=0, **kw)


def of(actions, kind) -> list:
    """The actions of one type, in order."""
    return [a for a in actions if isinstance(a, kind)]
