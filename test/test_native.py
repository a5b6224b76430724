"""The mypyc-compiled core and twin (twill_ros.native): same results as the Python modules,
and never used when stale. Needs the build scripts/setup.sh makes (skipped without it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from twill_ros import native

pytestmark = pytest.mark.skipif(not native.active(),
                                reason="no up-to-date mypyc build (scripts/build_native.py)")

MODULE_FILE = "import twill_ros.core.scheduler as s; print(s.__file__)"


def _python(args: list[str], cwd: Path, **env: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_compiled_and_python_give_byte_identical_results(tmp_path):
    runs = {}
    for mode in ("1", "0"):
        out = tmp_path / f"native{mode}.json"
        loaded = _python(["-c", MODULE_FILE], tmp_path, TWILL_NATIVE=mode).strip()
        assert loaded.endswith(".so" if mode == "1" else "scheduler.py")
        _python(["-m", "twill_ros.cli", "compare", "--workload", "robot_nav", "--platform",
                 "orin_nx_16gb", "--budgets", "10,20", "--policies", "twill,gpu_fifo",
                 "--seed", "3", "--json", str(out)], tmp_path, TWILL_NATIVE=mode)
        runs[mode] = out.read_bytes()
    assert b'"completed"' in runs["1"]
    assert runs["1"] == runs["0"]


def test_a_stale_build_is_not_used(tmp_path):
    """A copy of the package with its build: used as it is, ignored once a core source
    changes (here one the compiled modules were type-checked against)."""
    shutil.copytree(native.ROOT / "twill_ros", tmp_path / "twill_ros",
                    ignore=shutil.ignore_patterns("__pycache__"))
    build = tmp_path / native.NATIVE_DIR.relative_to(native.ROOT)
    shutil.copytree(native.NATIVE_DIR, build)
    env = {"PYTHONPATH": str(tmp_path)}
    assert _python(["-c", MODULE_FILE], tmp_path, **env).startswith(str(build))
    platform = tmp_path / "twill_ros" / "core" / "platform.py"   # not compiled, but typed against
    platform.write_text(platform.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    assert _python(["-c", MODULE_FILE], tmp_path, **env).strip() == str(
        tmp_path / "twill_ros" / "core" / "scheduler.py")
