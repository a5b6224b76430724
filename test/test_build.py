"""Both packages build with the colcon line the README gives robot users."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_colcon_finds_and_builds_both_packages(tmp_path):
    colcon = shutil.which("colcon")
    assert colcon, "colcon not on PATH: source env.sh"
    listed = subprocess.run([colcon, "list", "--names-only", "--base-paths", str(REPO),
                             str(REPO / "twill_msgs")], capture_output=True, text=True,
                            check=True).stdout.split()
    assert sorted(listed) == ["twill_msgs", "twill_ros"]
    build = subprocess.run(
        [colcon, "--log-base", str(tmp_path / "log"), "build",
         "--base-paths", str(REPO), str(REPO / "twill_msgs"),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
         "--cmake-args", "-DBUILD_TESTING=OFF"],
        capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    install = tmp_path / "install"
    assert (install / "twill_msgs" / "share" / "twill_msgs" / "msg" / "JobRequest.msg").is_file()
    assert list((install / "twill_msgs" / "lib").glob("libtwill_msgs__rosidl_typesupport_c.so"))
    ros_share = install / "twill_ros" / "share" / "twill_ros"
    for shipped in ("package.xml", "launch/twill.launch.py", "config/twill.yaml",
                    "config/platforms/orin_nx_16gb.yaml", "models/catalog.yaml",
                    "models/tiny/tiny_cnn.pt", "models/tiny/tiny_llm/config.json"):
        assert (ros_share / shipped).is_file(), shipped
    assert (install / "twill_ros" / "lib" / "twill_ros" / "twill_scheduler").is_file()


def test_setup_refuses_a_shell_with_another_checkouts_wheels_sourced(tmp_path):
    """Another checkout's env.sh sets ROS_DISTRO and puts its venv's rclpy on the path: that
    is no ROS install to build against, and its paths would leak into this one's build."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", checkout / "scripts")
    other = tmp_path / "other" / ".venv"
    site = other / "lib" / "python3.11" / "site-packages"
    (site / "rclpy").mkdir(parents=True)
    (site / "rclpy" / "__init__.py").write_text("")
    (other / "pyvenv.cfg").write_text("home = /usr/bin\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ROS_DISTRO": "kilted",
           "PYTHONPATH": str(site)}
    setup = subprocess.Popen(["bash", str(checkout / "scripts" / "setup.sh")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        _, stderr = setup.communicate(timeout=60)
    finally:     # a setup that went on installing is stopped with its children
        if setup.poll() is None:
            os.killpg(setup.pid, signal.SIGKILL)
            setup.wait()
    assert setup.returncode == 1
    assert stderr == ("[setup] ERROR: this shell has another environment sourced (rclpy from "
                          f"the virtualenv {other}, not a ROS install): run setup in a fresh "
                          "shell\n")
    assert sorted(p.name for p in checkout.iterdir()) == ["scripts"]     # nothing written


def test_setup_takes_its_own_wheels_for_its_own_through_a_symlinked_path(tmp_path):
    """A checkout reached through a symlink (a linked home or workspace), with its env.sh
    sourced: its rclpy's real path is outside the linked .venv path, and setup (so twill.sh
    and test.sh too) refused it as another checkout's environment."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", checkout / "scripts")
    venv = checkout / ".venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    (site / "rclpy").mkdir(parents=True)
    (site / "rclpy" / "__init__.py").write_text("")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    link = tmp_path / "link"
    link.symlink_to(checkout)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ROS_DISTRO": "kilted",
           "PYTHONPATH": str(link / ".venv" / "lib" / "python3.11" / "site-packages"),
           "TWILL_PYTHON": str(tmp_path / "no_python")}     # stops it right after the choice
    setup = subprocess.run(["bash", str(link / "scripts" / "setup.sh")], env=env,
                           capture_output=True, text=True, timeout=60)
    assert setup.stdout == "[setup] ROS 2 source: wheels (ROS_DISTRO=kilted)\n", setup.stderr
    assert setup.returncode == 1 and f"{tmp_path / 'no_python'} not found" in setup.stderr
