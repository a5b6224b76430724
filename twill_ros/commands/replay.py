"""``twill replay BAG``: play the /twill/jobs requests of a rosbag2 bag against a running
scheduler with their recorded spacing, and summarise what came back.

Start the scheduler first (``ros2 launch twill_ros twill.launch.py`` or ``twill_scheduler``)
in the same ROS domain; ``--namespace`` names its namespace if it was launched in one. The
bag is one that ``ros2 bag record /twill/jobs`` made on a robot or that ``twill bag`` wrote
from a workload file; its one JobRequest topic is replayed (``--topic`` picks one of
several). Each request is published at its offset in the bag divided by ``--rate``, stamped
with the replay's clock; ids are kept (an empty or repeated one becomes ``replay-<n>``) so
every result is matched to its request. The summary is the demo's, per stream (a request's
client id, else its model), measured from the JobResults; ``--report DIR`` writes
DIR/summary.json in the ``compare`` results format (plus ``lost`` and ``duplicates``) and
the plots. Exit code 1 when a request got no result within ``--drain`` seconds of the last
one, or a job got two.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from twill_ros.commands.compare import path_problem, user_error
from twill_ros.loopback import LOOPBACK_ENV


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("replay", help="replay a bag of /twill/jobs to a scheduler",
                                   description=__doc__)
    parser.add_argument("bag", help="rosbag2 directory holding /twill/jobs (sqlite3 or mcap)")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="playback speed: 2 plays the bag twice as fast (default: 1)")
    parser.add_argument("--wait", type=float, default=15.0,
                        help="seconds to wait for the scheduler to appear (default: 15)")
    parser.add_argument("--drain", type=float, default=30.0,
                        help="seconds to wait for results after the last request "
                             "(default: 30)")
    parser.add_argument("--namespace", default="/",
                        help="namespace of the scheduler (its launch argument namespace:=) "
                             "to replay to (default: /)")
    parser.add_argument("--topic", help="the bag's topic to replay (default: its one "
                                        "twill_msgs/msg/JobRequest topic)")
    parser.add_argument("--catalog", help="model catalog of the scheduler, for slowdowns "
                                          "(default: the shipped models/catalog.yaml)")
    parser.add_argument("--report", metavar="DIR",
                        help="write DIR/summary.json and the report with plots")
    parser.add_argument("--quiet", action="store_true", help="no live status line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from twill_ros.bags import BagError, read_requests
    from twill_ros.core.catalog import load_catalog

    if not (0 < args.rate < math.inf and 0 < args.wait < math.inf and 0 <= args.drain < math.inf):
        return user_error(ValueError("--rate and --wait must be > 0, --drain >= 0 (finite)"))
    problem = args.report and path_problem("--report", args.report, directory=True)
    if problem:
        return user_error(problem)
    try:
        recorded = read_requests(args.bag, args.topic)
        catalog = load_catalog(args.catalog)
    except (BagError, ValueError, OSError) as exc:
        return user_error(exc)
    # The scheduler is someone else's process: its domain is the caller's; discovery stays on
    # this machine unless the caller chose otherwise.
    for key, value in LOOPBACK_ENV.items():
        os.environ.setdefault(key, value)

    import rclpy
    from rclpy.exceptions import NameValidationException
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from twill_msgs.msg import JobRequest

    from twill_ros import interfaces as ifc
    from twill_ros.core.platform import load_platform
    from twill_ros.core.profiler import Profiler
    from twill_ros.live_report import LiveRun, present, summarize_live
    from twill_ros.monitor import RunMonitor
    from twill_ros.node.lifecycle import spin_while, stop_on_signals
    from twill_ros.replay import Replay

    replay = Replay(recorded)
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    stop = stop_on_signals()
    try:
        try:
            monitor = RunMonitor(on_result=replay.sent.record, namespace=args.namespace)
        except NameValidationException as exc:
            return user_error(ValueError(f"--namespace {args.namespace!r}: {exc}"))
        jobs = monitor.create_publisher(JobRequest, ifc.name(ifc.JOBS), ifc.JOB_QOS)
        executor = SingleThreadedExecutor()
        executor.add_node(monitor)

        def scheduler_seen() -> bool:       # it takes requests and publishes its state
            return bool(jobs.get_subscription_count() and monitor.states)

        spin_while(executor, lambda: not scheduler_seen(), stop, args.wait)
        if not scheduler_seen():
            domain = os.environ.get("ROS_DOMAIN_ID", "0")
            state_topic = jobs.topic_name.rsplit("/", 1)[0] + "/" + ifc.STATE
            print(f"twill replay: no scheduler on {jobs.topic_name} and {state_topic} in ROS "
                  f"domain {domain} within {args.wait:g} s; start one first in this domain "
                  "(twill_scheduler, or ros2 launch twill_ros twill.launch.py), or point "
                  "--namespace at the one running", file=sys.stderr)
            return 2
        state = monitor.states[-1]
        try:
            profiler = Profiler(catalog, load_platform(state.platform))
        except (ValueError, OSError) as exc:
            return user_error(ValueError(f"the scheduler's platform {state.platform!r}: {exc}"))
        span = recorded[-1].offset_s / args.rate
        print(f"twill replay: {len(replay)} requests over {span:.1f} s to policy "
              f"{state.policy}, budget {state.power_budget_w:g} W, platform {state.platform}",
              flush=True)
        clock = monitor.get_clock()
        t0 = clock.now().nanoseconds * 1e-9
        publishing = monitor.with_status(
            lambda s: replay.publish_due(s * args.rate, jobs, clock), args.quiet)
        started = time.monotonic()

        def next_due_in() -> float:     # wake for the next request, not up to 50 ms late
            due = replay.next_offset_s()
            return 0.0 if due is None else due / args.rate - (time.monotonic() - started)

        spin_while(executor, publishing, stop, wake_in=next_due_in)
        spin_while(executor, lambda: replay.sent.pending() > 0, stop, args.drain)
        result = monitor.sim_result(replay.sent.entries(), t0, catalog)
        run_info = LiveRun(name=f"replay of {args.bag}", source=f"twill replay {args.bag}",
                           platform=state.platform, policy=state.policy,
                           budget_w=float(state.power_budget_w),
                           static_caps=state.static_caps or None,
                           duration_s=clock.now().nanoseconds * 1e-9 - t0)
        summary = summarize_live(run_info, result, profiler, replay.sent.streams(),
                                 replay.sent.pending())
        summary["duplicates"] = replay.sent.duplicates
        monitor.destroy_node()
        executor.shutdown()
    finally:
        rclpy.try_shutdown()

    present(run_info, summary, result, args.report)
    unsent = len(replay) - len(replay.sent)
    if summary["lost"] or summary["duplicates"] or unsent:
        print(f"twill replay: {unsent} request(s) not sent (stopped), {summary['lost']} "
              f"without a result, {summary['duplicates']} duplicate result(s)",
              file=sys.stderr)
        return 1
    if summary["jobs"] and not summary["completed"]:
        print(f"twill replay: no request completed ({summary['failed']} failed, "
              f"{summary['rejected']} refused, {summary['cancelled']} cancelled): see the "
              "results' messages, e.g. with ros2 topic echo of the results topic",
              file=sys.stderr)
        return 1
    return 0
