"""What the ROS benches share: their processes' environment, the machine's conditions and
the generated section of docs/BENCHMARKS.md they each own."""

from __future__ import annotations

import datetime
import os
import platform as host
from pathlib import Path


def ros_env(domain_id: int) -> dict[str, str]:
    """Own domain, discovery limited to this machine (nothing leaves 127.0.0.0/8)."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOCALHOST_ONLY="1", PYTHONUNBUFFERED="1")
    return env


def conditions() -> dict:
    """When and on what a run was made: shared-machine numbers mean little without it."""
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
                if line.startswith("model name")), host.processor())
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "nproc": os.cpu_count(),
            "load_avg_1m_at_start": os.getloadavg()[0],
            "python": host.python_version(),
            "rmw": os.environ.get("RMW_IMPLEMENTATION", "default (rmw_fastrtps_cpp)")}


def fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None or value != value else f"{value:,.{digits}f}"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the section between ``name``'s markers in ``path`` (or append it), keeping
    the hand-written text and the other benches' sections."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body.strip()}\n{end}"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    if begin in old and end in old:
        head, _, rest = old.partition(begin)
        text = head + section + rest.partition(end)[2]
    else:
        text = old.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
