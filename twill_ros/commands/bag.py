"""``twill bag``: a workload file's job arrivals as a rosbag2 bag of /twill/jobs requests.

The bag holds what ``ros2 bag record /twill/jobs`` would have recorded had the workload's
streams run on a robot: one JobRequest per arrival, at its arrival time, with job id
``<stream>-<n>``, the stream's name as client id, its priority and deadline, and for LLM
streams a prompt of the workload's prompt length. ``twill replay`` plays it against a
running scheduler.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from twill_ros.commands.compare import path_problem, user_error

# A prompt of n tokens by the node's estimate (node.requests.CHARS_PER_TOKEN characters each).
PROMPT_TEXT = "Scene: corridor, two people ahead, a door on the left. Reach dock 3. "


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("bag", help="write a workload's jobs as a rosbag2 bag",
                                   description=__doc__)
    parser.add_argument("--workload", required=True,
                        help="workload YAML path or shipped scenario name (e.g. robot_nav)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", required=True, metavar="BAG",
                        help="bag directory to create (must not exist)")
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3",
                        help="rosbag2 storage format (default: sqlite3, as Humble records)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from twill_ros.bags import write_requests
    from twill_ros.core.catalog import load_catalog
    from twill_ros.sim.workload import generate_jobs, load_workload

    out = Path(args.out)
    if out.exists():
        return user_error(ValueError(f"{out} exists; rosbag2 writes a new directory"))
    problem = path_problem("--out", out)
    if problem:
        return user_error(problem)
    try:
        workload = load_workload(args.workload, load_catalog())
    except (ValueError, FileNotFoundError) as exc:
        return user_error(exc)
    jobs = generate_jobs(workload, args.seed)
    count = write_requests(out, ((round(job.submit_s * 1e9), request_of(job)) for job in jobs),
                           args.storage)
    print(f"twill bag: wrote {count} requests of {len(workload.streams)} streams "
          f"({workload.duration_s:g} s of {workload.name}, seed {args.seed}) to {out}")
    return 0


def request_of(job):
    """The JobRequest a client of the job's stream would have sent."""
    from builtin_interfaces.msg import Time
    from twill_msgs.msg import JobRequest

    from twill_ros.node.requests import CHARS_PER_TOKEN

    chars = job.prompt_tokens * CHARS_PER_TOKEN
    prompt = (PROMPT_TEXT * math.ceil(chars / len(PROMPT_TEXT)))[:chars]
    seconds = math.floor(job.submit_s)
    return JobRequest(job_id=job.job_id, client_id=job.stream, model=job.model,
                      priority=job.priority,
                      deadline_ms=0.0 if job.deadline_s is None else job.deadline_s * 1000.0,
                      stamp=Time(sec=seconds, nanosec=round((job.submit_s - seconds) * 1e9)),
                      prompt=prompt, max_new_tokens=job.max_new_tokens)
