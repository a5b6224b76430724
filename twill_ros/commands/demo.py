"""``twill demo``: the scheduler, a perception node and a planner node, live on the twin.

The three nodes run composed in one process (one MultiThreadedExecutor; the same classes
launch/demo.launch.py starts) for ``--duration`` seconds, with a live status line. Then the
clients stop, the jobs in flight finish (or are cancelled after ``--drain``), and the run
is summarised from the JobResults that came back over DDS: a table per stream, and in
``--report DIR`` a summary.json in the ``compare`` results format plus the report plots.
"""

from __future__ import annotations

import argparse
import os
import sys

from twill_ros.commands.compare import path_problem
from twill_ros.core.policies import POLICIES
from twill_ros.core.power import check_budget_w
from twill_ros.loopback import LOOPBACK_ENV


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the live ROS 2 demo on the Orin NX twin",
                                   description=__doc__)
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds the clients submit jobs (default: 30)")
    parser.add_argument("--policy", default="twill", choices=sorted(POLICIES),
                        help="scheduling policy (default: twill)")
    parser.add_argument("--budget", type=float,
                        help="module power budget in W (default: 15; 30 with --real, the "
                             "host platform's nominal two-cluster draw)")
    parser.add_argument("--platform",
                        help="platform file name or path (default: orin_nx_16gb; host with "
                             "--real)")
    parser.add_argument("--real", action="store_true",
                        help="run real tiny models (torch CNN/encoder, transformers LLM) on this "
                             "machine's CPU units with host power/clock control, instead of "
                             "the twin")
    parser.add_argument("--drain", type=float, default=30.0,
                        help="seconds to let jobs in flight finish after the run (default: 30)")
    parser.add_argument("--report", metavar="DIR",
                        help="write DIR/summary.json and the report with plots")
    parser.add_argument("--executor", choices=("multi", "single"), default="multi",
                        help="rclpy executor for the composed nodes: multi = "
                             "MultiThreadedExecutor with 4 threads (default), single = "
                             "SingleThreadedExecutor (enough: no callback blocks)")
    parser.add_argument("--quiet", action="store_true", help="no live status line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    args.platform = args.platform or ("host" if args.real else "orin_nx_16gb")
    args.budget = args.budget if args.budget is not None else (30.0 if args.real else 15.0)
    if not (args.duration > 0 and args.drain >= 0):
        print("twill demo: --duration must be > 0, --drain >= 0", file=sys.stderr)
        return 2
    try:
        check_budget_w(args.budget)
    except ValueError as exc:
        print(f"twill demo: --budget: {exc}", file=sys.stderr)
        return 2
    problem = args.report and path_problem("--report", args.report, directory=True)
    if problem:
        print(f"twill demo: {problem}", file=sys.stderr)
        return 2
    os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
    os.environ.update(LOOPBACK_ENV)

    import rclpy
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from twill_ros.demo.perception_node import PerceptionNode
    from twill_ros.demo.planner_node import PlannerNode
    from twill_ros.live_report import LiveRun, present, summarize_live
    from twill_ros.monitor import RunMonitor
    from twill_ros.node.lifecycle import (
        STARTUP_ERRORS,
        spin_while,
        startup_error_text,
        stop_on_signals,
    )
    from twill_ros.node.scheduler_node import TwillSchedulerNode

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    stop = stop_on_signals()
    try:
        overrides = REAL if args.real else {}
        try:
            scheduler = TwillSchedulerNode(parameter_overrides=_parameters(
                {"platform": args.platform, "policy": args.policy,
                 "power_budget_w": float(args.budget), "state_rate_hz": 10.0,
                 **overrides.get("twill_scheduler", {})}))
        except STARTUP_ERRORS as exc:
            print(f"twill demo: cannot start: {startup_error_text(exc)}", file=sys.stderr)
            return 2
        monitor = RunMonitor()
        t0 = monitor.get_clock().now().nanoseconds * 1e-9
        clients = [PerceptionNode(parameter_overrides=_parameters(
                       overrides.get("perception_node", {}))),
                   PlannerNode(parameter_overrides=_parameters(
                       overrides.get("planner_node", {})))]
        nodes = [scheduler, monitor, *clients]
        executor = (SingleThreadedExecutor() if args.executor == "single"
                    else MultiThreadedExecutor(num_threads=4))
        for node in nodes:
            executor.add_node(node)
        mode = "real tiny models" if args.real else "digital twin"
        print(f"twill demo ({mode}): policy {args.policy}, budget {args.budget:g} W, platform "
              f"{args.platform}, {args.duration:g} s (ROS_DOMAIN_ID "
              f"{os.environ['ROS_DOMAIN_ID']})", flush=True)
        spin_while(executor, monitor.with_status(lambda s: s < args.duration, args.quiet), stop)
        streams = [s for client in clients for s in client.streams]
        for client in clients:
            client.stop()
        print(f"twill demo: clients stopped; letting jobs in flight finish (<= {args.drain:g} s)",
              flush=True)
        spin_while(executor, lambda: any(s.pending() for s in streams), stop, args.drain)
        scheduler.on_exit(executor)
        spin_while(executor, lambda: any(s.pending() for s in streams), None, 2.0)
        result = monitor.sim_result([e for s in streams for e in s.sent.entries()], t0,
                                    scheduler.catalog)
        lost = sum(s.pending() for s in streams)
        run_info = LiveRun(name="live demo", source="twill demo (live ROS 2 run)",
                           platform=args.platform, policy=args.policy,
                           budget_w=float(args.budget), duration_s=args.duration,
                           static_caps=scheduler.scheduler.static_caps)
        summary = summarize_live(run_info, result, scheduler.profiler,
                                 [s.config.name for s in streams], lost)
        for node in nodes:
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
    finally:
        rclpy.try_shutdown()

    present(run_info, summary, result, args.report)
    if lost:
        print(f"twill demo: {lost} job(s) got no result", file=sys.stderr)
        return 1
    return 0


# --real: the same nodes on the project's tiny models, run for real on the host's CPUs.
REAL = {
    "twill_scheduler": {"control": "host", "backend": "torch,llm"},
    "perception_node": {"detector.model": "tiny-cnn", "classifier.model": "tiny-bert"},
    "planner_node": {"planner.model": "tiny-llm", "planner.max_new_tokens": 200,
                     "planner.rate_hz": 0.5, "intent.model": "tiny-bert"},
}


def _parameters(values: dict):
    from rclpy.parameter import Parameter

    return [Parameter(name, value=value) for name, value in values.items()]
