"""The composed demo on rclpy's two executors, side by side (a benchmark, not a test).

``twill demo`` (the twin, default policy and budget, ``--quiet``) runs ``--runs`` times with
``--executor multi`` and with ``--executor single``, alternating, each run in its own process
and ROS domain. From each run's summary.json (measured from the JobResults that came back
over DDS): jobs served, the 30 Hz detector's rate, mean and p99 latency and deadline misses,
the overall p99, and the CPU the demo process used. The demo's default is the
MultiThreadedExecutor; this shows what it costs against the single-threaded one.

    python bench/bench_demo.py [--duration 15] [--runs 3] [--json OUT] \\
        [--markdown docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import conditions, conditions_text, fmt, publish, section_head  # noqa: E402
from twill_ros.loopback import child_env  # noqa: E402

EXECUTORS = ("multi", "single")
CAMERA_HZ = 30.0            # the perception node's detector rate (its default)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_demo(executor: str, duration_s: float, domain_id: int) -> dict:
    """One ``twill demo`` process; what its summary.json measured."""
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as out:
        cmd = [sys.executable, "-m", "twill_ros.cli", "demo", "--duration", f"{duration_s:g}",
               "--executor", executor, "--quiet", "--report", out]
        cpu0, wall0 = children_cpu_s(), time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, env=child_env(domain_id), capture_output=True,
                              text=True, timeout=duration_s + 120)
        cpu, wall = children_cpu_s() - cpu0, time.monotonic() - wall0
        if proc.returncode != 0:
            raise SystemExit(f"twill demo --executor {executor} exited {proc.returncode}:\n"
                             f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        result = json.loads((Path(out) / "summary.json").read_text())["results"][0]
    detector = result["per_stream"]["detector"]
    return {"executor": executor, "jobs": result["jobs"], "completed": result["completed"],
            "lost": result["lost"], "p99_ms": result["latency_ms"]["p99"],
            "detector_hz": detector["jobs"] / duration_s,
            "detector_mean_ms": detector["latency_ms"]["mean"],
            "detector_p99_ms": detector["latency_ms"]["p99"],
            "detector_deadline_miss": detector["deadline_violation_rate"],
            "cpu_pct": 100.0 * cpu / wall}


def medians(runs: list[dict], executor: str) -> dict:
    mine = [r for r in runs if r["executor"] == executor]
    return {k: statistics.median(r[k] for r in mine) for k in mine[0] if k != "executor"}


def markdown(report: dict) -> str:
    c = report["conditions"]
    lines = [
        *section_head("Demo executor: MultiThreadedExecutor vs SingleThreadedExecutor", report),
        conditions_text(c) + " Each run: `twill demo --duration "
        f"{report['duration_s']:g} --executor E --quiet --report TMP` in its own process and "
        "ROS domain, the two executors alternating. CPU: the demo process's user+system time "
        "over its wall time (% of one core), including start-up and drain.",
        "",
        "| executor | jobs | completed | lost | detector rate (Hz) | detector mean / p99 (ms) "
        "| detector deadline misses | all jobs p99 (ms) | CPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = [*report["runs"], *({"executor": f"**median {e}**", **report["medians"][e]}
                               for e in EXECUTORS)]
    for r in rows:
        lines.append(
            f"| {r['executor']} | {r['jobs']:g} | {r['completed']:g} | {r['lost']:g} "
            f"| {fmt(r['detector_hz'], 1)} | {fmt(r['detector_mean_ms'])} / "
            f"{fmt(r['detector_p99_ms'])} | {100 * r['detector_deadline_miss']:.1f} % "
            f"| {fmt(r['p99_ms'])} | {r['cpu_pct']:.0f} % |")
    multi, single = report["medians"]["multi"], report["medians"]["single"]
    lines += [
        "",
        f"Medians, multi / single: detector mean latency x"
        f"{multi['detector_mean_ms'] / single['detector_mean_ms']:.2f}, detector p99 x"
        f"{multi['detector_p99_ms'] / single['detector_p99_ms']:.2f}, jobs served x"
        f"{multi['completed'] / single['completed']:.2f}, CPU x"
        f"{multi['cpu_pct'] / single['cpu_pct']:.2f} (target camera rate {CAMERA_HZ:g} Hz).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per demo run")
    parser.add_argument("--runs", type=int, default=3, help="runs per executor")
    parser.add_argument("--domain-id", type=int, default=140,
                        help="first ROS domain; run i uses this + i")
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--markdown", metavar="OUT")
    args = parser.parse_args()
    if args.duration <= 0 or args.runs < 1:
        parser.error("--duration must be > 0 and --runs >= 1")
    report = {"conditions": conditions(),
              "command": shlex.join(["python", "bench/bench_demo.py", *sys.argv[1:]]),
              "duration_s": args.duration, "runs": []}
    for i in range(args.runs):
        for j, executor in enumerate(EXECUTORS):
            run = run_demo(executor, args.duration, args.domain_id + 2 * i + j)
            report["runs"].append(run)
            print(json.dumps(run), flush=True)
    report["medians"] = {e: medians(report["runs"], e) for e in EXECUTORS}
    publish("bench_demo", report, markdown(report), args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
