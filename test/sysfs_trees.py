"""Fake sysfs trees for the platform-control tests, declared as {relative path: content}.

Laid out like the real machines (papers.md §4.3-4.4, ros_jetson_conventions.md C): cpufreq in
kHz under ``cpufreq/policy*`` with ``cpuN/cpufreq`` links, devfreq in Hz, the INA3221 hwmon
in mV/mA behind the i2c driver link, nvpmodel conf and tool. Built in ``tmp_path`` by ``build``.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MHZ = 1_000_000
NOBODY = 65534

# Orin NX cpufreq table (kHz, P§4.1): 115.2 MHz + k*76.8 MHz, k = 0..24, then 1984 MHz.
ORIN_CPU_KHZ = tuple(115200 + 76800 * k for k in range(25)) + (1984000,)
ORIN_GPU_HZ = tuple(f * MHZ for f in (306, 408, 510, 612, 714, 816, 918))
JP6_GPU = "sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu"
JP5_GPU = "sys/devices/17000000.ga10b/devfreq/17000000.ga10b"
INA_DRIVER = "sys/bus/i2c/drivers/ina3221/1-0040"

# Module rails as the Orin NX devkit shows them: (label, bus mV, current mA).
ORIN_RAILS = (("VDD_IN", 5048, 1208), ("VDD_CPU_GPU_CV", 5040, 412), ("VDD_SOC", 5040, 560))

NVPMODEL_CONF = """\
< PARAM TYPE=FILE NAME=CPU_ONLINE >
CORE_0 /sys/devices/system/cpu/cpu0/online
CORE_4 /sys/devices/system/cpu/cpu4/online
< PARAM TYPE=CLOCK NAME=GPU >
FREQ_TABLE /sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu/available_frequencies
MAX_FREQ /sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu/max_freq

< POWER_MODEL ID=0 NAME=MAXN >
CPU_ONLINE CORE_4 1
GPU MAX_FREQ -1
< POWER_MODEL ID=1 NAME=10W >
CPU_ONLINE CORE_4 0
GPU MAX_FREQ 612000000
< POWER_MODEL ID=2 NAME=15W >
CPU_ONLINE CORE_4 0
GPU MAX_FREQ 612000000
< POWER_MODEL ID=3 NAME=25W >
CPU_ONLINE CORE_4 1
GPU MAX_FREQ 408000000

< PM_CONFIG DEFAULT=2 >
"""

# A stand-in for /usr/sbin/nvpmodel with the real tool's interface: -q prints the mode name and
# id; -m to a mode that changes the online cores asks to reboot and only applies after one.
FAKE_NVPMODEL = """\
import pathlib, re, sys
root = pathlib.Path(__file__).resolve().parents[2]
status = root / "var/lib/nvpmodel/status"
modes = dict((int(i), n) for i, n in re.findall(r"ID=(\\d+) NAME=(\\S+) >",
                                                 (root / "etc/nvpmodel.conf").read_text()))
current = int(status.read_text().split(":")[1])
with open(root / "nvpmodel.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1] == "-q":
    print("NV Power Mode: " + modes[current])
    print(current)
elif sys.argv[1] == "-m":
    new = int(sys.argv[2])
    if new in (1, 2) and current not in (1, 2):
        print("NVPM WARN: Reboot required for changing to this power mode: %d" % new)
        print("NVPM WARN: DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:")
        if sys.stdin.readline().strip().lower() == "yes":
            (root / "REBOOTED").write_text("yes")
        sys.exit(0)
    status.write_text("pmode:%04d\\n" % new)
"""


@dataclass(frozen=True)
class Link:
    """A symlink, target relative to the link's directory (as sysfs has them)."""

    target: str


@dataclass(frozen=True)
class Executable:
    """A Python script made executable with this interpreter."""

    source: str


Tree = dict[str, "str | Link | Executable"]


def cpufreq_policy(policy: int, cpus: tuple[int, ...], khz: tuple[int, ...] = ORIN_CPU_KHZ,
                   cur: int = 729600, min_khz: int = 729600, driver: str = "tegra194") -> Tree:
    """One cpufreq policy with its cpus' links; ``khz=()`` omits the available list
    (intel_pstate)."""
    d = f"sys/devices/system/cpu/cpufreq/policy{policy}"
    governors = ("conservative ondemand userspace powersave performance schedutil" if khz
                 else "performance powersave")
    cpu_list = " ".join(map(str, cpus))
    tree: Tree = {
        f"{d}/affected_cpus": cpu_list, f"{d}/related_cpus": cpu_list,
        f"{d}/cpuinfo_min_freq": str(khz[0] if khz else 400000),
        f"{d}/cpuinfo_max_freq": str(khz[-1] if khz else 4500000),
        f"{d}/cpuinfo_transition_latency": "0",
        f"{d}/scaling_available_governors": governors,
        f"{d}/scaling_cur_freq": str(cur), f"{d}/scaling_driver": driver,
        f"{d}/scaling_governor": governors.split()[-1], f"{d}/scaling_setspeed": "<unsupported>",
        f"{d}/scaling_min_freq": str(min_khz),
        f"{d}/scaling_max_freq": str(khz[-1] if khz else 4500000),
    }
    if khz:
        tree[f"{d}/scaling_available_frequencies"] = " ".join(map(str, khz)) + " "
    for cpu in cpus:
        tree[f"sys/devices/system/cpu/cpu{cpu}/cpufreq"] = Link(f"../cpufreq/policy{policy}")
        tree[f"sys/devices/system/cpu/cpu{cpu}/online"] = "1"
    return tree


def devfreq(directory: str, hz: tuple[int, ...] = ORIN_GPU_HZ) -> Tree:
    return {
        f"{directory}/available_frequencies": " ".join(map(str, hz)),
        f"{directory}/available_governors": "nvhost_podgov userspace performance simple_ondemand",
        f"{directory}/governor": "nvhost_podgov", f"{directory}/cur_freq": str(hz[0]),
        f"{directory}/target_freq": str(hz[0]), f"{directory}/min_freq": str(hz[0]),
        f"{directory}/max_freq": str(hz[-1]), f"{directory}/polling_interval": "0",
    }


def ina3221(device: str, hwmon: int = 3, rails=ORIN_RAILS) -> Tree:
    """The INA3221 hwmon node: channels 1-3 labelled, shunt channels 4-6, summation 7."""
    h = f"{device}/hwmon/hwmon{hwmon}"
    tree: Tree = {f"{device}/name": "ina3221", f"{h}/name": "ina3221",
                  f"{h}/update_interval": "1100", f"{h}/samples": "4",
                  f"{h}/in7_label": "sum of shunt voltages", f"{h}/in7_input": "10900",
                  f"{h}/curr4_input": "2180", f"{h}/curr4_crit": "21840",
                  INA_DRIVER: Link(os.path.relpath(device, os.path.dirname(INA_DRIVER)))}
    for n, (label, mv, ma) in enumerate(rails, start=1):
        tree.update({f"{h}/in{n}_label": label, f"{h}/in{n}_input": str(mv),
                     f"{h}/in{n}_enable": "1", f"{h}/curr{n}_input": str(ma),
                     f"{h}/in{n + 3}_input": str(ma * 5), f"{h}/shunt{n}_resistor": "5000",
                     f"{h}/curr{n}_crit": "7784" if n == 1 else "32760",
                     f"{h}/curr{n}_max": "4944" if n == 1 else "32760",
                     f"{h}/curr{n}_crit_alarm": "0", f"{h}/curr{n}_max_alarm": "0"})
    return tree


def orin_nx(bsp: str = "jp6", *, power: bool = True, hwmon: int = 3, nvpmodel: bool = True,
            mode: int = 0) -> Tree:
    """An Orin NX 16GB as JetPack 6 (L4T R36, ``bus@0``) or JetPack 5 (L4T R35) lays it out."""
    tree: Tree = {**cpufreq_policy(0, (0, 1, 2, 3)), **cpufreq_policy(4, (4, 5, 6, 7))}
    if bsp == "jp6":
        tree.update(devfreq(JP6_GPU))
        tree["sys/devices/platform/bus@0/17000000.gpu/load"] = "0"
        tree["sys/class/devfreq/17000000.gpu"] = Link(
            "../../devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu")
        i2c = "sys/devices/platform/bus@0/c240000.i2c/i2c-1/1-0040"
    else:
        tree.update(devfreq(JP5_GPU))
        tree["sys/devices/17000000.ga10b/load"] = "0"
        tree["sys/class/devfreq/17000000.ga10b"] = Link(
            "../../devices/17000000.ga10b/devfreq/17000000.ga10b")
        i2c = "sys/devices/platform/c240000.i2c/i2c-1/1-0040"
    if power:
        tree.update(ina3221(i2c, hwmon))
    if mode in (1, 2):      # 10W and 15W (CPU_ONLINE CORE_4 0): nvpmodel took cpu4-7 offline
        tree.update({f"sys/devices/system/cpu/cpu{cpu}/online": "0" for cpu in (4, 5, 6, 7)})
    if nvpmodel:
        tree.update({"etc/nvpmodel/nvpmodel_p3767_0000.conf": NVPMODEL_CONF,
                     "etc/nvpmodel.conf": Link("nvpmodel/nvpmodel_p3767_0000.conf"),
                     "var/lib/nvpmodel/status": f"pmode:{mode:04d}\n",
                     "usr/sbin/nvpmodel": Executable(FAKE_NVPMODEL)})
    return tree


def rapl(zones: dict[str, tuple[str, int]], max_range_uj: int = 262143328850) -> Tree:
    """Powercap RAPL zones {"intel-rapl:0": ("package-0", energy µJ), ...} with class links."""
    tree: Tree = {}
    for zone_id, (name, energy_uj) in zones.items():
        parents = [zone_id.rsplit(":", k)[0] for k in range(zone_id.count(":") - 1, -1, -1)]
        d = "sys/devices/virtual/powercap/intel-rapl/" + "/".join(parents)
        tree.update({f"{d}/name": name, f"{d}/energy_uj": str(energy_uj), f"{d}/enabled": "1",
                     f"{d}/max_energy_range_uj": str(max_range_uj),
                     f"sys/class/powercap/{zone_id}": Link(f"../../{d[4:]}")})
    return tree


def laptop(cpus: int = 4, zones: dict[str, tuple[str, int]] | None = None) -> Tree:
    """An x86 laptop: intel_pstate (one policy per cpu, no frequency list), optional RAPL."""
    tree: Tree = {}
    for cpu in range(cpus):
        tree.update(cpufreq_policy(cpu, (cpu,), khz=(), cur=800000 + 100000 * cpu,
                                   min_khz=400000, driver="intel_pstate"))
    tree.update(rapl(zones or {}))
    return tree


def build(root: Path, tree: Tree) -> Path:
    for rel, content in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Link):
            path.symlink_to(content.target)
        elif isinstance(content, Executable):
            path.write_text(f"#!{sys.executable}\n{content.source}")
            path.chmod(0o755)
        else:
            path.write_text(content + "\n")
    return root


def read(root: Path, rel: str) -> str:
    return (root / rel).read_text().strip()


def make_read_only(root: Path) -> None:
    """chmod the tree read-only (files 0444, dirs 0555) and let others reach it."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o444)
        os.chmod(dirpath, 0o555)
    for parent in root.parents:  # pytest's tmp dirs are 0700: let the unprivileged child in
        if parent == Path(parent.anchor) or parent == Path("/tmp"):
            break
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IXOTH)


def run_unprivileged(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child that is not root, so file permissions really apply.

    As root, chmod does not stop writes; the child drops to ``nobody`` first. Returns what
    ``fn`` returned (picklable), re-raising its exception in the parent.
    """
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(NOBODY, NOBODY, NOBODY)
                os.setresuid(NOBODY, NOBODY, NOBODY)
            send.send((True, fn()))
        except BaseException as exc:  # the parent re-raises it
            send.send((False, exc))

    process = ctx.Process(target=child)
    process.start()
    ok, value = receive.recv()
    process.join(timeout=10)
    if not ok:
        raise value
    return value
