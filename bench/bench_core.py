"""Speed of the scheduler core and of the digital twin (a benchmark, not a timed test).

(a) One core decision with the platform's 5 units busy and 100 jobs queued: the time of
    ``Scheduler.handle`` for a job arrival, a job finish (dispatch from the queue) and a
    control tick (DVFS + rebalancing), each on a fresh copy of the same state.
    Target: median <= 100 us, judged on decisions timed one after another on copies made
    beforehand (as timeit runs its statement after its setup). The same decisions timed
    each right after its copy was made are also reported: the deep copy leaves the CPU's
    caches cold, which costs the decision about 2x. A scheduler in a busy node or the twin
    runs between the two, so both are shown.
(b) Twin throughput: simulated jobs per wall-clock second for each shipped workload: the
    median of 9 runs, the workloads taking turns, with the slowest and fastest run beside
    it. Target: >= 20,000 jobs/s. This shared machine's speed moves by +-25 % within
    seconds (CPU time moves with wall time, so it is other tenants on the same cores, not
    waiting), so one short run says little and consecutive runs of one workload would
    share one burst; taking turns spreads each workload's runs over the whole bench.
Rows are marked [compiled] when the mypyc build of the core and twin is in use (scripts/
setup.sh builds it; see twill_ros/native.py), else [Python]. With the compiled build the
targets are judged on it, and the same bench runs again in a child process on the Python
modules (TWILL_NATIVE=0) for the rows beside it, without verdicts.
Missed targets are reported (FAIL), not an error: the exit code is 0 when the bench ran.

    python bench/bench_core.py [--policy twill] [--repeat 300] [--json OUT]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform as host
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_model
from twill_ros.core.catalog import load_catalog
from twill_ros.core.events import Dispatch, JobArrived, JobFinished, Tick
from twill_ros.core.jobs import Job
from twill_ros.core.metrics import percentile
from twill_ros.core.platform import load_platform
from twill_ros.core.scheduler import Scheduler
from twill_ros.evaluation import spread_text
from twill_ros.native import active as native_active
from twill_ros.sim.simulator import simulate
from twill_ros.sim.workload import SCENARIOS, generate_jobs, load_workload

DECISION_TARGET_US = 100.0
THROUGHPUT_TARGET = 20_000.0
QUEUED = 100
TWIN_ROUNDS = 9
MODELS = ("resnet50", "resnet152", "vgg19", "yolov8s", "mobilenetv2", "bert-base",
          "bert-large", "llama-3.2-1b")


def _loaded_scheduler(platform, catalog, policy: str) -> tuple[Scheduler, Dispatch]:
    """A scheduler whose units are busy and which holds QUEUED waiting jobs; returns it and
    the dispatch of one running DNN job (to finish)."""
    rng = random.Random(0)
    sched = Scheduler(platform, catalog, policy, 15.0, seed=0)
    running: list[Dispatch] = []
    n = 0
    while sum(u.queued for u in sched.units.values()) < QUEUED:
        model = MODELS[n % len(MODELS)]
        llm = catalog.get(model).is_llm
        job = Job(job_id=f"j{n}", model=model, priority=rng.randrange(256), submit_s=0.0,
                  deadline_s=rng.choice((None, 0.05, 0.2)), stream=f"s{n % 7}",
                  prompt_tokens=64 if llm else 0, max_new_tokens=32 if llm else 0)
        running += [a for a in sched.handle(JobArrived(0.0, job))
                    if isinstance(a, Dispatch) and not llm]
        n += 1
    return sched, running[0]


def bench_decisions(platform, catalog, policy: str, repeat: int) -> list[dict]:
    base, running = _loaded_scheduler(platform, catalog, policy)
    probe = Job(job_id="probe", model="resnet50", priority=200, submit_s=0.001, deadline_s=0.05,
                stream="probe")
    events = {
        "arrival": JobArrived(0.001, probe),
        "finish": JobFinished(0.001, running.job_id, running.unit),
        "tick": Tick(0.1),
    }
    # immutable inputs are shared, not copied (they hold read-only mapping proxies)
    shared = [catalog, platform, *catalog, *platform.units]

    def fresh() -> Scheduler:
        return copy.deepcopy(base, {id(x): x for x in shared})

    out = []
    for name, event in events.items():
        copies = [fresh() for _ in range(repeat)]
        in_sequence = [_timed(sched, event) for sched in copies]
        del copies
        after_copy = [_timed(fresh(), event) for _ in range(repeat)]
        median = statistics.median(in_sequence)
        head = f"decision ({name}), {policy}, {len(platform.units)} units, {QUEUED} queued"
        out.append(_row(f"{head}: median", median, "µs", DECISION_TARGET_US,
                        f"≤ {DECISION_TARGET_US:g} µs", median <= DECISION_TARGET_US))
        out.append(_row(f"decision ({name}), {policy}: p99", percentile(in_sequence, 99), "µs"))
        out.append(_row(f"decision ({name}), {policy}, each right after a state copy (cold "
                        "caches): median", statistics.median(after_copy), "µs"))
    return out


def _timed(sched: Scheduler, event) -> float:
    """Microseconds of one decision; the garbage collector is off meanwhile, as timeit does
    (the copies' garbage is not the decision's cost)."""
    gc.disable()
    start = time.perf_counter()
    sched.handle(event)
    elapsed = (time.perf_counter() - start) * 1e6
    gc.enable()
    return elapsed


def bench_twin(platform, catalog, policy: str, rounds: int = TWIN_ROUNDS) -> list[dict]:
    jobs = {scenario: generate_jobs(load_workload(scenario, catalog), 1)
            for scenario in SCENARIOS}
    rates: dict[str, list[float]] = {scenario: [] for scenario in SCENARIOS}
    for _ in range(rounds):
        for scenario, todo in jobs.items():
            gc.collect()        # earlier garbage (the decision bench's copies) is not its cost
            start = time.perf_counter()
            simulate(todo, platform, catalog, policy, 15.0, 1)
            rates[scenario].append(len(todo) / (time.perf_counter() - start))
    out = []
    for scenario, todo in jobs.items():
        rate = statistics.median(rates[scenario])
        row = _row(f"twin throughput, {scenario} ({len(todo)} jobs), {policy} @ 15 W: median "
                   f"of {rounds} runs", rate, "jobs/s", THROUGHPUT_TARGET,
                   f"≥ {THROUGHPUT_TARGET:,.0f} jobs/s", rate >= THROUGHPUT_TARGET)
        out.append({**row, "range": [min(rates[scenario]), max(rates[scenario])]})
    return out


def python_rows(policy: str, repeat: int) -> list[dict]:
    """The same bench on the Python modules, in a child process (its rows come labelled
    [Python]; no verdicts)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "python.json"
        subprocess.run([sys.executable, __file__, "--policy", policy, "--repeat", str(repeat),
                        "--json", str(out)], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "TWILL_NATIVE": "0"})
        rows = json.loads(out.read_text(encoding="utf-8"))["results"]
    return [{**r, "target": None, "target_text": "", "passed": None} for r in rows]


def _labelled(rows: list[dict], label: str) -> list[dict]:
    return [{**r, "name": f"{r['name']} [{label}]"} for r in rows]


def _row(name: str, value: float, unit: str, target: float | None = None,
         target_text: str = "", passed: bool | None = None) -> dict:
    return {"name": name, "value": value, "unit": unit, "target": target,
            "target_text": target_text, "passed": passed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="twill")
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    catalog = load_catalog()
    platform = load_platform("orin_nx_16gb")
    results = (bench_decisions(platform, catalog, args.policy, args.repeat)
               + bench_twin(platform, catalog, args.policy))
    if native_active():
        results = _labelled(results, "compiled") + python_rows(args.policy, args.repeat)
    else:
        results = _labelled(results, "Python")
    machine = (f"{cpu_model()} ({os.cpu_count()} logical CPUs, {host.machine()}), "
               f"{host.python_implementation()} {host.python_version()}")
    width = max(len(r["name"]) for r in results)
    for r in results:
        verdict = "" if r["passed"] is None else ("PASS" if r["passed"] else "FAIL")
        print(f"{r['name']:<{width}}  {r['value']:>12,.1f} {r['unit']:<7} "
              f"{r['target_text']:<20} {verdict}{spread_text(r)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine, "results": results},
                                              indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
