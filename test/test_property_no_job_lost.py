"""No job is ever lost: over random small workloads, policies and budgets, every generated
job ends with exactly one terminal record (completed, failed, rejected or cancelled)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twill_ros.core.catalog import load_catalog
from twill_ros.core.jobs import TERMINAL
from twill_ros.core.metrics import summarize
from twill_ros.core.platform import load_platform
from twill_ros.core.policies import POLICIES
from twill_ros.core.profiler import Profiler
from twill_ros.sim.simulator import simulate
from twill_ros.sim.workload import Arrival, StreamSpec, Workload, generate_jobs

CATALOG = load_catalog()
PLATFORM = load_platform("orin_nx_16gb")

arrivals = st.one_of(
    st.builds(lambda r: Arrival("poisson", {"rate_hz": r}), st.floats(0.5, 40.0)),
    st.builds(lambda p, j: Arrival("periodic", {"period_ms": p, "jitter_ms": j,
                                                "phase_ms": 0.0}),
              st.floats(10.0, 500.0), st.floats(0.0, 5.0)),
    st.builds(lambda n, s: Arrival("bursts", {"every_s": 0.7, "count": n, "spacing_ms": s,
                                              "phase_s": 0.1}),
              st.integers(1, 6), st.floats(0.0, 30.0)),
)


@st.composite
def workloads(draw) -> Workload:
    streams = []
    for i in range(draw(st.integers(1, 4))):
        model = draw(st.sampled_from(CATALOG.ids))
        llm = CATALOG.get(model).is_llm
        streams.append(StreamSpec(
            name=f"s{i}", model=model, priority=draw(st.integers(0, 255)),
            deadline_ms=draw(st.one_of(st.none(), st.floats(5.0, 500.0))),
            prompt_tokens=draw(st.integers(8, 64)) if llm else 0,
            max_new_tokens=draw(st.integers(1, 12)) if llm else 0,
            # LLM jobs are long: keep their arrivals sparse so an example stays fast
            arrival=Arrival("poisson", {"rate_hz": 1.0}) if llm else draw(arrivals)))
    return Workload(name="random", duration_s=draw(st.floats(0.5, 2.0)), streams=tuple(streams))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workload=workloads(), policy=st.sampled_from(tuple(POLICIES)),
       budget=st.floats(6.0, 25.0), seed=st.integers(0, 2**16))
def test_every_job_has_exactly_one_terminal_record(workload, policy, budget, seed):
    jobs = generate_jobs(workload, seed)
    result = simulate(jobs, PLATFORM, CATALOG, policy, budget, seed)
    ids = [r.job.job_id for r in result.records]
    assert sorted(ids) == sorted(j.job_id for j in jobs)
    assert all(r.status in TERMINAL for r in result.records)
    summary = summarize(result.records, result.power_trace, policy=policy, budget_w=budget,
                        profiler=Profiler(CATALOG, PLATFORM))
    assert summary["jobs"] == len(jobs) == (summary["completed"] + summary["failed"]
                                            + summary["rejected"] + summary["cancelled"])
