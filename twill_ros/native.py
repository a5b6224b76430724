"""The mypyc-compiled core and twin, used only when built from exactly these sources.

``scripts/build_native.py`` compiles the hot modules (``NATIVE_MODULES``) with mypyc into
``build/native/<interpreter>/`` and stamps the build with a hash of the core's and the
twin's sources. The packages that hold them (``twill_ros.core``, ``twill_ros.core.policies``,
``twill_ros.sim``) call ``use_native`` on import: with a build for the running interpreter
whose stamp matches the sources on disk, their compiled modules shadow the Python ones;
otherwise (not built, stale after an edit, ``TWILL_NATIVE=0``) everything runs as plain
Python, with the same results.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import MutableSequence
from pathlib import Path
from typing import Any

try:
    from mypy_extensions import mypyc_attr
except ImportError:     # mypy not installed: the decorator only matters to mypyc
    def mypyc_attr(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        return lambda cls: cls

ROOT = Path(__file__).resolve().parents[1]
NATIVE_DIR = ROOT / "build" / "native" / sys.implementation.cache_tag   # one per interpreter
STAMP = NATIVE_DIR / "twill-sources.sha256"
NATIVE_MODULES = (
    "twill_ros/core/catalog.py", "twill_ros/core/platform.py",
    "twill_ros/core/events.py", "twill_ros/core/jobs.py", "twill_ros/core/power.py",
    "twill_ros/core/profiler.py", "twill_ros/core/scheduler.py",
    "twill_ros/core/policies/base.py", "twill_ros/core/policies/baselines.py",
    "twill_ros/core/policies/twill.py", "twill_ros/sim/simulator.py",
)


def sources_digest() -> str:
    """Hash of every core and twin source and of the modules they import (the compiled
    modules were type-checked against all of them, so an edit to any calls for a new build)."""
    package = ROOT / "twill_ros"
    paths = [*sorted(package.glob("core/**/*.py")), *sorted(package.glob("sim/*.py")),
             package / "resources.py", package / "native.py"]
    h = hashlib.sha256()
    for path in paths:
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def fresh() -> bool:
    """Is there a build for this interpreter from exactly the sources on disk?"""
    try:
        return STAMP.read_text(encoding="utf-8").strip() == sources_digest()
    except OSError:
        return False


_ACTIVE = os.environ.get("TWILL_NATIVE", "1") != "0" and fresh()


def active() -> bool:
    """Do the compiled modules shadow the Python ones in this process?"""
    return _ACTIVE


def use_native(package: str, path: MutableSequence[str]) -> None:
    """Put the compiled modules of ``package`` (its ``__path__``) ahead of its sources."""
    if not _ACTIVE:
        return
    if str(NATIVE_DIR) not in sys.path:     # the modules' shared library is a top-level module
        sys.path.append(str(NATIVE_DIR))
    path.insert(0, str(NATIVE_DIR.joinpath(*package.split("."))))
