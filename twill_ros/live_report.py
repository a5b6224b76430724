"""A live ROS 2 run (``twill demo``, ``twill replay``) summarised and reported like a
``compare`` run: one entry in its ``results`` format, measured from the JobResults that came
back over DDS, the same tables and the same plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twill_ros.commands.compare import write_json
from twill_ros.comparison import Comparison, Run
from twill_ros.core.metrics import summarize
from twill_ros.report import per_stream_markdown, text_table, write_report
from twill_ros.sim.simulator import SimResult
from twill_ros.sim.workload import Arrival, StreamSpec, Workload


@dataclass(frozen=True)
class LiveRun:
    """What ran: the report's title and source line, and the scheduler's settings."""

    name: str
    source: str
    platform: str
    policy: str
    budget_w: float
    duration_s: float
    static_caps: str | None     # the policy's static-cap profile; None with its own DVFS


def summarize_live(run: LiveRun, result: SimResult, profiler, streams: list[str],
                   lost: int) -> dict:
    """The ``compare`` results entry of the run, plus ``lost``: jobs sent that got no
    result."""
    summary = summarize(result.records, result.power_trace, policy=run.policy,
                        budget_w=run.budget_w, profiler=profiler,
                        duration_s=result.duration_s, streams=streams,
                        static_caps=run.static_caps)
    summary["lost"] = lost
    return summary


def present(run: LiveRun, summary: dict, result: SimResult, report_dir: str | None) -> None:
    """Print the tables; with ``report_dir``, write the report there as well."""
    print()
    print(text_table([summary]))
    print()
    print("Per stream: mean latency ms (mean slowdown, deadline-miss rate)")
    print(per_stream_markdown([summary]))
    if report_dir:
        _write_report(run, summary, result, report_dir)


def _write_report(run: LiveRun, summary: dict, result: SimResult, out_dir: str) -> None:
    """``out_dir``/summary.json (the ``compare`` JSON with this one result) and the report
    with plots."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The streams as a Workload, so the report reads like a compare report.
    workload = Workload(name=run.name, duration_s=run.duration_s, path=run.source,
                        streams=tuple(StreamSpec(name=name, model="",
                                                 arrival=Arrival("live", {}))
                                      for name in summary["per_stream"]))
    comparison = Comparison(workload=workload, platform=run.platform, seed=0,
                            runs=(Run(run.policy, run.budget_w, summary, result),))
    write_json(comparison, str(out / "summary.json"))
    report = write_report(comparison, str(out))
    print(f"twill: wrote {out / 'summary.json'} and {report}")
