"""Workload files: parsing, defaults, validation messages, deterministic job generation."""

from __future__ import annotations

import math
import os
import textwrap

import pytest
from sysfs_trees import make_read_only, run_unprivileged

from twill_ros.core.catalog import Catalog, ModelProfile, load_catalog
from twill_ros.resources import find_resource
from twill_ros.sim.workload import (
    SCENARIOS,
    Arrival,
    StreamSpec,
    Workload,
    WorkloadError,
    arrival_times,
    generate_jobs,
    load_workload,
)

EXAMPLE = """\
name: example
duration_s: 20
streams:
  - name: camera_detect
    model: yolov8s
    priority: 150
    deadline_ms: 50
    arrival: {type: periodic, period_ms: 33.3, jitter_ms: 2, phase_ms: 0}
  - name: planner
    model: llama-3.2-1b
    priority: 50
    prompt_tokens: 256
    max_new_tokens: 128
    arrival: {type: poisson, rate_hz: 0.2}
  - name: alarms
    model: bert-base
    priority: 200
    arrival: {type: bursts, every_s: 10, count: 5, spacing_ms: 20}
  - name: replay
    model: resnet50
    arrival: {type: trace, times_s: [0.5, 0.9, 3.2]}
"""


def _profile(model_id: str, kind: str) -> ModelProfile:
    return ModelProfile(id=model_id, kind=kind, precision="fp16", input="", inputs=(),
                        dla_fraction=0.0, dla_compatible=False,
                        default_prompt_tokens=128 if kind == "llm" else 0,
                        default_max_new_tokens=64 if kind == "llm" else 0,
                        context_tokens=4096 if kind == "llm" else 0)


CATALOG = Catalog({p.id: p for p in (_profile("yolov8s", "dnn"), _profile("resnet50", "dnn"),
                                     _profile("bert-base", "transformer"),
                                     _profile("llama-3.2-1b", "llm"))})


def write(tmp_path, text: str, name: str = "wl.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_example_schema_parses_with_defaults(tmp_path):
    w = load_workload(write(tmp_path, EXAMPLE))
    assert (w.name, w.duration_s, len(w.streams)) == ("example", 20.0, 4)
    cam, planner, alarms, replay = w.streams
    assert (cam.priority, cam.deadline_ms) == (150, 50.0)
    assert cam.arrival == Arrival("periodic", {"period_ms": 33.3, "jitter_ms": 2.0,
                                               "phase_ms": 0.0})
    assert (planner.prompt_tokens, planner.max_new_tokens) == (256, 128)
    assert alarms.arrival.params["phase_s"] == 0.0          # optional, defaults to 0
    assert (replay.priority, replay.deadline_ms) == (100, None)  # defaults
    assert replay.arrival.params["times_s"] == (0.5, 0.9, 3.2)


def test_llm_token_defaults_come_from_the_catalog(tmp_path):
    path = write(tmp_path, """\
        name: x
        duration_s: 5
        streams:
          - name: chat
            model: llama-3.2-1b
            max_new_tokens: 32
            arrival: {type: poisson, rate_hz: 1}
        """)
    stream = load_workload(path, CATALOG).streams[0]
    assert (stream.prompt_tokens, stream.max_new_tokens) == (128, 32)


def test_bare_name_resolves_to_shipped_scenario():
    assert load_workload("robot_nav").path.endswith("config/workloads/robot_nav.yaml")


def test_scenario_list_matches_the_shipped_files():
    shipped = sorted(p.stem for p in find_resource("config/workloads/paper_mix.yaml").parent
                     .glob("*.yaml"))
    assert shipped == sorted(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_shipped_scenarios_are_valid_against_the_real_catalog(scenario):
    w = load_workload(scenario, load_catalog())
    assert w.name == scenario and 60 <= w.duration_s <= 120
    assert generate_jobs(w, 0)


STREAM = {"name": "s1", "model": "resnet50", "arrival": "{type: poisson, rate_hz: 2}"}


def _one_stream(**overrides) -> str:
    fields = {**STREAM, **overrides}
    body = "\n".join(f"    {k}: {v}" for k, v in fields.items() if v is not None)
    return f"name: x\nduration_s: 10\nstreams:\n  - {body.strip()}\n"


@pytest.mark.parametrize("text, stream, field", [
    (_one_stream(arrival="{type: poisson, rate_hz: 0}"), "s1", "arrival.rate_hz"),
    (_one_stream(arrival="{type: poisson}"), "s1", "arrival.rate_hz"),
    (_one_stream(arrival="{type: poisson, rate_hz: 1, period_ms: 3}"), "s1", "arrival.period_ms"),
    (_one_stream(arrival="{type: sometimes}"), "s1", "arrival.type"),
    (_one_stream(arrival="{type: periodic, period_ms: -1}"), "s1", "arrival.period_ms"),
    (_one_stream(arrival="{type: periodic, period_ms: 10, jitter_ms: -1}"), "s1",
     "arrival.jitter_ms"),
    (_one_stream(arrival="{type: bursts, every_s: 1, count: 0, spacing_ms: 1}"), "s1",
     "arrival.count"),
    (_one_stream(arrival="{type: trace, times_s: [1, -2]}"), "s1", "arrival.times_s[1]"),
    (_one_stream(arrival="{type: trace, times_s: [1, 11]}"), "s1", "arrival.times_s[1]"),
    # arrivals are in [0, duration_s): a time at the end would silently generate nothing
    (_one_stream(arrival="{type: trace, times_s: [1, 10]}"), "s1", "arrival.times_s[1]"),
    # non-finite numbers hung the twin or were never counted (a NaN deadline is never missed)
    (_one_stream(arrival="{type: poisson, rate_hz: .inf}"), "s1", "arrival.rate_hz"),
    (_one_stream(arrival="{type: periodic, period_ms: .nan}"), "s1", "arrival.period_ms"),
    (_one_stream(arrival="{type: periodic, period_ms: 5, phase_ms: .nan}"), "s1",
     "arrival.phase_ms"),
    (_one_stream(deadline_ms=".nan"), "s1", "deadline_ms"),
    # an integer beyond a float's range raised OverflowError
    (_one_stream(arrival="{type: poisson, rate_hz: 1" + "0" * 400 + "}"), "s1",
     "arrival.rate_hz"),
    # more jobs than the twin should be asked to hold
    (_one_stream(arrival="{type: periodic, period_ms: 1.0e-9}"), "s1", "arrival.period_ms"),
    (_one_stream(arrival="{type: bursts, every_s: 1, count: 1000000000, spacing_ms: 0}"), "s1",
     "arrival.every_s"),
    (_one_stream(arrival="[1, 2]"), "s1", "arrival"),
    (_one_stream(priority=256), "s1", "priority"),
    (_one_stream(priority=-1), "s1", "priority"),
    (_one_stream(priority="high"), "s1", "priority"),
    (_one_stream(deadline_ms=0), "s1", "deadline_ms"),
    (_one_stream(prompt_tokens=0), "s1", "prompt_tokens"),
    (_one_stream(colour="red"), "s1", "colour"),
    (_one_stream(model="nosuchnet"), "s1", "model"),
    (_one_stream(prompt_tokens=16), "s1", "prompt_tokens"),       # resnet50 is not an LLM
    # beyond the LLM's 4096-token context
    (_one_stream(model="llama-3.2-1b", prompt_tokens=4000, max_new_tokens=100), "s1",
     "max_new_tokens"),
    (_one_stream(model="llama-3.2-1b", prompt_tokens=4050), "s1", "prompt_tokens"),
    (_one_stream(model=None), "s1", "model"),
    (_one_stream(name=None), None, "name"),
    # a name heads job ids; an empty one gave ids like '-0'
    (_one_stream(name="''"), None, "name"),
    # a first arrival at or past the end silently gave a stream without jobs
    (_one_stream(arrival="{type: periodic, period_ms: 5, phase_ms: 10000}"), "s1",
     "arrival.phase_ms"),
    (_one_stream(arrival="{type: bursts, every_s: 1, count: 2, spacing_ms: 1, phase_s: 12}"),
     "s1", "arrival.phase_s"),
])
def test_invalid_stream_errors_name_file_stream_and_field(tmp_path, text, stream, field):
    path = write(tmp_path, text, "broken.yaml")
    with pytest.raises(WorkloadError) as err:
        load_workload(path, CATALOG)
    message = str(err.value)
    assert "broken.yaml" in message
    assert (f"stream '{stream}'" if stream else "stream #0") in message
    assert f"field '{field}'" in message


def test_a_key_given_twice_and_a_binary_file_are_errors_naming_the_file(tmp_path):
    twice = _one_stream().replace("    model: resnet50\n",
                                  "    model: resnet50\n    model: vgg19\n")
    with pytest.raises(WorkloadError, match=r"(?s)twice\.yaml: invalid YAML: .*found the key "
                                            r"'model' twice"):
        load_workload(write(tmp_path, twice, "twice.yaml"), CATALOG)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(WorkloadError, match=r"binary\.yaml: not a UTF-8 text file"):
        load_workload(binary, CATALOG)


def test_a_number_yaml_reads_as_text_is_refused_saying_how_to_write_it(tmp_path):
    """``rate_hz: 1e3`` is the string '1e3' in YAML 1.1: "must be a number, got '1e3'" left
    the reader puzzled."""
    text = _one_stream(arrival="{type: poisson, rate_hz: 1e3}")
    with pytest.raises(WorkloadError, match=r"field 'arrival\.rate_hz': must be a number, got "
                                            r"'1e3' \(YAML reads this form as text: .*"
                                            r"1\.0e\+3"):
        load_workload(write(tmp_path, text, "exp.yaml"), CATALOG)
    with pytest.raises(WorkloadError, match=r"got 'fast'$"):           # no hint for a word
        load_workload(write(tmp_path, _one_stream(arrival="{type: poisson, rate_hz: fast}"),
                            "word.yaml"), CATALOG)


def test_an_unreadable_file_is_an_error_naming_it(tmp_path):
    """Without read permission the PermissionError went past the commands' handling of
    invalid files: a traceback from twill sim, compare, bag and evaluate."""
    path = write(tmp_path, _one_stream(), "locked.yaml")
    make_read_only(tmp_path)            # the unprivileged child reaches the directory
    os.chmod(path, 0o000)

    def load() -> str:
        try:
            load_workload(path, CATALOG)
        except WorkloadError as exc:
            return str(exc)
        return "loaded"

    assert run_unprivileged(load) == f"{path}: cannot read the file: Permission denied"


def test_duplicate_stream_names_are_rejected(tmp_path):
    text = _one_stream() + "  - {name: s1, model: resnet50, arrival: {type: poisson, rate_hz: 1}}\n"
    with pytest.raises(WorkloadError, match=r"dup\.yaml: stream 's1': field 'name': duplicate"):
        load_workload(write(tmp_path, text, "dup.yaml"))


@pytest.mark.parametrize("text, field", [
    ("name: x\nstreams: []\n", "duration_s"),
    ("name: x\nduration_s: 0\nstreams: []\n", "duration_s"),
    ("name: x\nduration_s: 5\nstreams: []\n", "streams"),
    ("duration_s: 5\nstreams: [{name: a, model: m, arrival: {type: poisson, rate_hz: 1}}]\n",
     "name"),
    ("name: x\nduration_s: 5\nspeed: 3\nstreams: []\n", "speed"),
    # twill evaluate names the workload's result files after it: no path in it
    ("name: ../x\nduration_s: 5\nstreams: [{name: a, model: resnet50, arrival: {type: poisson, "
     "rate_hz: 1}}]\n", "name"),
    ("name: x\nduration_s: .nan\nstreams: []\n", "duration_s"),
    ("name: x\nduration_s: .inf\nstreams: []\n", "duration_s"),
])
def test_invalid_top_level_errors_name_file_and_field(tmp_path, text, field):
    with pytest.raises(WorkloadError) as err:
        load_workload(write(tmp_path, text, "top.yaml"))
    assert "top.yaml" in str(err.value) and f"field '{field}'" in str(err.value)


def _workload(*streams: StreamSpec, duration_s: float = 10.0) -> Workload:
    return Workload(name="w", duration_s=duration_s, streams=streams)


def _stream(name: str, kind: str, **params) -> StreamSpec:
    return StreamSpec(name=name, model="resnet50", arrival=Arrival(kind, params))


def test_periodic_bursts_and_trace_times():
    periodic = _stream("p", "periodic", period_ms=250.0, jitter_ms=0.0, phase_ms=100.0)
    assert arrival_times(periodic, 1.0, 0) == pytest.approx([0.1, 0.35, 0.6, 0.85])
    bursts = _stream("b", "bursts", every_s=0.5, count=2, spacing_ms=10.0, phase_s=0.2)
    assert arrival_times(bursts, 1.0, 0) == pytest.approx([0.2, 0.21, 0.7, 0.71])
    trace = _stream("t", "trace", times_s=(0.9, 0.5, 3.2))
    assert arrival_times(trace, 1.0, 0) == [0.5, 0.9]


def test_periodic_jitter_stays_within_bounds():
    stream = _stream("p", "periodic", period_ms=100.0, jitter_ms=5.0, phase_ms=50.0)
    times = arrival_times(stream, 10.0, 3)
    assert len(times) == 100
    assert all(abs(t - (0.05 + 0.1 * i)) <= 0.005 + 1e-12 for i, t in enumerate(times))


def test_poisson_rate_is_respected_on_average():
    times = arrival_times(_stream("q", "poisson", rate_hz=50.0), 100.0, 7)
    assert abs(len(times) - 5000) < 4 * math.sqrt(5000)


def test_generation_is_deterministic_sorted_and_well_named():
    w = load_workload("paper_mix")
    jobs = generate_jobs(w, 42)
    assert jobs == generate_jobs(w, 42)
    assert jobs != generate_jobs(w, 43)
    assert [j.submit_s for j in jobs] == sorted(j.submit_s for j in jobs)
    assert all(0.0 <= j.submit_s < w.duration_s for j in jobs)
    assert len({j.job_id for j in jobs}) == len(jobs)
    per_stream = [j for j in jobs if j.stream == "intent"]
    assert [j.job_id for j in per_stream] == [f"intent-{n}" for n in range(len(per_stream))]
    intent = next(s for s in w.streams if s.name == "intent")
    assert all(j.deadline_s == intent.deadline_ms / 1000 and j.priority == intent.priority
               and j.model == intent.model for j in per_stream)


def test_streams_are_seeded_independently():
    a = _stream("a", "poisson", rate_hz=5.0)
    b = _stream("b", "poisson", rate_hz=5.0)
    alone = [j.submit_s for j in generate_jobs(_workload(a), 1)]
    together = [j.submit_s for j in generate_jobs(_workload(b, a), 1) if j.stream == "a"]
    assert alone == together
